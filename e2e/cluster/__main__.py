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

from berth.core.cluster import node_objects, parse_cluster
from berth.core.manifest import load_documents
from e2e.cluster.controlplane import ControlPlane, build, simulated


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m e2e.cluster", description=__doc__)
    parser.add_argument("--nodes", type=Path, help="cluster description whose nodes kwok runs")
    args = parser.parse_args()
    started = time.monotonic()
    plane = ControlPlane(Path(tempfile.mkdtemp(prefix="berth-cp-")), build())
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        plane.start()
        if args.nodes:
            core = client.CoreV1Api(config.new_client_from_config(str(plane.kubeconfig)))
            cluster = parse_cluster(load_documents(args.nodes.read_text())[0])
            for node in node_objects(cluster):
                core.create_node(simulated(node))
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
