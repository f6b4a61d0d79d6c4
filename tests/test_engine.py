"""The discrete-event engine: FIFO without head-of-line blocking, measured runtimes, busy and
idle energy, never an over-committed device."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from berth.core.job import Objective, ObjectiveKind, parse_job
from berth.core.prediction import Prediction
from berth.core.provenance import measured
from berth.core.snapshot import NodeState, build_snapshot
from berth.placement.elastic import Resize, Settings
from berth.placement.kube_default import kube_default
from berth.placement.plan import Plan, decide
from berth.simulator.engine import (
    EPOCH,
    Elasticity,
    Measuring,
    Policy,
    Run,
    SimJob,
    Simulation,
    Truth,
    simulate,
)
from berth.simulator.traces import TraceJob, as_manifest
from tests.test_placement import A100
from tests.test_snapshot import node

RATE = 100.0  # samples/s per device, in every test


def sim_job(
    name: str,
    at: float,
    gpus: int,
    samples: int,
    deadline: float | None = None,
    up_to: int | None = None,
) -> SimJob:
    trace = TraceJob(name, at, gpus, 0, "resnet50", samples, 1, deadline)
    job = parse_job(as_manifest(trace, EPOCH + timedelta(seconds=at), up_to=up_to))
    return SimJob(job.name, at, job, samples, deadline)


def offers(jobs: list[SimJob], watts: float = 300.0) -> dict[str, dict[tuple[str, int], Truth]]:
    return {j.id: {("a100", c): Truth(RATE * c, watts, False) for c in range(1, 9)} for j in jobs}


def told(job: SimJob) -> Mapping[tuple[str, int], Prediction]:
    return {
        ("a100", c): Prediction(measured(RATE * c, "samples/s", "t"), measured(300, "W", "t"))
        for c in range(1, 9)
    }


def a100_nodes(*gpus: int, idle: float = 100.0) -> list[NodeState]:
    docs = [node(f"n{i}", gpus=g, product=A100) for i, g in enumerate(gpus)]
    for d in docs:
        d["metadata"]["annotations"]["berth.dev/idle-watts"] = str(idle)
    return list(build_snapshot(docs, []).nodes)


def run(
    jobs: list[SimJob],
    nodes: list[NodeState],
    policy: Policy = kube_default,
    elasticity: Elasticity | None = None,
) -> Run:
    return simulate(jobs, nodes, policy, offers(jobs), told, None, elasticity)


ELASTIC = Elasticity(Settings(), lambda job: 60.0)


def busy_at(r: Run, t: float) -> dict[str, int]:
    """Devices held per node at time t, from every job's allocations."""
    used: dict[str, int] = {}
    for x in r.ran:
        spans = [*x.allocations, (x.end_s, ())]
        for (since, shares), (until, _) in pairwise(spans):
            if since <= t < until:
                for name, devices in shares:
                    used[name] = used.get(name, 0) + devices
    return used


def spans(r: Run) -> dict[str, tuple[float, float]]:
    return {x.job: (x.start_s, x.end_s) for x in r.ran}


def test_jobs_wait_their_turn_and_start_when_a_device_frees() -> None:
    jobs = [sim_job(f"j{i}", 10 * i, 1, 10_000) for i in range(3)]
    assert spans(run(jobs, a100_nodes(1))) == {
        "t-j0": (0, 100),
        "t-j1": (100, 200),
        "t-j2": (200, 300),
    }


def test_a_small_job_is_not_held_behind_a_big_one_that_does_not_fit() -> None:
    jobs = [
        sim_job("hold", 0, 1, 10_000),
        sim_job("big", 1, 2, 10_000),
        sim_job("small", 2, 1, 100),
    ]
    r = run(jobs, a100_nodes(2))
    assert spans(r)["t-small"] == (2, 3)
    assert spans(r)["t-big"] == (100, 150)


def test_busy_energy_is_device_watts_times_devices_times_runtime() -> None:
    r = run([sim_job("j", 0, 2, 20_000)], a100_nodes(2))
    (ran,) = r.ran
    assert (ran.count, ran.end_s) == (2, 100)
    assert ran.busy_joules == 300.0 * 2 * 100


def test_a_node_draws_idle_power_only_while_it_runs_something() -> None:
    jobs = [sim_job("a", 0, 1, 10_000), sim_job("b", 500, 1, 10_000)]
    assert run(jobs, a100_nodes(1)).idle_joules == 100.0 * (100 + 100)


def test_a_deadline_is_met_when_the_job_ends_by_it() -> None:
    jobs = [sim_job("on-time", 0, 1, 10_000, deadline=100), sim_job("late", 0, 1, 10_000, 150)]
    met = {x.job: x.met_deadline for x in run(jobs, a100_nodes(1)).ran}
    assert met == {"t-on-time": True, "t-late": False}


def test_an_elastic_job_grows_into_devices_another_job_frees_and_pays_its_restart() -> None:
    # Both start on 4 of 8 devices; at 4 the long job would miss its deadline.
    jobs = [
        sim_job("short", 0, 4, 4 * 100 * 600),
        sim_job("long", 0, 4, 8 * 100 * 20_000, deadline=25_000, up_to=8),
    ]
    r = run(jobs, a100_nodes(8), decide, ELASTIC)
    long = next(x for x in r.ran if x.job == "t-long")
    assert long.count == 4 and long.resizes >= 1
    assert long.allocations[1][0] >= 600  # once the short job has freed its devices
    assert long.restart_s == 60.0 * long.resizes
    assert long.met_deadline
    rigid = run(jobs, a100_nodes(8), decide)
    assert not next(x for x in rigid.ran if x.job == "t-long").met_deadline


def test_a_rigid_job_is_never_resized() -> None:
    jobs = [sim_job("short", 0, 4, 4 * 100 * 600), sim_job("rigid", 0, 4, 4 * 100 * 20_000)]
    r = run(jobs, a100_nodes(8), decide, ELASTIC)
    assert all(x.resizes == 0 for x in r.ran)


@st.composite
def traces(draw: st.DrawFn) -> tuple[list[SimJob], list[int]]:
    sizes = draw(st.lists(st.sampled_from([1, 2, 4, 8]), min_size=1, max_size=4))
    n = draw(st.integers(1, 12))
    jobs = [
        sim_job(
            f"j{i}",
            draw(st.integers(0, 500)),
            draw(st.sampled_from([1, 2, 4, 8])),
            draw(st.integers(1, 50_000)),
            draw(st.none() | st.integers(1, 1000)),
        )
        for i in range(n)
    ]
    return sorted(jobs, key=lambda j: j.submitted_s), sizes


@settings(max_examples=60, deadline=None)
@given(traces(), st.sampled_from([kube_default, decide]))
def test_every_job_runs_once_and_no_device_is_ever_over_committed(
    trace: tuple[list[SimJob], list[int]], policy: Policy
) -> None:
    jobs, sizes = trace
    nodes = a100_nodes(*sizes)
    r = run(jobs, nodes, policy)
    # kube-default waits for the user's count; berth may start a job on one device.
    too_big = {j.id for j in jobs if j.job.accelerators.count.max > sum(sizes)}
    left = set(r.never_placed)
    assert left == (too_big if policy is kube_default else set())
    assert sorted(x.job for x in r.ran) == sorted(j.id for j in jobs if j.id not in left)
    capacity = {n.name: n.allocatable.gpus for n in nodes}
    moments = sorted({x.start_s for x in r.ran})
    for t in moments:
        used = dict.fromkeys(capacity, 0)
        for x in r.ran:
            if x.start_s <= t < x.end_s:
                for name, devices in x.nodes:
                    used[name] += devices
        assert all(used[name] <= capacity[name] for name in capacity)
    by_id = {j.id: j for j in jobs}
    assert all(1 <= x.count <= by_id[x.job].job.accelerators.count.max for x in r.ran)


@settings(max_examples=40, deadline=None)
@given(traces())
def test_resizes_keep_every_job_in_its_range_and_never_over_commit_a_node(
    trace: tuple[list[SimJob], list[int]],
) -> None:
    jobs, sizes = trace
    jobs = [sim_job(j.id[2:], j.submitted_s, 1, j.samples, j.deadline_s, up_to=8) for j in jobs]
    nodes = a100_nodes(*sizes)
    r = run(jobs, nodes, decide, ELASTIC)
    assert sorted(x.job for x in r.ran) == sorted(j.id for j in jobs)
    capacity = {n.name: n.allocatable.gpus for n in nodes}
    for t in sorted({since for x in r.ran for since, _ in x.allocations}):
        assert all(used <= capacity[name] for name, used in busy_at(r, t).items())
    for x in r.ran:
        assert all(1 <= sum(d for _, d in shares) <= 8 for _, shares in x.allocations)


def test_the_same_inputs_give_the_same_run() -> None:
    jobs = [sim_job(f"j{i}", 7 * i, 1 + i % 3, 5_000 + 100 * i) for i in range(10)]
    first, second = run(jobs, a100_nodes(4, 2), decide), run(jobs, a100_nodes(4, 2), decide)
    assert first.ran == second.ran and first.idle_joules == second.idle_joules


# --- the event loop's steps alone, on a Simulation --------------------------------------


def simulation(jobs: list[SimJob], nodes: list[NodeState]) -> Simulation:
    return Simulation(jobs, nodes, kube_default, offers(jobs), told, None, ELASTIC)


def test_everything_that_happens_at_one_instant_is_taken_together() -> None:
    jobs = [sim_job("a", 0, 2, 100), sim_job("b", 0, 2, 100), sim_job("c", 5, 2, 100)]
    sim = simulation(jobs, a100_nodes(8))
    assert sim.pop(0.0) == ([0, 1], False, False)
    assert [e[0] for e in sim.events] == [5.0]


def test_a_job_that_cannot_fit_is_not_even_offered_to_the_policy() -> None:
    def never(*_: object) -> Plan:
        raise AssertionError("asked")

    jobs = [sim_job("big", 0, 8, 100)]
    only_eight = {jobs[0].id: {("a100", 8): Truth(RATE * 8, 300.0, False)}}
    sim = Simulation(jobs, a100_nodes(4), never, only_eight, told, None, None)
    assert sim.start(0, 0.0) is False and sim.run.decisions == 0


def test_a_finish_planned_before_a_resize_is_ignored() -> None:
    jobs = [sim_job("a", 0, 2, 10_000, up_to=8)]
    sim = simulation(jobs, a100_nodes(8))
    assert sim.start(0, 0.0)
    name = jobs[0].id
    grown = Resize(name, "a100", (("n0", 2), ("n0", 2)), 2, 4, "use idle devices", "+100%")
    assert sim.resize(grown, 10.0)
    assert sim.finish(0, 0, 50.0) is False  # the end the first allocation would have had
    assert sim.running[name].count == 4 and sim.free["a100"] == 4


def test_the_period_ticks_only_while_an_elastic_job_runs() -> None:
    jobs = [sim_job("rigid", 0, 2, 10_000)]
    sim = simulation(jobs, a100_nodes(8))
    sim.start(0, 0.0)
    sim.schedule_tick(0.0)
    assert sim.next_tick is None


def _sublinear(per_device: float) -> dict[tuple[str, int], float]:
    return {("a100", c): per_device * c**0.9 for c in range(1, 9)}


def _closed_loop_run(
    measuring: Measuring | None, arrivals: tuple[float, ...] = (0,), gpus: int = 8
) -> Run:
    """Elastic jobs whose prior says they run 3x faster than they do: on the prior, one
    device meets the deadline; in truth each needs three."""
    energy = Objective(ObjectiveKind.ENERGY, 1.0)
    jobs = []
    for i, at in enumerate(arrivals):
        job = sim_job(f"j{i}", at, 1, 3_000_000, deadline=at + 12_000, up_to=8)
        jobs.append(replace(job, job=replace(job.job, objective=energy)))
    rates = {k: Truth(r, 300.0, False) for k, r in _sublinear(100.0).items()}
    truth = {job.id: rates for job in jobs}

    def prior(_: SimJob) -> Mapping[tuple[str, int], Prediction]:
        return {
            k: Prediction(measured(r, "samples/s", "t"), measured(300, "W", "t"))
            for k, r in _sublinear(300.0).items()
        }

    # No trials (explore.py): these runs are about what measurement alone corrects.
    settings = Settings(min_interval_s=0, explore=False)
    elasticity = Elasticity(settings, lambda _: 60.0, measuring)
    return simulate(jobs, a100_nodes(gpus, idle=0.0), decide, truth, prior, None, elasticity)


def test_closed_loop_the_policy_corrects_a_wrong_prior_from_what_it_measured() -> None:
    closed = _closed_loop_run(Measuring(delay_s=60, noise=0.05))
    (ran,) = closed.ran
    assert ran.count == 1 and ran.resizes >= 1 and ran.met_deadline
    errors = closed.errors[True]  # |log(acted on / true)| each period; the prior's is log 3
    assert max(errors) < 0.5 * math.log(3) and errors[-1] < math.log(1.05)


def test_open_loop_the_policy_acts_on_its_prior_all_along() -> None:
    run = _closed_loop_run(None)
    assert run.errors[True] == []
    assert run.errors[False] and all(abs(e - math.log(3)) < 1e-9 for e in run.errors[False])


def test_a_job_is_not_measured_before_it_has_worked_the_measurement_delay() -> None:
    run = _closed_loop_run(Measuring(delay_s=10**6))
    assert run.errors[True] == [] and run.errors[False]


def test_a_new_job_starts_from_what_was_measured_of_jobs_of_its_model_and_batch() -> None:
    """The second job arrives once the first was measured: with kin, it is placed on the
    devices it needs from the start, or near it; without, on the one its prior promised."""
    # Room for both: the first may grow to all 8 it may take, and no shrink decides the second.
    kin = _closed_loop_run(Measuring(delay_s=60), arrivals=(0, 3000), gpus=16)
    alone = _closed_loop_run(Measuring(delay_s=60, kin_noise=None), arrivals=(0, 3000), gpus=16)
    second = {r.job: r for r in kin.ran}["t-j1"]
    assert second.count > 1 and second.met_deadline
    assert {r.job: r for r in alone.ran}["t-j1"].count == 1
