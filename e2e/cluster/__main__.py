"""Start the local control plane and hold it until interrupted:

    python -m e2e.cluster [--nodes CLUSTER.yaml]

prints the kubeconfig to use; Ctrl-C (or SIGTERM) stops every process it started.
"""

from __future__ import annotations

import argparse
import signal
import tempfile
import time
from pathlib import Path

from kubernetes import client, config

from berth.core.manifest import load_documents
from e2e.cluster.controlplane import ControlPlane, build, create_simulated_nodes


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so SIGTERM stops the control plane like Ctrl-C does


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m e2e.cluster", description=__doc__)
    parser.add_argument("--nodes", type=Path, help="cluster description whose nodes kwok runs")
    args = parser.parse_args()
    started = time.monotonic()
    plane = ControlPlane(Path(tempfile.mkdtemp(prefix="berth-cp-")), build())
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        plane.start()
        if args.nodes:
            core = client.CoreV1Api(config.new_client_from_config(str(plane.kubeconfig)))
            create_simulated_nodes(core, load_documents(args.nodes.read_text())[0])
        print(f"control plane up in {time.monotonic() - started:.1f} s; logs in {plane.workdir}")
        print(f"export KUBECONFIG={plane.kubeconfig}", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        plane.stop()


if __name__ == "__main__":
    main()
