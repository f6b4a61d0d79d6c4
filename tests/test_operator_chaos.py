"""The operator under fire: bursts of jobs while the operator is killed (SIGKILL) and restarted
at random moments, and while the recommender dies. Every job must end placed exactly once,
with no duplicate or stray worker and no device promised twice."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from berth.crds import GROUP, VERSION
from tests.conftest import own_control_plane
from tests.kube import BerthProcess, Cluster, eventually, operator, recommender, training_job

pytestmark = [pytest.mark.controlplane, pytest.mark.operator, pytest.mark.chaos, pytest.mark.slow]
PLURAL = "acceleratorjobs"
HOST = {"cpuCores": 64, "memory": "512Gi"}
CLUSTER = {
    "name": "chaos",
    "pools": [
        {"name": "a100", "accelerator": "a100-sxm4-80gb", "gpusPerNode": 8, "nodes": 20, **HOST},
        {"name": "v100", "accelerator": "v100-sxm2-16gb", "gpusPerNode": 4, "nodes": 30, **HOST},
        {"name": "t4", "accelerator": "t4", "gpusPerNode": 4, "nodes": 30, **HOST},
    ],
}


class Env:
    def __init__(self, cluster: Cluster, op: BerthProcess, rec: BerthProcess) -> None:
        self.cluster, self.operator, self.recommender = cluster, op, rec
        self.jobs = client.CustomObjectsApi(cluster.api)
        self.core = cluster.core


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("chaos")
    for cluster in own_control_plane(tmp / "plane"):
        cluster.add_nodes(CLUSTER)
        cluster.install_crd()
        rec, url = recommender(tmp / "recommender.log")
        op = operator(cluster.kubeconfig, tmp / "operator.log", url).start()
        try:
            yield Env(cluster, op, rec)
        finally:
            op.stop()
            rec.stop()


def create_all(env: Env, ns: str, jobs: list[dict[str, Any]]) -> None:
    for j in jobs:
        env.jobs.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, j)


def all_running(env: Env, ns: str, n: int) -> list[dict[str, Any]]:
    """Every job Running: placed, its workers created, bound by kube-scheduler and started."""
    seen: Counter[str] = Counter()
    late: list[str] = []

    def running() -> list[dict[str, Any]] | None:
        items: list[dict[str, Any]] = env.jobs.list_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL
        )["items"]
        seen.clear()
        seen.update(str((j.get("status") or {}).get("phase")) for j in items)
        late[:] = [
            f"{j['metadata']['name']}: {j.get('status')}"
            for j in items
            if (j.get("status") or {}).get("phase") != "Running"
        ]
        return items if seen["Running"] == n else None

    try:
        return eventually(running, timeout=120, what=f"{n} jobs Running in {ns}")
    except AssertionError as exc:
        pods = env.core.list_namespaced_pod(ns).items
        states = [(p.metadata.name, p.spec.node_name, p.status.phase) for p in pods]
        raise AssertionError(f"{exc}; phases {dict(seen)}; {late[:3]}; pods {states}") from None


def check_exactly_once(env: Env, ns: str, jobs: list[dict[str, Any]]) -> Counter[str]:
    pods = env.core.list_namespaced_pod(ns, label_selector="berth.dev/job").items
    by_job: dict[str, list[client.V1Pod]] = {}
    for pod in pods:
        by_job.setdefault(pod.metadata.labels["berth.dev/job"], []).append(pod)
    events = Counter(
        e.involved_object.name
        for e in env.core.list_namespaced_event(ns).items
        if e.involved_object.kind == "AcceleratorJob" and e.reason == "Placed"
    )
    counts: Counter[str] = Counter()
    for j in jobs:
        name, placement = j["metadata"]["name"], j["status"]["placement"]
        mine = sorted(by_job.pop(name, []), key=lambda p: p.metadata.name)
        assert [p.metadata.name for p in mine] == [
            f"{name}-w{k}" for k in range(len(placement["nodes"]))
        ], f"{name}: workers {[p.metadata.name for p in mine]} for {placement}"
        for pod, share in zip(mine, placement["nodes"], strict=True):
            terms = (
                pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
            )
            assert terms.node_selector_terms[0].match_fields[0].values == [share["name"]]
        assert events[name] <= 1, f"{name} was placed {events[name]} times"
        counts["jobs placed"] += 1
        counts["worker pods"] += len(mine)
        counts["Placed events"] += events[name]
    assert by_job == {}, f"pods of no known job: {sorted(by_job)}"
    return counts


def check_no_device_promised_twice(env: Env) -> None:
    used: Counter[str] = Counter()
    for pod in env.core.list_pod_for_all_namespaces(label_selector="berth.dev/job").items:
        used[pod.spec.node_name] += int(pod.spec.containers[0].resources.limits["nvidia.com/gpu"])
    for node in env.core.list_node().items:
        assert used[node.metadata.name] <= int(node.status.allocatable["nvidia.com/gpu"])


def test_a_burst_survives_operator_kills_and_every_job_is_placed_exactly_once(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = env.cluster.namespace("burst")
    jobs = [training_job(f"job-{i:03d}", 2 if i % 3 == 0 else 1) for i in range(200)]
    rng = random.Random(7)
    kills = 0
    creating = threading.Thread(target=create_all, args=(env, ns, jobs))
    creating.start()
    began = time.monotonic()
    while creating.is_alive() or kills < 5:
        time.sleep(rng.uniform(0.5, 3.0))
        env.operator.kill()
        kills += 1
        time.sleep(rng.uniform(0.0, 0.5))
        env.operator.start()
    creating.join()
    placed = all_running(env, ns, len(jobs))
    counts = check_exactly_once(env, ns, placed)
    assert counts["jobs placed"] == len(jobs)
    check_no_device_promised_twice(env)
    without_status = sum(1 for j in placed if not j.get("status"))
    with capsys.disabled():  # the counts belong in CI's log
        print(
            f"\n{len(jobs)} jobs, operator killed {kills} times "
            f"in {time.monotonic() - began:.1f} s: "
            + ", ".join(f"{k} {v}" for k, v in counts.items())
            + f", jobs without status {without_status}"
        )
    assert without_status == 0


def test_jobs_are_placed_by_the_named_fallback_after_the_recommender_dies(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = env.cluster.namespace("outage")
    before = [training_job(f"before-{i:02d}", 1) for i in range(20)]
    after = [training_job(f"after-{i:02d}", 1) for i in range(40)]
    create_all(env, ns, before)
    all_running(env, ns, len(before))
    env.recommender.kill()
    create_all(env, ns, after)
    placed = all_running(env, ns, len(before) + len(after))
    by_source: Counter[str] = Counter()
    for j in placed:
        st = j["status"]
        source = st["placement"]["source"]
        by_source[source] += 1
        conditions = {c["type"]: c for c in st["conditions"]}
        if j["metadata"]["name"].startswith("after-"):
            assert source.startswith("fallback: spec-ratio"), source
            assert conditions["RecommenderUnavailable"]["status"] == "True"
        else:
            assert source.startswith("recommender model"), source
            assert "RecommenderUnavailable" not in conditions
    check_exactly_once(env, ns, placed)
    with capsys.disabled():
        print(f"\n{len(placed)} jobs, recommender killed after 20: placed by {dict(by_source)}")


def test_of_two_replicas_the_lease_holder_alone_decides_and_the_other_takes_over_when_it_dies(
    env: Env, tmp_path: Path
) -> None:
    env.operator.stop()
    replicas = [
        operator(env.cluster.kubeconfig, tmp_path / f"replica-{i}.log", None) for i in range(2)
    ]
    for r in replicas:
        r.argv += ["--leader-elect", "default"]
        r.start()
    try:
        ns = env.cluster.namespace("elected")
        first = [training_job(f"first-{i:02d}", 1) for i in range(20)]
        create_all(env, ns, first)
        all_running(env, ns, len(first))
        assert len(_deciders(env, ns, "first-")) == 1
        holder = (
            client.CoordinationV1Api(env.cluster.api)
            .read_namespaced_lease("berth-operator", "default")
            .spec.holder_identity
        )
        leader = next(r for r in replicas if holder.endswith(f"-{r.pid}"))
        leader.kill()
        second = [training_job(f"second-{i:02d}", 1) for i in range(10)]
        create_all(env, ns, second)
        placed = all_running(env, ns, len(first) + len(second))
        counts = check_exactly_once(env, ns, placed)
        assert counts["jobs placed"] == 30
        check_no_device_promised_twice(env)
        deciders = _deciders(env, ns, "second-")
        assert len(deciders) == 1  # the survivor alone
        assert not any(d.endswith(f"-{leader.pid}") for d in deciders)
    finally:
        for r in replicas:
            r.stop()
        env.operator.start()


def _deciders(env: Env, ns: str, prefix: str) -> set[str]:
    return {
        e.reporting_instance
        for e in env.core.list_namespaced_event(ns).items
        if e.reason == "Placed" and e.involved_object.name.startswith(prefix)
    }
