"""The elastic policy, pure: what a period of rebalancing may and may not do."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from berth.core.job import AcceleratorJob, parse_job
from berth.core.prediction import Prediction
from berth.core.provenance import measured
from berth.core.snapshot import build_snapshot
from berth.placement.elastic import Round, RunningJob, Settings, WaitingJob, rebalance
from tests.conftest import load_example

GPUS_PER_NODE = 8
POLICY = Settings()


PRODUCTS = {"a100": "NVIDIA-A100-SXM4-80GB", "t4": "Tesla-T4"}


def node(name: str, type_id: str = "a100") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"nvidia.com/gpu.product": PRODUCTS[type_id]}},
        "status": {
            "allocatable": {"nvidia.com/gpu": str(GPUS_PER_NODE), "cpu": "64", "memory": "512Gi"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def pod(node_name: str, gpus: int) -> dict[str, Any]:
    requests = {"nvidia.com/gpu": str(gpus)}
    return {"spec": {"nodeName": node_name, "containers": [{"resources": {"requests": requests}}]}}


def job(
    low: int,
    high: int,
    elastic: bool = True,
    priority: int = 0,
    types: tuple[str, ...] = ("a100",),
    **spec: Any,
) -> AcceleratorJob:
    doc = copy.deepcopy(load_example("elastic-resnet50-training.yaml"))
    count = {"min": low, "max": high}
    doc["spec"]["accelerators"] = {"types": list(types), "count": count}
    doc["spec"]["elastic"] = elastic and low < high
    doc["spec"]["priority"] = priority
    doc["spec"].pop("deadline", None)
    doc["spec"]["workload"].pop("memoryPerReplica", None)
    doc["spec"]["template"]["spec"].pop("volumes", None)
    for c in doc["spec"]["template"]["spec"]["containers"]:
        c.pop("resources", None)
    doc["spec"] |= spec
    return parse_job(doc)


def predictions(
    high: int, scaling: float, rate: float = 100.0, watts: float = 300.0
) -> dict[int, Prediction]:
    """Throughput growing with `scaling` per device (1.0: linear), `watts` per device."""
    return {
        c: Prediction(measured(rate * c**scaling, "samples/s", "t"), measured(watts, "W", "t"))
        for c in range(1, high + 1)
    }


def on(type_id: str, scaling: dict[int, Prediction]) -> dict[tuple[str, int], Prediction]:
    return {(type_id, c): p for c, p in scaling.items()}


def running(
    id: str,
    shares: tuple[tuple[str, int], ...],
    j: AcceleratorJob,
    type_id: str = "a100",
    **kw: Any,
) -> RunningJob:
    high = j.accelerators.count.max
    fields: dict[str, Any] = {
        "remaining_samples": 1e7,
        "deadline_in_s": None,
        "last_resize_s": -1e9,
        "predictions": predictions(high, 0.9),
    } | kw
    return RunningJob(id, j, type_id, shares, **fields)


def test_a_waiting_job_is_admitted_by_shrinking_the_cheapest_elastic_job() -> None:
    snap = build_snapshot([node("n0")], [pod("n0", 4), pod("n0", 4)])
    linear = running("linear", (("n0", 2), ("n0", 2)), job(2, 4), predictions=predictions(4, 1.0))
    flat = running("flat", (("n0", 2), ("n0", 2)), job(2, 4), predictions=predictions(4, 0.3))
    resizes = rebalance(snap, [linear, flat], [WaitingJob("new", job(2, 2), ("a100",))], 0.0)
    assert [(r.id, r.from_count, r.to_count) for r in resizes] == [("flat", 4, 2)]
    assert resizes[0].reason == "make room for new"


def test_nobody_shrinks_when_it_would_not_admit_the_waiting_job() -> None:
    snap = build_snapshot([node("n0")], [pod("n0", 8)])
    r = running("r", (("n0", 4), ("n0", 4)), job(4, 8))
    assert rebalance(snap, [r], [WaitingJob("big", job(8, 8), ("a100",))], 0.0) == []


def test_a_higher_priority_job_is_never_shrunk_for_a_lower_one() -> None:
    snap = build_snapshot([node("n0")], [pod("n0", 8)])
    r = running("vip", (("n0", 4), ("n0", 4)), job(4, 8, priority=10))
    assert rebalance(snap, [r], [WaitingJob("w", job(4, 4), ("a100",))], 0.0) == []


def test_a_job_that_would_miss_its_deadline_grows_to_the_least_count_that_meets_it() -> None:
    snap = build_snapshot([node("n0"), node("n1")], [pod("n0", 2)])
    # 1e7 samples; at 2 devices 100 * 2**0.9 = 187 samples/s: 53,500 s; 8 h = 28,800 s.
    r = running("late", (("n0", 2),), job(1, 8), deadline_in_s=8 * 3600.0)
    (resize,) = rebalance(snap, [r], [], 0.0)
    rates = predictions(8, 0.9)
    least = next(c for c in range(3, 9) if 1e7 / rates[c].throughput.value + 60 <= 8 * 3600)
    assert (resize.to_count, resize.reason) == (least, "meet the deadline")


def test_a_shrink_to_admit_never_costs_a_job_a_deadline_it_would_meet() -> None:
    snap = build_snapshot([node("n0")], [pod("n0", 4), pod("n0", 4)])
    # At 4 devices 1e7 samples take 28,700 s; at 2 they would take 53,500 s.
    due = running("due", (("n0", 2), ("n0", 2)), job(2, 4), deadline_in_s=30_000.0)
    free = running("free", (("n0", 2), ("n0", 2)), job(2, 4), predictions=predictions(4, 1.0))
    resizes = rebalance(snap, [due, free], [WaitingJob("new", job(2, 2), ("a100",))], 0.0)
    assert [(r.id, r.to_count) for r in resizes] == [("free", 2)]


def test_a_job_that_would_miss_its_deadline_takes_devices_from_a_job_without_one() -> None:
    snap = build_snapshot([node("n0")], [pod("n0", 2), pod("n0", 6)])
    late = running("late", (("n0", 2),), job(1, 8), deadline_in_s=8 * 3600.0)
    spare = running("spare", (("n0", 2), ("n0", 2), ("n0", 2)), job(2, 6))
    resizes = rebalance(snap, [late, spare], [], 0.0)
    assert [(r.id, r.reason) for r in resizes] == [
        ("spare", "make room for late"),
        ("late", "meet the deadline"),
    ]
    assert resizes[0].to_count >= 2 and resizes[1].to_count > 2


def test_an_energy_job_does_not_grow_when_joules_per_sample_would_rise_past_the_bound() -> None:
    snap = build_snapshot([node("n0")], [pod("n0", 2)])
    r = running("e", (("n0", 2),), job(1, 8), predictions=predictions(8, 0.5))
    assert rebalance(snap, [r], [], 0.0) == []


def test_a_time_job_grows_into_idle_devices() -> None:
    snap = build_snapshot([node("n0")], [pod("n0", 2)])
    r = running("t", (("n0", 2),), job(1, 8, objective={"type": "time"}))
    (resize,) = rebalance(snap, [r], [], 0.0)
    assert (resize.to_count, resize.reason) == (8, "use idle devices")


# --- each step of a period alone, on a Round --------------------------------------------


def round_of(snap: Any, jobs: list[RunningJob]) -> Round:
    return Round.start(snap, jobs, 0.0, POLICY)


def test_admission_holds_the_devices_it_freed_so_growth_cannot_take_them() -> None:
    snap = build_snapshot([node("n0")], [pod("n0", 4), pod("n0", 4)])
    greedy = running("greedy", (("n0", 4),), job(1, 8, objective={"type": "time"}))
    flat = running("flat", (("n0", 2), ("n0", 2)), job(2, 4), predictions=predictions(4, 0.3))
    step = round_of(snap, [greedy, flat])
    step.admit([WaitingJob("new", job(2, 2), ("a100",))])
    assert [(r.id, r.to_count) for r in step.resizes] == [("flat", 2)]
    assert step.free.total(["n0"]) == 0  # the two freed are held for "new"
    step.grow()
    assert [r.id for r in step.resizes] == ["flat"]  # greedy found nothing idle to take


def test_growth_alone_leaves_the_queue_to_admission() -> None:
    snap = build_snapshot([node("n0")], [pod("n0", 2)])
    step = round_of(snap, [running("t", (("n0", 2),), job(1, 8, objective={"type": "time"}))])
    step.grow()
    assert [(r.to_count, r.reason) for r in step.resizes] == [(8, "use idle devices")]
    assert step.touched == {"t"}


def test_a_job_grown_this_period_is_not_moved_in_it() -> None:
    snap = build_snapshot([node("n0"), node("t0", "t4")], [pod("n0", 2)])
    r = running("e", (("n0", 2),), job(1, 8, types=("a100", "t4"), objective={"type": "time"}),
                elsewhere=on("t4", predictions(8, 0.9, rate=500.0, watts=70.0)))  # fmt: skip
    step = round_of(snap, [r])
    step.grow()
    step.move()
    assert [r.reason for r in step.resizes] == ["use idle devices"]


def test_a_job_resized_within_the_minimum_interval_is_left_alone() -> None:
    snap = build_snapshot([node("n0")], [pod("n0", 2)])
    r = running("t", (("n0", 2),), job(1, 8, objective={"type": "time"}), last_resize_s=-10.0)
    assert rebalance(snap, [r], [], 0.0) == []


# --- moves to another type ---------------------------------------------------------------

BOTH = ("a100", "t4")
T4 = predictions(8, 0.9, rate=30.0, watts=70.0)  # 2.5 J/sample on 2 devices; a100: 3.2


def test_an_energy_job_moves_to_the_type_that_does_its_remaining_work_for_fewer_joules() -> None:
    snap = build_snapshot([node("a0"), node("t0", "t4")], [pod("a0", 2), pod("a0", 6)])
    r = running("e", (("a0", 2),), job(2, 4, types=BOTH), elsewhere=on("t4", T4))
    (move,) = rebalance(snap, [r], [], 0.0)
    assert (move.type, move.to_count, move.shares) == ("t4", 2, (("t0", 2),))
    assert move.reason == "better for energy on t4"
    assert move.predicted_gain.startswith("-2")  # about -22 % energy


def test_a_move_never_costs_a_deadline_the_job_meets() -> None:
    snap = build_snapshot([node("a0"), node("t0", "t4")], [pod("a0", 2), pod("a0", 6)])
    # At a100 x2 1e7 samples take 53,500 s; on t4 x2 178,000 s.
    r = running("e", (("a0", 2),), job(2, 4, types=BOTH), deadline_in_s=60_000.0,
                elsewhere=on("t4", T4))  # fmt: skip
    assert rebalance(snap, [r], [], 0.0) == []


def test_a_move_must_save_more_than_its_restart_costs() -> None:
    snap = build_snapshot([node("a0"), node("t0", "t4")], [pod("a0", 2), pod("a0", 6)])
    # 5,000 samples: 27 s of work left here, 89 s on t4 plus the 60 s restart.
    r = running("e", (("a0", 2),), job(2, 4, types=BOTH), remaining_samples=5_000.0,
                elsewhere=on("t4", T4))  # fmt: skip
    assert rebalance(snap, [r], [], 0.0) == []


def test_no_job_moves_onto_a_type_that_would_be_left_mostly_busy() -> None:
    # One t4 node of 8, 4 busy: after a move of 2, a quarter stays idle (headroom 0.75).
    snap = build_snapshot([node("a0"), node("t0", "t4")], [pod("a0", 8), pod("t0", 4)])
    r = running("e", (("a0", 2),), job(2, 4, types=BOTH), elsewhere=on("t4", T4))
    assert rebalance(snap, [r], [], 0.0) == []
    assert rebalance(snap, [r], [], 0.0, Settings(move_headroom=0.25)) != []


def test_a_rigid_job_moves_only_under_the_checkpoint_contract_and_keeps_its_count() -> None:
    snap = build_snapshot([node("a0"), node("t0", "t4")], [pod("a0", 2), pod("a0", 6)])
    rigid = job(2, 2, elastic=False, types=BOTH)
    assert (
        rebalance(snap, [running("r", (("a0", 2),), rigid, elsewhere=on("t4", T4))], [], 0.0) == []
    )
    resumable = running("r", (("a0", 2),), rigid, elsewhere=on("t4", T4), resumable=True)
    (move,) = rebalance(snap, [resumable], [], 0.0)
    assert (move.type, move.from_count, move.to_count) == ("t4", 2, 2)


# --- properties ---------------------------------------------------------------------------


World = tuple[Any, list[RunningJob], list[WaitingJob], float, Settings]


@st.composite
def worlds(draw: st.DrawFn) -> World:
    n_nodes = draw(st.integers(1, 4))
    names = [f"n{i}" for i in range(n_nodes)]
    kinds = {name: draw(st.sampled_from(BOTH)) for name in names}
    free = dict.fromkeys(names, GPUS_PER_NODE)
    jobs: list[RunningJob] = []
    pods = []
    for i in range(draw(st.integers(0, 6))):
        low = draw(st.integers(1, 4))
        high = draw(st.integers(low, 12))
        count = draw(st.integers(low, high))
        worker = draw(st.integers(1, 4))  # devices per worker
        here = draw(st.sampled_from(sorted(set(kinds.values()))))
        shares: list[tuple[str, int]] = []
        for name in (n for n in names if kinds[n] == here):
            while (left := count - sum(d for _, d in shares)) and free[name]:
                take = min(free[name], left, worker)
                shares.append((name, take))
                free[name] -= take
        if sum(d for _, d in shares) != count:
            continue  # did not fit
        pods += [pod(n, d) for n, d in shares]
        deadline = draw(st.none() | st.floats(600, 1e6))
        kind = draw(st.sampled_from(["energy", "time", "balanced"]))
        j = job(low, high, elastic=draw(st.booleans()), types=BOTH, objective={"type": kind})
        other = "t4" if here == "a100" else "a100"
        jobs.append(
            running(
                f"r{i}",
                tuple(shares),
                j,
                here,
                deadline_in_s=deadline,
                last_resize_s=draw(st.floats(-5000, 0)),
                predictions=predictions(high, draw(st.floats(0.2, 1.0))),
                elsewhere=on(other, predictions(high, draw(st.floats(0.2, 1.0)), 200.0, 70.0)),
                resumable=draw(st.booleans()),
            )
        )
    waiting = [
        WaitingJob(f"w{i}", job(m, m, priority=draw(st.integers(0, 2))), ("a100",))
        for i, m in enumerate(draw(st.lists(st.integers(1, 8), max_size=3)))
    ]
    snap = build_snapshot([node(n, kinds[n]) for n in names], pods)
    return snap, jobs, waiting, 0.0, Settings(move_headroom=draw(st.sampled_from([0.0, 0.75])))


@settings(max_examples=150, deadline=None)
@given(worlds())
def test_resizes_stay_within_each_jobs_count_range(world: World) -> None:
    snap, jobs, waiting, now, policy = world
    by_id = {r.id: r for r in jobs}
    for resize in rebalance(snap, jobs, waiting, now, policy):
        r = by_id[resize.id]
        count = r.job.accelerators.count
        assert count.min <= resize.to_count <= count.max
        assert sum(d for _, d in resize.shares) == resize.to_count
        # a rigid job only moves, whole, under the checkpoint contract
        assert r.job.elastic or (r.resumable and resize.to_count == r.count != 0)


@settings(max_examples=150, deadline=None)
@given(worlds())
def test_resizes_never_overcommit_a_node(world: World) -> None:
    snap, jobs, waiting, now, policy = world
    allocation = {r.id: r.shares for r in jobs}
    kinds = {n.name: n.accelerator.type for n in snap.nodes}
    for resize in rebalance(snap, jobs, waiting, now, policy):
        assert {kinds[name] for name, _ in resize.shares} == {resize.type}
        allocation[resize.id] = resize.shares
    used: Counter[str] = Counter()
    for shares in allocation.values():
        for name, devices in shares:
            used[name] += devices
    assert all(used[n.name] <= n.allocatable.gpus for n in snap.nodes)


@settings(max_examples=150, deadline=None)
@given(worlds())
def test_no_job_is_resized_twice_or_within_the_minimum_interval(world: World) -> None:
    snap, jobs, waiting, now, policy = world
    by_id = {r.id: r for r in jobs}
    resizes = rebalance(snap, jobs, waiting, now, policy)
    ids = [r.id for r in resizes]
    assert len(ids) == len(set(ids)) and len(ids) <= POLICY.max_resizes
    assert all(now - by_id[i].last_resize_s >= POLICY.min_interval_s for i in ids)


def test_a_shrink_a_whole_worker_would_overshoot_gives_the_last_worker_fewer_devices() -> None:
    """Two 8-device workers, a deadline met at 12 or more: admitting a 4-device job takes 4 of
    the last worker's devices (it is made again with 4), not the whole worker."""
    snap = build_snapshot([node("n0"), node("n1")], [pod("n0", 8), pod("n1", 8)])
    rates = predictions(16, 1.0)  # 100/s a device: 1e7 samples in 8,333 s at 12
    wide = running("wide", (("n0", 8), ("n1", 8)), job(1, 16), deadline_in_s=9_000.0,
                   predictions=rates)  # fmt: skip
    (r,) = rebalance(snap, [wide], [WaitingJob("new", job(4, 4), ("a100",))], 0.0)
    assert (r.id, r.to_count, r.shares) == ("wide", 12, (("n0", 8), ("n1", 4)))


def test_a_shrink_to_admit_gives_no_more_than_the_waiting_job_needs() -> None:
    snap = build_snapshot([node("n0"), node("n1")], [pod("n0", 8), pod("n1", 8)])
    wide = running("wide", (("n0", 8), ("n1", 8)), job(2, 16))  # could go down to 2
    (r,) = rebalance(snap, [wide], [WaitingJob("new", job(8, 8), ("a100",))], 0.0)
    assert (r.id, r.to_count, r.shares) == ("wide", 8, (("n0", 8),))
