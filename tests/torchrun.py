"""Real torchrun workers on the real control plane, for the torchrun tests and the bench: a
plane whose nodes the process harness runs, with the operator resizing every 2 s; jobs whose
workers run examples/torchrun/elastic_train.py; and what those workers reported
(--report-dir, --progress-dir): the groups they formed and the samples they counted."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from kubernetes import client

from berth.crds import GROUP, VERSION
from e2e.cluster.kubelet import ProcessKubelet
from tests.conftest import ROOT, own_control_plane
from tests.kube import BerthProcess, eventually, operator, training_job

PLURAL = "acceleratorjobs"
NS = "torchrun"
RESIZE = ["--resize-period", "2", "--resize-min-interval", "0"]
A100S = {"name": "a100", "accelerator": "a100-sxm4-80gb", "gpusPerNode": 1, "nodes": 3,
         "cpuCores": 16, "memory": "64Gi"}  # fmt: skip
# Eight T4s on one node: a move onto two of them leaves the type idle enough to be allowed.
T4 = {"name": "t4", "accelerator": "t4", "gpusPerNode": 8, "nodes": 1, "cpuCores": 16,
      "memory": "64Gi"}  # fmt: skip
TIMEOUT = 150  # s for a group to form: torch imports and rendezvous on two shared cores


@dataclass(frozen=True)
class Generation:
    """One rendezvous round's group, as its own ranks reported it."""

    id: str
    world: int
    ranks: tuple[int, ...]
    hosts: tuple[str, ...]
    formed: float  # when its last rank reported in
    resumed: int  # samples done when it started (its checkpoint)
    counted: int  # samples its ranks counted by the progress contract
    last: float  # its last progress report

    @property
    def reached(self) -> int:
        return self.resumed + self.counted


def generations(reports: Path) -> list[Generation]:
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in reports.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            if line.strip():
                event = json.loads(line)
                events[event["generation"]].append(event)
    counted: dict[str, int] = defaultdict(int)
    last: dict[str, float] = defaultdict(float)
    for path in reports.glob("*.progress"):
        lines = path.read_text().split("\n")
        complete = [x.split() for x in lines[:-1] if x.strip()]  # a crash may cut the last
        if complete:
            generation = path.name.split("-r")[0]
            counted[generation] += int(float(complete[-1][1]))
            last[generation] = max(last[generation], float(complete[-1][0]))
    found = []
    for gid, evs in events.items():
        formed = [e for e in evs if e["event"] == "formed"]
        if not formed:
            continue
        found.append(
            Generation(
                gid,
                int(formed[0]["world"]),
                tuple(sorted(int(e["rank"]) for e in formed)),
                tuple(sorted({e["host"] for e in formed})),
                max(float(e["time"]) for e in formed),
                int(formed[0]["samples"]),
                counted[gid],
                max(last[gid], *(float(e["time"]) for e in evs)),
            )
        )
    return sorted(found, key=lambda g: g.formed)


def since(stamp: str, moment: float) -> float:
    """Seconds from a status time stamp (RFC 3339) to a unix time."""
    return moment - datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class Env:
    def __init__(self, core: client.CoreV1Api, api: client.ApiClient, op: BerthProcess,
                 kubelet: ProcessKubelet, tmp: Path) -> None:  # fmt: skip
        self.core, self.operator, self.kubelet, self.tmp = core, op, kubelet, tmp
        self.jobs = client.CustomObjectsApi(api)

    def create(self, job: dict[str, Any]) -> None:
        self.jobs.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, job)

    def delete(self, name: str) -> None:
        self.jobs.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)

    def status(self, name: str) -> dict[str, Any]:
        got = self.jobs.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
        return dict(got.get("status") or {})

    def created(self, name: str) -> str:
        got = self.jobs.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
        return str(got["metadata"]["creationTimestamp"])

    def pods(self, name: str) -> list[client.V1Pod]:
        return list(self.core.list_namespaced_pod(NS, label_selector=f"berth.dev/job={name}").items)

    def until(self, what: str, check: Any, timeout: float = TIMEOUT) -> Any:
        try:
            return eventually(check, timeout, what=what)
        except AssertionError as exc:
            logs = "\n".join(
                f"--- {p.metadata.name}\n{self.kubelet.log(NS, p.metadata.name)[-3000:]}"
                for p in self.core.list_namespaced_pod(NS).items
            )
            raise AssertionError(
                f"{exc}\nharness errors: {self.kubelet.errors[-5:]}\n{logs}\n{self.operator.tail()}"
            ) from None

    def world(self, job: str, size: int, after: float = 0.0) -> Generation:
        """The first group of `size` workers formed after `after` (unix time), once each of its
        ranks has reported in."""
        reports = self.tmp / job / "reports"

        def formed() -> Generation | None:
            found = [
                g
                for g in generations(reports)
                if g.formed > after and g.world == size and len(g.ranks) == size  # all in
            ]
            return found[0] if found else None

        return self.until(f"{job}: a world of {size}", formed)  # type: ignore[no-any-return]


def start(tmp: Path, pools: list[dict[str, Any]], flags: Sequence[str] = RESIZE) -> Generator[Env]:
    for cluster in own_control_plane(tmp / "plane"):
        cluster.install_crd()
        identity = cluster.service_account(ROOT / "operator" / "rbac.yaml", "berth-operator",
                                           "berth-system")  # fmt: skip
        cluster.namespace(NS)
        kubelet = ProcessKubelet(cluster.core, tmp / "kubelet", cwd=ROOT)
        try:
            kubelet.start({"name": "harness", "pools": pools})
            op = operator(identity, tmp / "operator.log", None, flags).start()
            try:
                yield Env(cluster.core, cluster.api, op, kubelet, tmp)
            finally:
                op.stop()
        finally:
            kubelet.stop()


def trainer(env: Env, name: str, low: int, high: int) -> dict[str, Any]:
    """A training job whose workers run examples/torchrun/elastic_train.py under torchrun."""
    folder = env.tmp / name
    for sub in ("checkpoints", "reports"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    job = training_job(name, low, high)
    job["spec"]["workload"]["totalWork"] = {"samples": 10**9}
    (container,) = job["spec"]["template"]["spec"]["containers"]
    container["command"] = ["torchrun", "examples/torchrun/elastic_train.py"]
    container["args"] = [
        "--checkpoint-dir", str(folder / "checkpoints"), "--report-dir", str(folder / "reports"),
        "--progress-dir", str(folder / "reports"), "--total-samples", str(10**9),
        "--step-seconds", "0.05", "--checkpoint-every", "20",
    ]  # fmt: skip
    return job


def holder(env: Env, name: str, count: int, types: list[str], priority: int = 0) -> dict[str, Any]:
    """A rigid job whose one worker holds its devices until its release file appears."""
    job = training_job(name, count)
    job["spec"] |= {"priority": priority}
    job["spec"]["accelerators"]["types"] = types
    (container,) = job["spec"]["template"]["spec"]["containers"]
    done = env.tmp / f"{name}.release"
    container["command"] = ["sh", "-c", f"until [ -e {done} ]; do sleep 0.2; done"]
    return job


def release(env: Env, name: str) -> None:
    (env.tmp / f"{name}.release").touch()
    env.until(f"{name} succeeded", lambda: env.status(name).get("phase") == "Succeeded")


def accounted(env: Env, job: str) -> list[Generation]:
    """Delete the job (every worker saves on SIGTERM), then check its progress: each group
    resumed where the one before stopped, and every sample counted once, beyond the work since
    the last checkpoint that a crash repeats (none here: every change was graceful)."""
    env.delete(job)
    env.until(f"{job}'s workers gone", lambda: not env.pods(job), timeout=90)
    seen = generations(env.tmp / job / "reports")
    for before, after in itertools.pairwise(seen):
        assert after.formed >= before.last, f"two groups at once: {before} and {after}"
        assert after.resumed == before.reached, f"{before} stopped where {after} did not resume"
    final = torch.load(env.tmp / job / "checkpoints" / "latest.pt", weights_only=True)
    assert int(final["samples"]) == seen[-1].reached
    assert sum(g.counted for g in seen) == int(final["samples"])
    return seen


@dataclass(frozen=True)
class GrowAndShrink:
    first: Generation  # the group formed at 2
    grown: Generation  # at 3, once the blocker's node freed
    shrunk: Generation  # at 2 again, for a priority-10 job
    resizes: list[dict[str, Any]]  # status.resizes at the end
    seconds: dict[str, float]  # form (from creation), grow and shrink (from the decision)


def grow_and_shrink(env: Env) -> GrowAndShrink:
    """An elastic 2..3 job on three one-GPU nodes, one held by another job: it forms at 2,
    grows to 3 when that job ends, shrinks to 2 for a higher-priority job (the policy shrinks a
    donor to its floor, hence a floor of 2)."""
    env.create(holder(env, "blocker", 1, ["a100"]))
    env.until("blocker running", lambda: env.status("blocker").get("phase") == "Running")
    job = trainer(env, "stretch", 2, 3)
    job["spec"] |= {"elastic": True, "objective": {"type": "time"}}
    env.create(job)
    first = env.world("stretch", 2)
    release(env, "blocker")
    grown = env.world("stretch", 3, after=first.formed)
    grow = env.status("stretch")["resizes"][-1]
    env.create(holder(env, "urgent", 1, ["a100"], priority=10))
    shrunk = env.world("stretch", 2, after=grown.formed)
    resizes = list(env.status("stretch")["resizes"])
    seconds = {
        "form": since(env.created("stretch"), first.formed),
        "grow": since(grow["time"], grown.formed),
        "shrink": since(resizes[-1]["time"], shrunk.formed),
    }
    return GrowAndShrink(first, grown, shrunk, resizes, seconds)
