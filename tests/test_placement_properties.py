"""Properties of placement on random clusters and jobs (hypothesis): no device over-committed,
no forbidden node used, gangs all or nothing, nothing feasible missed, the same inputs give the
same plan whatever order the API lists them in."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from berth.core.job import AcceleratorJob
from berth.core.prediction import Prediction
from berth.core.snapshot import build_snapshot
from berth.placement.nodes import devices_free, gang_picker, why_not
from berth.placement.plan import decide, min_memory_mib, worker_need
from tests.test_placement import A100, NOW, V100, job, pred
from tests.test_snapshot import container, node, pod

PRODUCTS = {"a100": A100, "v100": V100, "t4": "Tesla-T4", "cpu": None}
Cluster = tuple[list[dict[str, Any]], list[dict[str, Any]]]


@st.composite
def clusters(draw: st.DrawFn) -> Cluster:
    nodes, pods = [], []
    for i in range(draw(st.integers(1, 10))):
        kind = draw(st.sampled_from(sorted(PRODUCTS)))
        gpus = 0 if kind == "cpu" else draw(st.integers(0, 8))
        taint = draw(st.sampled_from([None, "NoSchedule", "PreferNoSchedule", "NoExecute"]))
        nodes.append(
            node(
                f"n{i}",
                gpus=gpus,
                product=PRODUCTS[kind],
                ready=draw(st.booleans()),
                unschedulable=draw(st.booleans()),
                annotations=draw(
                    st.sampled_from(
                        [{}, {"berth.dev/health": "unhealthy"}, {"berth.dev/idle-watts": "300"}]
                    )
                ),
                taints=[{"key": "k", "value": "v", "effect": taint}] if taint else [],
            )
        )
        used = draw(st.integers(0, gpus))
        if used or draw(st.booleans()):
            pods.append(pod(f"n{i}", containers=[container(gpus=used, cpu="1")]))
    return nodes, pods


@st.composite
def jobs(draw: st.DrawFn) -> tuple[AcceleratorJob, dict[tuple[str, int], Prediction]]:
    types = draw(st.lists(st.sampled_from(sorted(PRODUCTS)), unique=True, max_size=3))
    low = draw(st.integers(1, 10))
    high = draw(st.integers(low, 12))
    template: dict[str, Any] = {"containers": [{"name": "w", "image": "i"}]}
    if draw(st.booleans()):
        template["tolerations"] = [{"key": "k", "operator": "Exists"}]
    j = job(
        types,
        (low, high),
        draw(st.sampled_from(["energy", "time", "balanced"])),
        template={"spec": template},
    )
    rate = st.floats(1, 1e4, allow_nan=False)
    watts = st.floats(20, 700, allow_nan=False)
    predictions = {
        (t, n): pred(draw(rate), draw(watts)) for t in PRODUCTS for n in range(low, high + 1)
    }
    return j, predictions


@settings(max_examples=200, deadline=None)
@given(clusters(), jobs())
def test_a_plan_never_overcommits_nor_uses_a_forbidden_node(
    cluster: Cluster, job_and_predictions: tuple[AcceleratorJob, dict[tuple[str, int], Prediction]]
) -> None:
    j, predictions = job_and_predictions
    snapshot = build_snapshot(*cluster)
    plan = decide(snapshot, j, predictions, NOW)
    if plan.chosen is None:
        return
    names = [name for name, _ in plan.chosen.nodes]
    assert len(names) == len(set(names))
    for name, used in plan.chosen.nodes:
        state = snapshot.node(name)
        assert why_not(state, plan.chosen.type, worker_need(j), min_memory_mib(j)) is None
        assert 0 < used <= devices_free(state)


@settings(max_examples=200, deadline=None)
@given(clusters(), jobs())
def test_a_gang_is_all_or_nothing_and_nothing_feasible_is_missed(
    cluster: Cluster, job_and_predictions: tuple[AcceleratorJob, dict[tuple[str, int], Prediction]]
) -> None:
    j, predictions = job_and_predictions
    snapshot = build_snapshot(*cluster)
    plan = decide(snapshot, j, predictions, NOW)
    count = j.accelerators.count
    if plan.chosen is not None:
        assert j.accelerators.allows(plan.chosen.type)
        assert count.min <= plan.chosen.count <= count.max
        assert sum(used for _, used in plan.chosen.nodes) == plan.chosen.count
        return
    need, min_mib = worker_need(j), min_memory_mib(j)
    for state_type in {n.accelerator.type for n in snapshot.nodes}:
        if state_type is None or not j.accelerators.allows(state_type):
            continue
        eligible = [n for n in snapshot.nodes if why_not(n, state_type, need, min_mib) is None]
        pick = gang_picker(eligible)
        assert all(pick(n) is None for n in range(count.min, count.max + 1))


@settings(max_examples=100, deadline=None)
@given(clusters(), jobs())
def test_the_same_cluster_listed_in_any_order_gives_the_same_plan(
    cluster: Cluster, job_and_predictions: tuple[AcceleratorJob, dict[tuple[str, int], Prediction]]
) -> None:
    j, predictions = job_and_predictions
    nodes, pods = cluster
    forward = decide(build_snapshot(nodes, pods), j, predictions, NOW)
    backward = decide(build_snapshot(nodes[::-1], pods[::-1]), j, predictions, NOW)
    assert forward == backward
