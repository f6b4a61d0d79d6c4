"""Placement picks the type, count and nodes with the least energy per unit of work that meets
the objective and deadline, on nodes it may use, and explains what it rejected."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from berth.core.job import AcceleratorJob, parse_job
from berth.core.prediction import Prediction
from berth.core.provenance import measured, predicted
from berth.core.snapshot import build_snapshot
from berth.placement.deadline import admission
from berth.placement.plan import Plan, decide
from tests.conftest import load_example
from tests.test_snapshot import container, node, pod

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
A100 = "NVIDIA-A100-SXM4-80GB"
V100 = "Tesla-V100-SXM2-32GB"


def job(
    types: list[str], count: tuple[int, int], objective: str = "energy", **spec: Any
) -> AcceleratorJob:
    doc = load_example("gpt2-finetune-deadline.yaml")
    doc["metadata"]["creationTimestamp"] = NOW.isoformat()
    doc["spec"]["accelerators"] = {"types": types, "count": {"min": count[0], "max": count[1]}}
    doc["spec"]["objective"] = {"type": objective}
    doc["spec"].pop("deadline")
    doc["spec"]["workload"].pop("memoryPerReplica")
    doc["spec"].update(spec)
    return parse_job(doc)


def pred(samples_per_s: float, watts: float) -> Prediction:
    return Prediction(
        predicted(samples_per_s, "samples/s", "test", 0.1), measured(watts, "W", "test")
    )


def plan(
    nodes: list[dict[str, Any]],
    j: AcceleratorJob,
    preds: dict[tuple[str, int], Prediction],
    pods: list[dict[str, Any]] | None = None,
) -> Plan:
    return decide(build_snapshot(nodes, pods or []), j, preds, NOW)


def test_energy_objective_picks_the_least_joules_per_sample() -> None:
    nodes = [node("a", product=A100), node("v", product=V100)]
    p = plan(
        nodes,
        job(["a100", "v100"], (2, 2)),
        {("a100", 2): pred(2000, 300), ("v100", 2): pred(800, 250)},
    )
    assert p.chosen is not None and (p.chosen.type, p.chosen.count) == ("a100", 2)
    assert p.chosen.estimate.joules_per_sample.value == pytest.approx(0.3)
    (loser,) = p.alternatives
    assert (loser.type, loser.reason) == ("v100", "0.625 J/sample vs 0.3")


def test_time_objective_picks_the_highest_throughput() -> None:
    nodes = [node("a", product=A100)]
    preds = {("a100", 1): pred(1000, 200), ("a100", 2): pred(1900, 300)}
    p = plan(nodes, job(["a100"], (1, 2), "time"), preds)
    assert p.chosen is not None and p.chosen.count == 2
    p = plan(nodes, job(["a100"], (1, 2), "energy"), preds)
    assert p.chosen is not None and p.chosen.count == 1  # 0.2 J/sample beats 0.316


def test_the_idle_power_of_a_node_woken_for_the_job_counts() -> None:
    # The A100 is more efficient per device, but it would wake a node that idles at 1 kW;
    # the V100 node is already awake, so the job pays only 2/8 of its 400 W idle power.
    nodes = [
        node("a", product=A100, annotations={"berth.dev/idle-watts": "1000"}),
        node("v", product=V100, annotations={"berth.dev/idle-watts": "400"}),
    ]
    busy = [pod("v", containers=[container(gpus=1)])]
    preds = {("a100", 2): pred(2000, 300), ("v100", 2): pred(1500, 250)}
    p = plan(nodes, job(["a100", "v100"], (2, 2)), preds, busy)
    assert p.chosen is not None and p.chosen.type == "v100"
    assert p.chosen.estimate.watts.value == pytest.approx(2 * 250 + 400 * 2 / 8)


def test_a_deadline_rejects_placements_that_would_miss_it() -> None:
    nodes = [node("a", product=A100), node("v", product=V100)]
    # 12.8M samples in 48 h: the V100 (60 samples/s, 59 h) is thriftier but late.
    preds = {("v100", 4): pred(60, 100), ("a100", 4): pred(200, 400)}
    p = plan(nodes, job(["a100", "v100"], (4, 4), deadline="48h"), preds)
    assert p.chosen is not None and p.chosen.type == "a100" and p.chosen.meets_deadline
    assert any(
        r.type == "v100" and r.reason.startswith("misses the deadline by") for r in p.alternatives
    )


def test_when_no_placement_meets_the_deadline_a_far_slower_one_is_not_chosen_and_it_is_said() -> (
    None
):
    nodes = [node("a", product=A100), node("v", product=V100)]
    preds = {("v100", 4): pred(20, 100), ("a100", 4): pred(50, 400)}
    p = plan(nodes, job(["a100", "v100"], (4, 4), deadline="1h"), preds)
    assert p.chosen is not None and p.chosen.type == "a100" and p.chosen.meets_deadline is False
    assert p.note is not None and "no placement meets the deadline" in p.note


def test_a_job_late_whatever_it_gets_takes_the_least_energy_within_twice_the_fastest() -> None:
    """x1 wastes least but runs 2.5x longer than x4: out of bounds; x2 runs 1.3x longer
    than x4 and wastes less energy per sample: chosen."""
    nodes = [node("a", product=A100)]
    preds = {("a100", 1): pred(20, 300), ("a100", 2): pred(38, 300), ("a100", 4): pred(50, 300)}
    p = plan(nodes, job(["a100"], (1, 4), deadline="1h", elastic=True), preds)
    assert p.chosen is not None and (p.chosen.count, p.chosen.meets_deadline) == (2, False)
    assert p.note is not None and "least energy within 2x the fastest's runtime" in p.note


def test_a_gang_takes_the_fewest_nodes() -> None:
    nodes = [node("n8", product=A100), node("n4", product=A100), node("n2", product=A100)]
    used = [
        pod("n8", containers=[container(cpu="1")]),  # all three awake: only the count matters
        pod("n4", containers=[container(gpus=4)]),
        pod("n2", containers=[container(gpus=6)]),
    ]
    p = plan(nodes, job(["a100"], (10, 10)), {("a100", 10): pred(5000, 300)}, used)
    assert p.chosen is not None and p.chosen.nodes == (("n8", 8), ("n2", 2))


def test_a_gang_prefers_nodes_already_awake() -> None:
    nodes = [node("asleep", product=A100), node("awake", product=A100)]
    used = [pod("awake", containers=[container(cpu="1")])]
    p = plan(nodes, job(["a100"], (2, 2)), {("a100", 2): pred(500, 300)}, used)
    assert p.chosen is not None and p.chosen.nodes == (("awake", 2),)


def test_too_few_devices_means_no_partial_gang_and_a_reason() -> None:
    p = plan([node("a", product=A100)], job(["a100"], (9, 9)), {("a100", 9): pred(1, 1)})
    assert p.chosen is None and p.note == "no allowed placement fits now"
    assert p.alternatives[0].reason == "needs 9, only 8 free a100 devices on usable nodes"


@pytest.mark.parametrize(
    "bad",
    [
        {"unschedulable": True},
        {"ready": False},
        {"annotations": {"berth.dev/health": "unhealthy"}},
        {"taints": [{"key": "maintenance", "value": "true", "effect": "NoSchedule"}]},
    ],
    ids=["cordoned", "not-ready", "unhealthy", "tainted"],
)
def test_forbidden_nodes_are_never_used(bad: dict[str, Any]) -> None:
    nodes = [node("bad", product=A100, **bad), node("good", product=A100)]
    p = plan(nodes, job(["a100"], (8, 8)), {("a100", 8): pred(100, 300)})
    assert p.chosen is not None and p.chosen.nodes == (("good", 8),)


def test_a_tolerated_taint_does_not_keep_a_job_away() -> None:
    taint = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    j = job(
        ["a100"],
        (8, 8),
        template={
            "spec": {
                "containers": [{"name": "w", "image": "i"}],
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
            }
        },
    )
    p = plan([node("t", product=A100, taints=[taint])], j, {("a100", 8): pred(100, 300)})
    assert p.chosen is not None


def test_a_missing_prediction_is_named_never_invented() -> None:
    p = plan([node("a", product=A100)], job(["a100"], (1, 2)), {("a100", 1): pred(100, 300)})
    assert p.chosen is not None and p.chosen.count == 1
    assert [r.reason for r in p.alternatives] == ["no prediction for a100 x2"]


def test_cpu_nodes_compete_when_the_job_lists_cpu() -> None:
    nodes = [node("a", product=A100), node("c", gpus=0, product=None)]
    preds = {("a100", 1): pred(100, 300), ("cpu", 1): pred(50, 100)}
    p = plan(nodes, job(["cpu", "a100"], (1, 1)), preds)
    assert p.chosen is not None and (p.chosen.type, p.chosen.nodes) == ("cpu", (("c", 1),))


def test_small_devices_are_excluded_by_the_memory_a_job_needs() -> None:
    t4 = node("t", product="Tesla-T4")  # the helper labels 81920 MiB; T4s say 15360
    t4["metadata"]["labels"]["nvidia.com/gpu.memory"] = "15360"
    j = job(
        ["t4", "a100"],
        (1, 1),
        accelerators={
            "types": ["t4", "a100"],
            "count": {"min": 1, "max": 1},
            "minDeviceMemory": "40Gi",
        },
    )
    p = plan(
        [t4, node("a", product=A100)], j, {("t4", 1): pred(100, 70), ("a100", 1): pred(100, 300)}
    )
    assert p.chosen is not None and p.chosen.type == "a100"


def test_admission_names_the_least_device_time_allocation_that_meets_the_deadline() -> None:
    # 12.8M samples in 48 h: a100 x1 is late (71 h); v100 x2 (32 h) costs fewer device-hours
    # than a100 x4 (17.8 h).
    preds = {("a100", 1): pred(50, 400), ("a100", 4): pred(200, 400), ("v100", 2): pred(110, 300)}
    j = job(["a100", "v100"], (1, 4), deadline="48h")
    found = admission(j, preds, {"a100": 8, "v100": 2}, 48 * 3600.0)
    assert found is not None and (found.reachable, found.type, found.count) == (True, "v100", 2)


def test_admission_says_a_deadline_no_allocation_the_cluster_holds_can_meet_is_unreachable() -> (
    None
):
    preds = {("a100", 1): pred(50, 400), ("a100", 4): pred(200, 400)}
    j = job(["a100"], (1, 4), deadline="1h")
    found = admission(j, preds, {"a100": 2}, 3600.0)  # x4 does not fit the cluster at all
    assert found is not None and (found.reachable, found.count) == (False, 1)
    assert found.message.startswith("unreachable: the fastest allocation this cluster holds")


def test_admission_has_nothing_to_say_without_a_deadline() -> None:
    assert admission(job(["a100"], (1, 4)), {("a100", 1): pred(50, 400)}, {"a100": 8}, None) is None
