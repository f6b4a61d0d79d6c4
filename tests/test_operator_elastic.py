"""Resizing on a real control plane: an elastic job grows into a node that frees and shrinks
for a higher-priority job; a rigid job under the checkpoint contract moves to a type that frees
and suits its objective better; worker Pods follow, and no other job's Pod is touched."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from berth.crds import GROUP, VERSION
from tests.conftest import ROOT, own_control_plane
from tests.kube import BerthProcess, Cluster, eventually, operator, training_job

pytestmark = [pytest.mark.controlplane, pytest.mark.operator]
PLURAL = "acceleratorjobs"
NS = "elastic"
NODES = {
    "name": "two-a100",
    "pools": [
        {"name": "a100", "accelerator": "a100-sxm4-80gb", "gpusPerNode": 8, "nodes": 2,
         "cpuCores": 64, "memory": "512Gi"},
    ],
}  # fmt: skip
MIXED = {
    "name": "a100-and-t4",
    "pools": [
        {"name": "a100", "accelerator": "a100-sxm4-80gb", "gpusPerNode": 8, "nodes": 1,
         "cpuCores": 64, "memory": "512Gi"},
        {"name": "t4", "accelerator": "t4", "gpusPerNode": 8, "nodes": 1,
         "cpuCores": 64, "memory": "512Gi"},
    ],
}  # fmt: skip
# Resize every 2 s, with no minimum interval, so the test sees several periods quickly.
RESIZE = ["--resize-period", "2", "--resize-min-interval", "0"]


class Env:
    def __init__(self, cluster: Cluster, op: BerthProcess) -> None:
        self.cluster, self.operator, self.core = cluster, op, cluster.core
        self.jobs = client.CustomObjectsApi(cluster.api)

    def create(self, job: dict[str, Any]) -> None:
        self.jobs.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, job)

    def status(self, name: str) -> dict[str, Any]:
        got = self.jobs.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
        return dict(got.get("status") or {})

    def workers(self, name: str) -> dict[str, client.V1Pod]:
        pods = self.core.list_namespaced_pod(NS, label_selector=f"berth.dev/job={name}").items
        return {p.metadata.name: p for p in pods if p.metadata.deletion_timestamp is None}

    def until(self, what: str, check: Any, timeout: float = 60) -> Any:
        try:
            return eventually(check, timeout, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.operator.tail()}") from None


def start(tmp: Path, nodes: dict[str, Any]) -> Iterator[Env]:
    for cluster in own_control_plane(tmp / "plane"):
        cluster.add_nodes(nodes)
        cluster.install_crd()
        identity = cluster.service_account(ROOT / "operator" / "rbac.yaml", "berth-operator",
                                           "berth-system")  # fmt: skip
        cluster.namespace(NS)
        op = operator(identity, tmp / "operator.log", None, RESIZE).start()
        try:
            yield Env(cluster, op)
        finally:
            op.stop()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield from start(tmp_path_factory.mktemp("elastic"), NODES)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield from start(tmp_path_factory.mktemp("mixed"), MIXED)


def elastic_job(name: str) -> dict[str, Any]:
    job = training_job(name, 2, 16)
    job["spec"] |= {"elastic": True, "objective": {"type": "time"}}
    return job


def rigid_job(name: str, priority: int = 0) -> dict[str, Any]:
    job = training_job(name, 8)
    job["spec"]["priority"] = priority
    return job


def devices(status: dict[str, Any]) -> int:
    return int(status["placement"]["count"])


def test_an_elastic_job_grows_when_a_node_frees_and_shrinks_for_a_higher_priority_job(
    env: Env,
) -> None:
    env.create(rigid_job("blocker"))
    env.until("blocker running", lambda: env.status("blocker").get("phase") == "Running")
    env.create(elastic_job("stretch"))
    first = env.until("stretch running", lambda: (s := env.status("stretch")).get("phase")
                      == "Running" and s)  # fmt: skip
    assert devices(first) == 8 and "resizes" not in first  # all the free node holds
    (blocker_pod,) = env.workers("blocker").values()

    # The blocker's workers finish: its node frees and the elastic job grows into it.
    patch = {"metadata": {"annotations": {"berth.dev/kwok-succeed": "true"}}}
    env.core.patch_namespaced_pod(blocker_pod.metadata.name, NS, patch)
    grown = env.until("stretch grown and running", lambda: (s := env.status("stretch")).get(
        "phase") == "Running" and devices(s) > 8 and s)  # fmt: skip
    (resize,) = grown["resizes"]
    assert (resize["fromCount"], resize["reason"]) == (8, "use idle devices")
    assert resize["toCount"] == devices(grown) and resize["predictedGain"].startswith("+")
    assert sorted(env.workers("stretch")) == ["stretch-w0", "stretch-w1"]

    # A higher-priority job that needs a whole node: the elastic job gives one back.
    env.create(rigid_job("urgent", priority=10))
    env.until("urgent running", lambda: env.status("urgent").get("phase") == "Running")
    shrunk = env.status("stretch")
    assert devices(shrunk) == 8 and shrunk["resizes"][-1]["reason"] == "make room for urgent"
    assert env.until("the surplus worker gone",
                     lambda: sorted(env.workers("stretch")) == ["stretch-w0"])  # fmt: skip
    assert len(env.workers("urgent")) == 1

    # No other job's Pod was touched: the blocker's worker is the same object, finished.
    (after,) = env.workers("blocker").values()
    assert after.metadata.uid == blocker_pod.metadata.uid and after.status.phase == "Succeeded"
    reasons = [e.reason for e in env.core.list_namespaced_event(NS).items
               if e.involved_object.name == "stretch"]  # fmt: skip
    assert reasons.count("Resized") == 2
    assert "forbidden" not in env.operator.log.read_text().lower()


def test_a_rigid_job_under_the_checkpoint_contract_moves_to_the_type_that_suits_it_better(
    mixed: Env,
) -> None:
    env = mixed
    blocker = training_job("t4-blocker", 8)
    blocker["spec"]["accelerators"]["types"] = ["t4"]
    env.create(blocker)
    env.until("t4 blocker running", lambda: env.status("t4-blocker").get("phase") == "Running")
    # Energy: the T4 does ResNet-50 for fewer joules per sample, but it is busy; a100 it is.
    mover = training_job("mover", 2)
    mover["spec"] |= {
        "accelerators": {"types": ["a100", "t4"], "count": {"min": 2, "max": 2}},
        "objective": {"type": "energy"},
        "checkpoint": {"restartSeconds": 30},
    }
    mover["spec"]["workload"]["totalWork"] = {"samples": 10**9}
    env.create(mover)
    bystander = training_job("bystander", 2)
    bystander["spec"]["accelerators"]["types"] = ["a100"]
    env.create(bystander)
    for name in ("mover", "bystander"):
        env.until(f"{name} running", lambda n=name: env.status(n).get("phase") == "Running")
    assert env.status("mover")["placement"]["type"] == "a100"
    (old,) = env.workers("mover").values()
    (other,) = env.workers("bystander").values()

    (blocking,) = env.workers("t4-blocker").values()
    patch = {"metadata": {"annotations": {"berth.dev/kwok-succeed": "true"}}}
    env.core.patch_namespaced_pod(blocking.metadata.name, NS, patch)
    moved = env.until("mover on t4 and running", lambda: (s := env.status("mover")).get(
        "phase") == "Running" and s["placement"]["type"] == "t4" and s)  # fmt: skip
    (resize,) = moved["resizes"]
    assert (resize["fromType"], resize["toType"], resize["toCount"]) == ("a100", "t4", 2)
    assert resize["reason"] == "better for energy on t4"
    assert resize["predictedGain"].startswith("-")  # fewer joules

    def on_t4() -> dict[str, client.V1Pod] | None:
        w = env.workers("mover")
        return w if w and all(p.spec.node_name == "t4-0" for p in w.values()) else None

    (new,) = env.until("the mover's worker re-made on t4", on_t4).values()
    assert new.metadata.name == old.metadata.name and new.metadata.uid != old.metadata.uid
    env_vars = {e.name: e.value for e in new.spec.containers[0].env}
    assert env_vars["BERTH_ACCELERATOR"] == "t4"

    (after,) = env.workers("bystander").values()
    assert after.metadata.uid == other.metadata.uid and after.spec.node_name == "a100-0"
    events = [e for e in env.core.list_namespaced_event(NS).items
              if e.involved_object.name == "mover" and e.reason == "Resized"]  # fmt: skip
    assert len(events) == 1 and "a100 x2 -> t4 x2" in events[0].message
