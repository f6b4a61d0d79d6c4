"""A kubelet for tests that runs Pods as real processes, so that what berth creates is seen to
work, not just to be scheduled (kwok plays pods but runs nothing).

For nodes of its own (created here, Ready, their Leases renewed), it runs each Pod that
kube-scheduler binds to one of them as a kubelet would:
- a network namespace per Pod, its veth on a bridge in a namespace of the harness's own, with a
  private address that exists only inside this machine (the Pod's IP in its status);
- its own UTS namespace with the Pod's `hostname`, and a mount namespace (`ip netns exec`) in
  which /etc/hosts is the file kubelet writes (localhost, the Pod's own FQDN) plus the records
  cluster DNS would serve for headless Services (the Service name -> every Pod it selects, with
  publishNotReadyAddresses; hostname.subdomain -> that Pod), rewritten in place as Pods come and
  go: this stands in for DNS;
- the first container's command and args with the env of its spec (values, and fieldRefs to the
  Pod's name, namespace, uid, node and IP), on this machine's filesystem and with this Python
  environment's PATH first (there are no images: a path in the command is the same file for
  every Pod, as a ReadWriteMany volume would be);
- this machine itself on the Pods' network (the bridge's address HOST), as a CNI routes every
  Pod's IP from every node: an operator run here reaches a Pod at its IP, as it would in a
  cluster;
- deletion: SIGTERM to the container's main process, the Pod's grace period, then SIGKILL to all
  it started, then the final delete; an exit is restarted as restartPolicy says, with kubelet's
  back-off (at once, then 10 s doubling to 300 s), or ends the Pod Succeeded or Failed.
Everything it creates (processes, namespaces, links, files) it removes by PID or by name.

Over 400 lines on purpose: it is one kubelet (sandbox, container, status, DNS, cleanup), whose
parts share one Pod's state and are read together when a torchrun test fails.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from berth.core.cluster import node_objects, parse_cluster

SUBNET = "10.213"  # /16; lives only on the harness's bridge, its namespaces and its host link
HOST = f"{SUBNET}.255.254"  # this machine's address on it
LABEL = "berth.dev/harness"
# Sets the Pod's hostname in its new UTS namespace, then becomes the container's command.
_ENTER = (
    "import os, socket, sys; socket.sethostname(sys.argv[1]); os.execvp(sys.argv[2], sys.argv[2:])"
)


def missing_capabilities() -> str | None:
    """Why this machine cannot run the harness, or None: root, iproute2 and util-linux's
    unshare, and network namespaces that can be made."""
    if os.geteuid() != 0:
        return "the process harness needs root (network, UTS and mount namespaces)"
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            return f"the process harness needs `{tool}` (iproute2, util-linux)"
    probe = f"berth-probe-{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Run:
    """One Pod's sandbox and container."""

    uid: str
    namespace: str
    name: str
    netns: str
    ip: str
    hostname: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    started: str = ""
    restarts: int = 0
    backoff_s: float = 0.0
    next_start: float = 0.0  # monotonic; when a restart is due
    terminating_until: float | None = None  # monotonic; SIGKILL after
    finished: bool = False
    hosts: str = ""  # what its /etc/hosts says now
    hosts_size: int = 0  # its length in bytes, padding included


@dataclass
class ProcessKubelet:
    core: client.CoreV1Api
    workdir: Path
    cwd: Path  # a container's working directory where its spec names none
    period_s: float = 0.1
    nodes: list[str] = field(default_factory=list)
    runs: dict[str, Run] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.id = secrets.token_hex(2)
        self.switch = f"berth-{self.id}-sw"
        self.etc = Path("/etc/netns")
        self._count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="process-kubelet", daemon=True)
        self._leases = client.CoordinationV1Api(self.core.api_client)
        self._renewed = 0.0

    # --- life ----------------------------------------------------------------------------

    def start(self, description: Mapping[str, Any]) -> list[str]:
        """Create the description's nodes, Ready and run by this kubelet; returns their names."""
        problem = missing_capabilities()
        if problem:
            raise RuntimeError(problem)
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        _ip("netns", "add", self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        # Goes with the switch's namespace: deleting that deletes the pair.
        host = f"bk{self.id}h"
        _ip("link", "add", host, "type", "veth", "peer", "name", "host", "netns", self.switch)
        _ip("-n", self.switch, "link", "set", "host", "master", "br0", "up")
        _ip("addr", "add", f"{HOST}/16", "dev", host)
        _ip("link", "set", host, "up")
        for node in node_objects(parse_cluster(description)):
            node["metadata"]["labels"][LABEL] = self.id
            self.core.create_node(node)
            name = node["metadata"]["name"]
            status = dict(node["status"])
            status["conditions"] = [
                {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "message": "berth's process harness runs this node's pods",
                 "lastHeartbeatTime": _stamp(), "lastTransitionTime": _stamp()},
            ]  # fmt: skip
            self.core.patch_node_status(name, {"status": status})
            self.nodes.append(name)
        self._renew_leases()
        self._thread.start()
        return list(self.nodes)

    def stop(self) -> None:
        """Stop the loop, then every process (SIGKILL, by process group) and every namespace and
        file this kubelet made; never raises."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        for run in list(self.runs.values()):
            self._teardown(run)
        subprocess.run(["ip", "netns", "del", self.switch], capture_output=True)

    def log(self, namespace: str, name: str) -> str:
        path = self.workdir / "logs" / f"{namespace}_{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # --- the loop ------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync()
            except Exception as exc:  # keep running: a test reads these and the pods' states
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(self.period_s)

    def _renew_leases(self) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        for name in self.nodes:
            body = {"metadata": {"name": name}, "spec": {"holderIdentity": name,
                    "leaseDurationSeconds": 40, "renewTime": now}}  # fmt: skip
            try:
                self._leases.patch_namespaced_lease(name, "kube-node-lease", body)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                self._leases.create_namespaced_lease("kube-node-lease", body)
        self._renewed = time.monotonic()

    def _sync(self) -> None:
        if time.monotonic() - self._renewed > 5:
            self._renew_leases()
        serialize = self.core.api_client.sanitize_for_serialization
        pods = [
            serialize(p)
            for p in self.core.list_pod_for_all_namespaces().items
            if p.spec.node_name in self.nodes
        ]
        by_uid = {p["metadata"]["uid"]: p for p in pods}
        for uid in [u for u in self.runs if u not in by_uid]:  # deleted without us: force
            self._kill(self.runs[uid])
            self._teardown(self.runs.pop(uid))
        for uid, pod in by_uid.items():
            self._step(pod, self.runs.get(uid))
        services = [serialize(s) for s in self.core.list_service_for_all_namespaces().items]
        self._write_hosts(pods, services)

    def _step(self, pod: dict[str, Any], run: Run | None) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        if run is None:
            if meta.get("deletionTimestamp") or (pod.get("status") or {}).get("phase") in (
                "Succeeded",
                "Failed",
            ):
                if meta.get("deletionTimestamp"):
                    self._final_delete(meta)
                return
            run = self._sandbox(pod)
            self.runs[meta["uid"]] = run
        proc = run.proc
        if meta.get("deletionTimestamp"):
            if run.terminating_until is None:
                grace = meta.get("deletionGracePeriodSeconds")
                run.terminating_until = time.monotonic() + float(30 if grace is None else grace)
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)  # to the main process, as a runtime does
            if proc is not None and proc.poll() is None:
                if time.monotonic() < run.terminating_until:
                    return
                self._kill(run)
            self._teardown(self.runs.pop(meta["uid"]))
            self._final_delete(meta)
            return
        if run.finished:
            return
        if proc is None or proc.poll() is not None:
            code = None if proc is None else proc.returncode
            policy = spec.get("restartPolicy", "Always")
            if code is not None and run.next_start == 0.0:
                again = policy == "Always" or (policy == "OnFailure" and code != 0)
                if not again:
                    self._finish(pod, run, code)
                    return
                run.next_start = time.monotonic() + run.backoff_s
                run.backoff_s = min(max(run.backoff_s * 2, 10.0), 300.0)
                run.restarts += 1
                self._patch(pod, self._waiting(pod, run, code))
            if time.monotonic() >= run.next_start:
                run.next_start = 0.0
                self._exec(pod, run)

    # --- a pod's sandbox and container ---------------------------------------------------

    def _sandbox(self, pod: dict[str, Any]) -> Run:
        meta, spec = pod["metadata"], pod["spec"]
        n = self._count = self._count + 1
        ip = f"{SUBNET}.{n // 250}.{n % 250 + 2}"
        netns = f"berth-{self.id}-p{n}"
        hostname = spec.get("hostname") or meta["name"]
        run = Run(meta["uid"], meta["namespace"], meta["name"], netns, ip, hostname,
                  self.workdir / "logs" / f"{meta['namespace']}_{meta['name']}.log")  # fmt: skip
        _ip("netns", "add", netns)
        peer = f"bk{self.id}p{n}"
        _ip("link", "add", "name", "eth0", "netns", netns, "type", "veth", "peer", "name", peer,
            "netns", self.switch)  # fmt: skip
        _ip("-n", self.switch, "link", "set", peer, "master", "br0", "up")
        _ip("-n", netns, "addr", "add", f"{ip}/16", "dev", "eth0")
        _ip("-n", netns, "link", "set", "eth0", "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        etc = self.etc / netns
        etc.mkdir(parents=True, exist_ok=True)
        # No name server: every name the Pod may look up is in its hosts file.
        (etc / "resolv.conf").write_text("options ndots:5 attempts:1 timeout:1\n")
        run.hosts = self._own_hosts(pod, run)
        run.hosts_size = len(run.hosts)
        (etc / "hosts").write_text(run.hosts)
        return run

    def _own_hosts(self, pod: dict[str, Any], run: Run) -> str:
        """What kubelet writes: localhost and the Pod's own names."""
        meta, spec = pod["metadata"], pod["spec"]
        names = run.hostname
        if spec.get("subdomain"):
            names = (
                f"{run.hostname}.{spec['subdomain']}.{meta['namespace']}.svc.cluster.local {names}"
            )
        return (
            "# Kubernetes-managed hosts file (berth's process harness).\n"
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"{run.ip}\t{names}\n"
        )

    def _env(self, pod: dict[str, Any], run: Run, container: dict[str, Any]) -> dict[str, str]:
        meta, spec = pod["metadata"], pod["spec"]
        fields = {"metadata.name": meta["name"], "metadata.namespace": meta["namespace"],
                  "metadata.uid": meta["uid"], "spec.nodeName": spec["nodeName"],
                  "status.podIP": run.ip}  # fmt: skip
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "HOSTNAME": run.hostname,
            "HOME": "/root",
        }
        for item in container.get("env") or ():
            ref = ((item.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
            if item.get("valueFrom") and ref not in fields:
                raise ValueError(f"env {item['name']}: the harness resolves only {sorted(fields)}")
            env[item["name"]] = fields[ref] if ref else str(item.get("value", ""))
        return env

    def _exec(self, pod: dict[str, Any], run: Run) -> None:
        containers = pod["spec"]["containers"]
        container = containers[0]
        command = [*(container.get("command") or ()), *(container.get("args") or ())]
        if len(containers) != 1 or not container.get("command"):
            why = "one container with a command" if len(containers) != 1 else "a command"
            self._fail(pod, run, f"the process harness runs {why} (no images here)")
            return
        try:
            env = self._env(pod, run, container)
        except ValueError as exc:
            self._fail(pod, run, str(exc))
            return
        argv = ["ip", "netns", "exec", run.netns, "unshare", "--uts", "--",
                sys.executable, "-c", _ENTER, run.hostname, *command]  # fmt: skip
        with run.log.open("ab") as out:
            out.write(f"--- {_stamp()} start #{run.restarts}: {' '.join(command)}\n".encode())
            out.flush()
            run.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                cwd=container.get("workingDir") or self.cwd, start_new_session=True,
            )  # fmt: skip
        run.started = _stamp()
        self._patch(pod, self._running(pod, run))

    # --- status --------------------------------------------------------------------------

    def _conditions(self, ready: bool) -> list[dict[str, str]]:
        value = "True" if ready else "False"
        return [
            {"type": t, "status": s, "lastTransitionTime": _stamp()}
            for t, s in (("Initialized", "True"), ("ContainersReady", value), ("Ready", value))
        ]

    def _container(self, pod: dict[str, Any], run: Run, **state: Any) -> dict[str, Any]:
        c = pod["spec"]["containers"][0]
        return {"name": c["name"], "image": c.get("image", ""), "imageID": "",
                "containerID": f"harness://{run.netns}", "restartCount": run.restarts,
                "ready": "running" in state, "started": "running" in state,
                "state": state}  # fmt: skip

    def _running(self, pod: dict[str, Any], run: Run) -> dict[str, Any]:
        return {
            "phase": "Running",
            "podIP": run.ip,
            "podIPs": [{"ip": run.ip}],
            "startTime": pod.get("status", {}).get("startTime") or run.started,
            "conditions": self._conditions(True),
            "containerStatuses": [self._container(pod, run, running={"startedAt": run.started})],
        }

    def _terminated(self, run: Run, code: int) -> dict[str, Any]:
        return {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                "startedAt": run.started or _stamp(), "finishedAt": _stamp()}  # fmt: skip

    def _waiting(self, pod: dict[str, Any], run: Run, code: int) -> dict[str, Any]:
        status = self._container(pod, run, waiting={"reason": "CrashLoopBackOff"})
        status["lastState"] = {"terminated": self._terminated(run, code)}
        return {"conditions": self._conditions(False), "containerStatuses": [status]}

    def _finish(self, pod: dict[str, Any], run: Run, code: int) -> None:
        run.finished = True
        self._patch(pod, {
            "phase": "Succeeded" if code == 0 else "Failed",
            "conditions": self._conditions(False),
            "containerStatuses": [
                self._container(pod, run, terminated=self._terminated(run, code))
            ],
        })  # fmt: skip

    def _fail(self, pod: dict[str, Any], run: Run, message: str) -> None:
        run.finished = True
        self._patch(pod, {"phase": "Failed", "reason": "HarnessUnsupported", "message": message})

    def _patch(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        meta = pod["metadata"]
        try:
            self.core.patch_namespaced_pod_status(meta["name"], meta["namespace"],
                                                  {"status": status})  # fmt: skip
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _final_delete(self, meta: Mapping[str, Any]) -> None:
        options = client.V1DeleteOptions(
            grace_period_seconds=0, preconditions=client.V1Preconditions(uid=meta["uid"])
        )
        try:
            self.core.delete_namespaced_pod(meta["name"], meta["namespace"], body=options)
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    # --- DNS, as hosts files --------------------------------------------------------------

    def _write_hosts(self, pods: list[dict[str, Any]], services: list[dict[str, Any]]) -> None:
        live = {
            p["metadata"]["uid"]: p
            for p in pods
            if p["metadata"]["uid"] in self.runs and not self.runs[p["metadata"]["uid"]].finished
        }
        records: list[str] = []
        for svc in services:
            spec, ns = svc["spec"], svc["metadata"]["namespace"]
            if spec.get("clusterIP") != "None" or not spec.get("selector"):
                continue
            name = svc["metadata"]["name"]
            for uid, pod in sorted(live.items(), key=lambda kv: kv[1]["metadata"]["name"]):
                labels = pod["metadata"].get("labels") or {}
                if pod["metadata"]["namespace"] != ns or any(
                    labels.get(k) != v for k, v in spec["selector"].items()
                ):
                    continue
                ip = self.runs[uid].ip
                records.append(f"{ip}\t{name}.{ns}.svc.cluster.local {name}.{ns}.svc")
                if pod["spec"].get("subdomain") == name and pod["spec"].get("hostname"):
                    host = f"{pod['spec']['hostname']}.{name}.{ns}.svc"
                    records.append(f"{ip}\t{host}.cluster.local {host}")
        for uid, pod in live.items():
            run = self.runs[uid]
            text = (
                self._own_hosts(pod, run) + "# cluster DNS\n" + "".join(f"{r}\n" for r in records)
            )
            if text != run.hosts:
                # In place (the Pod's mount is of this inode), padded with a comment so that a
                # reader never sees the tail of a longer file before.
                short = run.hosts_size - len(text)
                padded = text + ("#" * (short - 1) + "\n" if short > 0 else "")
                fd = os.open(self.etc / run.netns / "hosts", os.O_WRONLY)
                try:
                    os.pwrite(fd, padded.encode(), 0)
                finally:
                    os.close(fd)
                run.hosts, run.hosts_size = text, max(run.hosts_size, len(padded))

    # --- cleanup -------------------------------------------------------------------------

    @staticmethod
    def _kill(run: Run) -> None:
        """SIGKILL to everything in the Pod's network namespace (torchrun's workers start
        sessions of their own, so the process group is not enough), as a runtime kills a
        container's cgroup."""
        found = subprocess.run(["ip", "netns", "pids", run.netns], capture_output=True, text=True)
        pids = {int(p) for p in found.stdout.split()}
        if run.proc is not None and run.proc.poll() is None:
            pids.add(run.proc.pid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if run.proc is not None:
            run.proc.wait()

    def _teardown(self, run: Run) -> None:
        self._kill(run)
        subprocess.run(["ip", "netns", "del", run.netns], capture_output=True)
        shutil.rmtree(self.etc / run.netns, ignore_errors=True)
