"""Test-side helpers over the real control plane: a client, namespaces, simulated nodes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client, config, utils
from kubernetes.client.exceptions import ApiException

from berth.crds import API_VERSION, KIND, acceleratorjob_crd
from e2e.cluster.controlplane import ControlPlane, create_simulated_nodes

T = TypeVar("T")


def eventually(check: Callable[[], T | None], timeout: float = 30, what: str = "") -> T:
    """Poll until `check` returns something truthy; fail with `what` after `timeout` s."""
    end = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


class Cluster:
    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.kubeconfig = plane.kubeconfig
        self.api = config.new_client_from_config(config_file=str(plane.kubeconfig))
        self.core = client.CoreV1Api(self.api)

    def namespace(self, name: str) -> str:
        """Create a namespace and wait for its default ServiceAccount (pods need it)."""
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))

        def has_account() -> bool:
            accounts = self.core.list_namespaced_service_account(name).items
            return any(a.metadata.name == "default" for a in accounts)

        eventually(has_account, what=f"ServiceAccount default in {name}")
        return name

    def add_nodes(self, description: dict[str, Any]) -> list[str]:
        """Create the description's nodes for kwok to run; wait until they are Ready."""
        names = create_simulated_nodes(self.core, description)

        def all_ready() -> bool:
            ready = 0
            for node in self.core.list_node(label_selector="type=kwok").items:
                conditions = node.status.conditions or []
                ready += any(c.type == "Ready" and c.status == "True" for c in conditions)
            return ready >= len(names)

        eventually(all_ready, what=f"nodes {names} Ready")
        return names

    def install_crd(self) -> client.CustomObjectsApi:
        """Create (or keep) the AcceleratorJob CRD and wait until it is served."""
        ext = client.ApiextensionsV1Api(self.api)
        try:
            ext.create_custom_resource_definition(acceleratorjob_crd())
        except ApiException as exc:
            if exc.status != 409:
                raise

        def established() -> bool:
            got = ext.read_custom_resource_definition("acceleratorjobs.berth.dev")
            conditions = got.status.conditions or []
            return any(c.type == "Established" and c.status == "True" for c in conditions)

        eventually(established, what="the CRD Established")
        return client.CustomObjectsApi(self.api)

    def service_account(self, manifest: Path, name: str, ns: str) -> Path:
        """Apply an RBAC manifest (ServiceAccount, roles, bindings) and return a kubeconfig
        that acts as that ServiceAccount, with a token from the TokenRequest API."""
        self.namespace(ns)
        for doc in yaml.safe_load_all(manifest.read_text()):
            utils.create_from_dict(self.api, doc)
        request = {"spec": {"expirationSeconds": 24 * 3600}}
        token = self.core.create_namespaced_service_account_token(name, ns, request).status.token
        return self.plane.kubeconfig_with_token(self.plane.workdir / f"{name}.kubeconfig", token)


def training_job(name: str, low: int, high: int | None = None) -> dict[str, Any]:
    """A ResNet-50 training AcceleratorJob on any GPU type, `low`..`high` devices."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {
            "workload": {"kind": "training", "model": "resnet50", "batchSize": 64},
            "accelerators": {"count": {"min": low, "max": high or low}},
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "trainer",
                            "image": "nvcr.io/nvidia/pytorch:24.05-py3",
                            "resources": {"requests": {"cpu": "1", "memory": "4Gi"}},
                        }
                    ]
                }
            },
        },
    }


# A workload that serves the progress contract (profiler/progress.py) at the rate it is given
# (its one argument), as a worker does; the tests run it at half what berth predicts.
PROGRESSING = """
import sys, time
from berth.profiler.progress import Progress
rate = float(sys.argv[1])
p, start = Progress("resnet50", 64), time.time()
while True:
    time.sleep(0.05)
    p.advance(int((time.time() - start) * rate) - p.done)
"""


def grown_to_meet_its_deadline(
    until: Callable[..., Any], status: Callable[[str], dict[str, Any]], name: str
) -> dict[str, Any]:
    """The job's first resize, once made: checked to grow it from one device for its deadline
    (the closed-loop tests' late job, corrected by what was measured)."""

    def grown() -> dict[str, Any] | None:
        resizes = status(name).get("resizes") or []
        return resizes[0] if resizes else None

    resize: dict[str, Any] = until("grown to meet the deadline", grown, timeout=60)
    assert resize["fromCount"] == 1 and resize["toCount"] > 1
    assert resize["reason"] == "meet the deadline"
    return resize


# --- berth's own processes, started by tests -----------------------------------------------

BERTH = Path(sys.executable).parent / "berth"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class BerthProcess:
    """`berth <args>` as a child process that a test can kill (SIGKILL, no goodbye) and start
    again; its output goes to `log`, appended across restarts."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.argv = [str(BERTH), *args]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> BerthProcess:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def recommender(log: Path) -> tuple[BerthProcess, str]:
    """The recommender serving the shipped model, ready; returns it and its URL."""
    port = free_port()
    proc = BerthProcess(["serve-recommender", "--host", "127.0.0.1", "--port", str(port)], log)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    proc.start()
    eventually(ready, what=f"the recommender ready:\n{proc.tail()}")
    return proc, url


def operator(
    kubeconfig: Path, log: Path, recommender_url: str | None, resize: Sequence[str] = ()
) -> BerthProcess:
    """`resize`: the resizing flags; without them the operator resizes nothing, so tests of
    placement see placements stay as made."""
    args = ["operator", "--kubeconfig", str(kubeconfig)]
    args += ["--metrics-port", str(free_port()), "--health-port", str(free_port())]
    args += list(resize) or ["--resize-period", "0"]
    if recommender_url:
        args += ["--recommender-url", recommender_url]
    return BerthProcess(args, log)


def port_of(proc: BerthProcess, flag: str) -> int:
    return int(proc.argv[proc.argv.index(flag) + 1])
