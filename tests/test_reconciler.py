"""The reconciler's steps without a cluster: a recording fake of the API (tests/fake_kube.py),
an injected clock, plain dicts for the cache. What was written, in which order, with which
precondition; the control-plane tests (test_operator*.py) hold the same against the real one."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from berth.core.catalog import VARIANTS
from berth.core.cluster import node_objects, parse_cluster
from berth.core.job import parse_job
from berth.core.posterior import Measured
from berth.core.validation import apply_defaults
from berth.crds import acceleratorjob_schema
from berth.operator import decision
from berth.operator.events import Events
from berth.operator.handlers import Runner
from berth.operator.kube import Invalid, Unavailable
from berth.operator.measurements import JobProgress, Measurements
from berth.operator.metrics import Metrics
from berth.operator.reconciler import Reconciler, View
from berth.placement.elastic import Settings
from tests.fake_kube import FakeKube, Inline
from tests.kube import training_job

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
CLUSTER = {
    "name": "t",
    "pools": [{"name": "a100", "accelerator": "a100-sxm4-80gb", "gpusPerNode": 8, "nodes": 2,
               "cpuCores": 64, "memory": "512Gi"}],
}  # fmt: skip
METRICS = Metrics()  # one registry per process: prometheus_client refuses a second of a name


def nodes() -> list[dict[str, Any]]:
    out = node_objects(parse_cluster(CLUSTER))
    for n in out:
        n["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    return out


def job(name: str = "train", count: int = 2, rv: str = "1", **spec: Any) -> dict[str, Any]:
    """An AcceleratorJob as the API server returns it."""
    body = training_job(name, count)
    created = "2026-12-01T11:00:00Z"
    body["metadata"] |= {"namespace": "ns", "uid": f"uid-{name}", "generation": 1,
                         "resourceVersion": rv, "creationTimestamp": created}  # fmt: skip
    body["spec"] |= spec
    defaulted: dict[str, Any] = apply_defaults(acceleratorjob_schema(), body)
    return defaulted


def pod(owner: str, k: int, node: str, phase: str = "Running") -> dict[str, Any]:
    return {
        "metadata": {"name": f"{owner}-w{k}", "namespace": "ns",
                     "labels": {"berth.dev/job": owner, "berth.dev/worker": str(k)}},
        "spec": {"nodeName": node, "containers": [{"resources": {}}]},
        "status": {"phase": phase},
    }  # fmt: skip


class World:
    """A reconciler on a fake API with the clock stopped at NOW."""

    def __init__(
        self,
        *jobs: dict[str, Any],
        elastic: Settings | None = None,
        measurements: Measurements | None = None,
    ) -> None:
        self.kube = FakeKube({("ns", j["metadata"]["name"]): j for j in jobs})
        self.monotonic = 0.0
        self.reconciler = Reconciler(
            self.kube, None, METRICS, clock=lambda: NOW, elastic=elastic,
            monotonic=lambda: self.monotonic, events=Events(self.kube, lambda: NOW, Inline()),
            measurements=measurements,
        )  # fmt: skip

    def cycle(
        self,
        jobs: list[dict[str, Any]],
        pods: Sequence[dict[str, Any]] = (),
        epoch: int = 0,
        changed: frozenset[tuple[str, str]] | None = None,
    ) -> bool:
        return self.reconciler.cycle(View(nodes(), pods, jobs, epoch, changed))

    def stored(self, name: str) -> dict[str, Any]:
        return self.kube.jobs[("ns", name)]


def test_a_job_that_fits_is_recorded_first_then_its_service_and_workers_follow() -> None:
    world = World(job(count=10))
    assert world.cycle([job(count=10)]) is False
    assert world.kube.verbs() == [
        "patch-status", "create-event", "create-service", "create-pod", "create-pod"
    ]  # fmt: skip
    write = world.kube.calls[0]
    assert write.precondition == "1" and write.body["status"]["phase"] == "Placed"
    assert write.body["status"]["placement"]["nodes"] == [
        {"name": "a100-0", "count": 8}, {"name": "a100-1", "count": 2}
    ]  # fmt: skip
    assert world.kube.calls[1].body["reason"] == "Placed"
    assert [c.name for c in world.kube.calls[3:]] == ["train-w0", "train-w1"]


def test_a_rigid_training_job_on_one_node_gets_its_worker_and_no_service() -> None:
    world = World(job())
    world.cycle([job()])
    assert world.kube.verbs() == ["patch-status", "create-event", "create-pod"]


def test_a_restarted_operator_only_completes_the_missing_workers() -> None:
    placed = copy.deepcopy(job(count=16))
    first = World(placed)
    first.cycle([placed])
    recorded = first.stored("train")  # as the watch shows it after the write
    again = World(recorded)
    again.cycle([recorded], [pod("train", 0, "a100-0")])
    assert again.kube.verbs() == ["create-service", "create-pod"]  # the Service: AlreadyExists
    assert again.kube.calls[1].name == "train-w1"
    assert not any(c.verb == "patch-status" and "placement" in c.body["status"]
                   for c in again.kube.calls)  # fmt: skip


def test_a_placement_recorded_meanwhile_by_a_peer_is_never_overwritten() -> None:
    world = World(job(rv="2"))  # a peer wrote version 2; this cache still shows 1
    assert world.cycle([job(rv="1")]) is True  # retried on fresh state
    assert world.kube.verbs() == ["patch-status"]
    assert "placement" not in world.stored("train").get("status", {})


def test_a_job_that_fits_nowhere_waits_and_is_tried_again_only_when_capacity_changes() -> None:
    waiting = job(count=32)  # more than the cluster's 16 GPUs... but within the CRD's range
    waiting["spec"]["accelerators"]["count"] = {"min": 17, "max": 17}
    world = World(waiting)
    world.cycle([waiting])
    assert world.kube.verbs() == ["patch-status", "create-event"]
    assert world.stored("train")["status"]["phase"] == "Pending"
    assert world.kube.calls[1].body["reason"] == "Unschedulable"
    world.kube.calls.clear()
    world.cycle([world.stored("train")])  # same capacity epoch: not even considered
    world.cycle([world.stored("train")], epoch=1)  # considered; the same reason: no write
    assert world.kube.verbs() == []


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"deadline": "2026-12-01T10:00:00Z"}, "DeadlinePassed"),
        ({"accelerators": {"types": ["tesla-z9"], "count": {"min": 2, "max": 2}}}, "Invalid"),
    ],
)
def test_a_job_that_cannot_run_fails_with_the_reason(spec: dict[str, Any], reason: str) -> None:
    bad = job(**spec)
    world = World(bad)
    world.cycle([bad])
    assert world.kube.verbs() == ["patch-status", "create-event"]
    (validated,) = world.kube.calls[0].body["status"]["conditions"]
    assert (validated["reason"], world.stored("train")["status"]["phase"]) == (reason, "Failed")


def test_a_worker_template_the_api_server_refuses_fails_the_job_in_its_words() -> None:
    world = World(job())
    world.kube.fail["create-pod"] = [Invalid("spec.containers[0].image: Required value", 422)]
    world.cycle([job()])
    assert world.kube.verbs()[-2:] == ["patch-status", "create-event"]
    condition = world.kube.calls[-2].body["status"]["conditions"][-1]
    assert condition["reason"] == "WorkerRejected"
    assert condition["message"].endswith("spec.containers[0].image: Required value")


def test_workers_running_make_the_job_running() -> None:
    world = World(job())
    world.cycle([job()])
    placed = world.stored("train")
    world.kube.calls.clear()
    world.cycle([placed], [pod("train", 0, "a100-0")])
    assert world.kube.verbs() == ["patch-status", "create-event"]
    assert world.stored("train")["status"]["phase"] == "Running"


def test_a_cycle_brings_in_line_only_the_jobs_whose_job_or_pods_changed() -> None:
    world = World(job("a"), job("b"))
    world.cycle([job("a"), job("b")])
    placed = [world.stored("a"), world.stored("b")]
    pods = [pod(name, k, "a100-0") for name in ("a", "b") for k in (0, 1)]
    world.kube.calls.clear()
    world.cycle(placed, pods, changed=frozenset({("ns", "b")}))
    assert [(c.verb, c.name) for c in world.kube.calls if c.verb == "patch-status"] == [
        ("patch-status", "b")
    ]
    assert world.stored("b")["status"]["phase"] == "Running"
    assert world.stored("a")["status"]["phase"] == "Placed"  # its Pods' news not seen yet


def test_children_a_cycle_could_not_make_are_made_by_the_next_whatever_changed() -> None:
    world = World(job())
    world.kube.fail["create-pod"] = [Unavailable("etcd is slow", 503)]
    assert world.cycle([job()]) is True  # retry
    world.kube.calls.clear()
    world.cycle([world.stored("train")], changed=frozenset())
    assert world.kube.verbs().count("create-pod") >= 1


def test_a_burst_decided_with_writes_in_flight_together_never_promises_a_device_twice() -> None:
    burst = [job(f"j{i:02d}", count=3) for i in range(12)]  # 36 devices asked of 16
    world = World(*burst)
    world.reconciler = Reconciler(
        world.kube, None, METRICS, clock=lambda: NOW,
        events=Events(world.kube, lambda: NOW, Inline()), workers=8,
    )  # fmt: skip
    world.cycle(burst)
    used: dict[str, int] = {}
    for j in burst:
        for share in (
            (world.stored(j["metadata"]["name"]).get("status") or {})
            .get("placement", {})
            .get("nodes", [])
        ):
            used[share["name"]] = used.get(share["name"], 0) + share["count"]
    assert sum(used.values()) == 15 and all(v <= 8 for v in used.values())


class Recommender:
    """Answers every asked row with the same rate, counting the calls it gets."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, body: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(body)
        ranked = [
            {"type": VARIANTS[r["accelerator"]].type, "count": r["count"],
             "throughput": 100.0 * r["count"], "watts_per_device": 300.0}
            for r in rows
        ]  # fmt: skip
        return {"model": "test", "ranked": ranked}


def test_jobs_of_one_sweep_share_one_recommender_call_and_others_get_their_own() -> None:
    sweep = [job(f"lr{i}", count=1) for i in range(6)]
    other = job("other", count=1, workload={"kind": "training", "model": "bert", "batchSize": 8})
    world = World(*sweep, other)
    ask = Recommender()
    world.reconciler = Reconciler(
        world.kube, ask, METRICS, clock=lambda: NOW,
        events=Events(world.kube, lambda: NOW, Inline()),
    )  # fmt: skip
    world.cycle([*sweep, other])
    assert sorted(b["model"] for b in ask.calls) == ["bert", "resnet50"]
    assert all(
        world.stored(j["metadata"]["name"])["status"]["placement"]["source"]
        == "recommender model test"
        for j in [*sweep, other]
    )


def test_the_elastic_policy_runs_once_per_period_on_the_injected_clock() -> None:
    world = World(elastic=Settings(period_s=300))
    rebalancer = world.reconciler.rebalancer
    assert rebalancer is not None and rebalancer.due()
    world.monotonic = 299.0
    assert not rebalancer.due()
    world.monotonic = 300.0
    assert rebalancer.due()


class Measuring:
    """Prometheus as the rebalancer sees it: the job ran at `fraction` of its predicted rate."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction
        self.asked: list[tuple[str, str]] = []
        self.held: tuple[str, int, float] = ("", 0, 0.0)
        self.last: list[Mapping[str, Any] | None] = []

    def of(
        self,
        namespace: str,
        name: str,
        since: datetime,
        now: datetime,
        last: Mapping[str, Any] | None = None,
    ) -> JobProgress:
        self.asked.append((namespace, name))
        self.last.append(last)
        type_id, count, predicted = self.held
        rate = self.fraction * predicted
        counters = (("uid/a100/1", 1000.0),)
        return JobProgress(1000.0, (Measured(type_id, count, (rate, rate)),), now, counters)


WORK = {"kind": "training", "model": "resnet50", "batchSize": 64,
        "totalWork": {"samples": 10**9}}  # fmt: skip


def running_elastic(world: World, measuring: Measuring) -> dict[str, Any]:
    """An elastic job placed and Running, then one elastic period with what was measured."""
    world.cycle([job(elastic=True, workload=WORK)])
    placed = world.stored("train")
    held = placed["status"]["placement"]
    measuring.held = (held["type"], held["count"], held["predicted"]["throughput"])
    workers = [pod("train", k, n["name"]) for k, n in enumerate(held["nodes"])]
    world.cycle([placed], workers)
    world.monotonic += 300
    world.cycle([world.stored("train")], workers)
    return world.stored("train")


def test_a_running_jobs_status_shows_what_was_measured_and_what_the_plan_now_uses() -> None:
    measuring = Measuring(0.5)
    world = World(
        job(elastic=True, workload=WORK), elastic=Settings(period_s=300), measurements=measuring
    )
    progress = running_elastic(world, measuring)["status"]["progress"]
    assert measuring.asked and measuring.asked[-1] == ("ns", "train")
    assert progress["workLeft"] == "measured" and progress["samplesDone"] == 1000.0
    assert progress["measurements"] == 2
    predicted, measured = progress["predictedThroughput"], progress["measuredThroughput"]
    assert measured == pytest.approx(predicted / 2)
    assert abs(progress["plannedThroughput"] / measured - 1) < 0.1  # corrected, not the prior
    assert 0 < progress["uncertainty"] < 0.5


def test_what_was_counted_is_kept_in_the_status_and_handed_back_the_next_period() -> None:
    """Where berth counts the workers itself, a restarted operator counts on from the status."""
    measuring = Measuring(0.5)
    world = World(
        job(elastic=True, workload=WORK), elastic=Settings(period_s=300), measurements=measuring
    )
    progress = running_elastic(world, measuring)["status"]["progress"]
    assert progress["counters"] == {"uid/a100/1": 1000.0}
    placed = world.stored("train")
    nodes = placed["status"]["placement"]["nodes"]
    world.monotonic += 300
    world.cycle([placed], [pod("train", k, n["name"]) for k, n in enumerate(nodes)])
    assert measuring.last[-1] == progress


def test_a_figure_no_longer_measured_leaves_the_status() -> None:
    """Written as a merge patch, status.progress would keep a measured rate beside figures it
    no longer belongs with (say, after a resize)."""
    measuring = Measuring(0.5)
    world = World(
        job(elastic=True, workload=WORK), elastic=Settings(period_s=300), measurements=measuring
    )
    assert "measuredThroughput" in running_elastic(world, measuring)["status"]["progress"]
    placed = world.stored("train")
    nodes = placed["status"]["placement"]["nodes"]
    measuring.held = ("t4", 1, 1.0)  # windows of another allocation only
    world.monotonic += 300
    world.cycle([placed], [pod("train", k, n["name"]) for k, n in enumerate(nodes)])
    progress = world.stored("train")["status"]["progress"]
    assert "measuredThroughput" not in progress and progress["samplesDone"] == 1000.0


def test_a_new_job_of_a_measured_jobs_model_and_batch_starts_from_what_was_measured() -> None:
    measuring = Measuring(0.5)
    world = World(
        job(elastic=True, workload=WORK), elastic=Settings(period_s=300), measurements=measuring
    )
    first = running_elastic(world, measuring)["status"]["progress"]
    second = job("second", elastic=True, workload=WORK)
    world.kube.jobs[("ns", "second")] = second
    world.cycle([world.stored("train"), second])
    placed = world.stored("second")["status"]["placement"]
    assert "conditioned on 2 windows measured of resnet50 jobs" in placed["source"]
    assert placed["count"] == world.stored("train")["status"]["placement"]["count"]
    assert placed["predicted"]["throughput"] < 0.6 * first["predictedThroughput"]


def test_without_prometheus_work_left_is_modelled_and_no_progress_is_written() -> None:
    world = World(job(elastic=True, workload=WORK), elastic=Settings(period_s=300))
    assert "progress" not in running_elastic(world, Measuring(0.5))["status"]


def test_a_node_berth_cannot_use_is_told_once_per_problem() -> None:
    world = World()
    node = nodes()[0]
    node["metadata"]["labels"]["nvidia.com/gpu.product"] = "Tesla-Z9"
    for _ in range(2):
        world.reconciler.node_changed(node)
    (event,) = [c.body for c in world.kube.calls]
    assert (event["reason"], event["involvedObject"]["kind"]) == ("UnknownAccelerator", "Node")
    assert event["metadata"]["namespace"] == "default"


class Listed:
    """An informer that has listed `objects`."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        self.objects = list(objects)

    def values(self) -> list[dict[str, Any]]:
        return self.objects


def test_a_node_berth_cannot_use_is_told_when_the_nodes_are_listed_at_start() -> None:
    world = World()
    bad, good = nodes()
    bad["metadata"]["labels"]["nvidia.com/gpu.product"] = "Tesla-Z9"
    runner = Runner(world.reconciler)
    runner.nodes = Listed(bad, good)  # type: ignore[assignment]
    runner._node_changed(None, None)
    (event,) = [c.body for c in world.kube.calls]
    assert (event["reason"], event["involvedObject"]["name"]) == ("UnknownAccelerator", "a100-0")


def test_a_deadline_passed_is_refused_before_any_prediction() -> None:
    late = parse_job(job(deadline="2026-12-01T10:00:00Z"), admitted=True)
    refused = decision.refusal(late, NOW)
    assert refused is not None and refused.reason == "DeadlinePassed"
    assert decision.refusal(parse_job(job(), admitted=True), NOW - timedelta(days=1)) is None
