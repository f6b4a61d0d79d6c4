"""A real Kubernetes control plane on 127.0.0.1: etcd, kube-apiserver (RBAC on),
kube-controller-manager (garbage collector, namespaces, service accounts), kube-scheduler and
kwok for simulated nodes. Every process is started here and stopped here, by PID.

Binaries come from build.sh (built once, cached by version). Certificates, keys, tokens and a
kubeconfig are generated into a fresh working directory for each start.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from berth.core.cluster import node_objects, parse_cluster

HERE = Path(__file__).resolve().parent
ADMIN_TOKEN = "berth-test-admin"  # a static token in system:masters, for tests only
KWOK_ANNOTATION = "kwok.x-k8s.io/node"


def build() -> Path:
    """Build (or find cached) binaries; returns their folder."""
    out = subprocess.run(
        [str(HERE / "build.sh")], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return Path(out.strip().splitlines()[-1])


def _die_with_parent() -> None:
    """Runs in each child before exec: the kernel kills it if this process dies, even by
    SIGKILL, so a killed test run leaves no control plane behind (prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _openssl(command: str, cwd: Path) -> None:
    subprocess.run(["openssl", *command.split()], cwd=cwd, check=True, capture_output=True)


def _certificates(pki: Path) -> None:
    """A CA, a serving certificate for 127.0.0.1, a service-account key pair, a token file."""
    pki.mkdir(parents=True)
    (pki / "san.cnf").write_text(
        "[req]\ndistinguished_name = dn\n[dn]\n[ext]\n"
        "subjectAltName = IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n"
    )
    for command in (
        "genrsa -out ca.key 2048",
        "req -x509 -new -key ca.key -subj /CN=berth-test-ca -days 7 -out ca.crt",
        "genrsa -out apiserver.key 2048",
        "req -new -key apiserver.key -subj /CN=kube-apiserver -out apiserver.csr",
        "x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 7"
        " -extfile san.cnf -extensions ext -out apiserver.crt",
        "genrsa -out sa.key 2048",
        "rsa -in sa.key -pubout -out sa.pub",
    ):
        _openssl(command, cwd=pki)
    (pki / "tokens.csv").write_text(f"{ADMIN_TOKEN},admin,admin,system:masters\n")


def _kubeconfig(path: Path, server: str, ca: Path, token: str = ADMIN_TOKEN) -> None:
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: berth-test\n  cluster:\n    server: {server}\n"
        f"    certificate-authority: {ca}\n"
        f"users:\n- name: user\n  user:\n    token: {token}\n"
        "contexts:\n- name: berth-test\n  context:\n    cluster: berth-test\n    user: user\n"
        "current-context: berth-test\n"
    )


@dataclass
class ControlPlane:
    workdir: Path
    bin: Path
    server: str = ""
    kubeconfig: Path = field(init=False)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.kubeconfig = self.workdir / "kubeconfig"

    # --- processes -----------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.workdir / f"{name}.log").open("wb")
        # A session of its own, so stop() can end the process and anything it forked.
        self.processes[name] = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    def kubeconfig_with_token(self, path: Path, token: str) -> Path:
        """A kubeconfig for another identity (a ServiceAccount's token) on this server."""
        _kubeconfig(path, self.server, self.workdir / "pki" / "ca.crt", token)
        return path

    def log_tail(self, name: str, lines: int = 20) -> str:
        text = (self.workdir / f"{name}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def _check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def stop(self) -> None:
        """End every process this control plane started, by PID, in reverse start order (so
        etcd outlives the API server); never raises."""
        for proc in reversed(list(self.processes.values())):
            if proc.poll() is not None:
                continue
            for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue

    # --- start ---------------------------------------------------------------------------

    def _ready(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.workdir / "pki" / "ca.crt"))
        request = urllib.request.Request(
            f"{self.server}/readyz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        try:
            with urllib.request.urlopen(request, context=context, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def start(self, timeout: float = 60) -> None:
        pki = self.workdir / "pki"
        _certificates(pki)
        etcd_port, peer_port, api_port = _free_port(), _free_port(), _free_port()
        self.server = f"https://127.0.0.1:{api_port}"
        _kubeconfig(self.kubeconfig, self.server, pki / "ca.crt")
        etcd_url, peer_url = f"http://127.0.0.1:{etcd_port}", f"http://127.0.0.1:{peer_port}"
        self._spawn(
            "etcd",
            [
                "etcd",
                "--name=berth-test",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=berth-test={peer_url}",
            ],
        )
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-cluster-ip-range=10.96.0.0/16",
                # With a loopback advertise address the default reconciler logs errors forever.
                "--endpoint-reconciler-type=none",
                # Debian's etcd 3.4 cannot answer watch progress requests, which streaming lists
                # need; without them clients fall back to list+watch cleanly.
                "--feature-gates=WatchList=false",
            ],
        )
        end = time.monotonic() + timeout
        while not self._ready():
            self._check_alive()
            if time.monotonic() > end:
                raise TimeoutError(f"kube-apiserver not ready:\n{self.log_tail('kube-apiserver')}")
            time.sleep(0.25)
        common = [f"--kubeconfig={self.kubeconfig}", "--leader-elect=false", "--secure-port=0"]
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bin / "kube-controller-manager"),
                *common,
                # nodelifecycle lifts the not-ready taint once kwok reports a node Ready; the
                # PV binder binds the claims that example workers mount.
                "--controllers=garbagecollector,namespace,serviceaccount,nodelifecycle,"
                "persistentvolume-binder-controller",
                "--use-service-account-credentials=false",
            ],
        )
        self._spawn("kube-scheduler", [str(self.bin / "kube-scheduler"), *common])
        stages = sorted((self.bin.parent / "stages").glob("*.yaml"))
        stages += sorted((HERE / "stages").glob("*.yaml"))
        self._spawn(
            "kwok",
            [
                str(self.bin / "kwok"),
                f"--kubeconfig={self.kubeconfig}",
                *(f"--config={stage}" for stage in stages),
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                "--cidr=10.0.0.1/16",  # room for the pods of the 1,000-job benchmark
                "--node-ip=10.0.0.1",
                f"--server-address=127.0.0.1:{_free_port()}",
            ],
        )
        time.sleep(0.5)
        self._check_alive()


def create_simulated_nodes(core: Any, description: Any) -> list[str]:
    """Create the nodes a cluster description stands for, marked for kwok (which then plays
    their kubelet), through a kubernetes CoreV1Api; returns their names."""
    names = []
    for node in node_objects(parse_cluster(description)):
        meta = node["metadata"]
        meta["annotations"] = {**meta.get("annotations", {}), KWOK_ANNOTATION: "fake"}
        meta["labels"] = {**meta["labels"], "type": "kwok"}
        core.create_node(node)
        names.append(meta["name"])
    return names
