"""The discrete-event core: jobs arrive, a policy places them, they run at the measured rate.

Pure: it takes parsed jobs, the cluster's nodes, a policy, each job's offers (what the ground
truth knows of it on every (type, count)) and each job's predictions (what the policy is told),
and returns what happened. Reading traces, progress bars and reports live at the edges.

Model, stated once: a job's workers start together and run at the measured rate of its (type,
count) until its work is done; devices draw the ground-truth power while busy; a node draws its
idle power while anything runs on it, and nothing while empty (powered off, as cluster
autoscalers do with empty nodes). Jobs wait in FIFO order; any waiting job that fits may start
(no head-of-line blocking), for every policy alike.

Elasticity, when given: every `period_s` the elastic policy (placement/elastic.py) may resize
running elastic jobs or move them to another type. A resized or moved job makes no progress for
its restart time (checkpoint and restart, MODELLED per job) while it holds its new devices at
its device power (conservative), then runs at the measured rate of its new allocation.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from berth.core.job import AcceleratorJob
from berth.core.prediction import Key, Prediction
from berth.core.snapshot import ClusterSnapshot, NodeState, Resources
from berth.placement.elastic import (
    Resize,
    RunningJob,
    Settings,
    Shares,
    WaitingJob,
    by_type,
    rebalance,
)
from berth.placement.nodes import devices_free
from berth.placement.plan import Plan

EPOCH = datetime(2021, 3, 1, tzinfo=UTC)  # trace second 0; the ITP traces start in 2021-03

Policy = Callable[
    [ClusterSnapshot, AcceleratorJob, Mapping[tuple[str, int], Prediction], datetime], Plan
]
Offers = Mapping[tuple[str, int], "Truth"]

FINISH, ARRIVE, TICK = 0, 1, 2  # at one instant: releases first, then arrivals, then resizes


@dataclass(frozen=True)
class Truth:
    """What a job really does on one (type, count): measured rate, ground-truth device power."""

    samples_per_s: float
    device_watts: float
    watts_modelled: bool


@dataclass(frozen=True)
class SimJob:
    id: str
    submitted_s: float
    job: AcceleratorJob
    samples: int
    deadline_s: float | None  # absolute, on the simulation clock


@dataclass(frozen=True)
class Elasticity:
    settings: Settings
    restart_s: Callable[[SimJob], float]  # modelled checkpoint + restart of one resize


@dataclass(frozen=True)
class Ran:
    job: str
    type: str
    count: int  # at start
    nodes: Shares  # at start
    submitted_s: float
    start_s: float
    end_s: float
    busy_joules: float
    deadline_s: float | None
    watts_modelled: bool
    allocations: tuple[tuple[float, Shares], ...] = ()  # (from when, shares), the first at start
    restart_s: float = 0.0  # progress lost to resizes
    moves: int = 0  # resizes onto another type

    @property
    def met_deadline(self) -> bool | None:
        return None if self.deadline_s is None else self.end_s <= self.deadline_s

    @property
    def resizes(self) -> int:
        return max(len(self.allocations) - 1, 0)


@dataclass
class Run:
    ran: list[Ran] = field(default_factory=list)
    never_placed: list[str] = field(default_factory=list)
    idle_joules: float = 0.0
    decisions: int = 0
    decision_seconds: float = 0.0
    busy_timeline: list[tuple[float, dict[str, int]]] = field(default_factory=list)


@dataclass
class _Live:
    """A running job's mutable state; progress is brought up to date before every change."""

    index: int
    type: str
    shares: Shares
    truth: Truth
    started_s: float
    remaining: float
    since_s: float  # progress and energy counted up to here
    paused_until_s: float  # restarting until then
    last_resize_s: float
    modelled: bool
    version: int = 0
    joules: float = 0.0
    restart_s: float = 0.0
    moves: int = 0
    allocations: list[tuple[float, Shares]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(d for _, d in self.shares)

    def advance(self, now: float) -> None:
        working = now - max(self.since_s, self.paused_until_s)
        if working > 0:
            self.remaining = max(self.remaining - self.truth.samples_per_s * working, 0.0)
        self.joules += self.truth.device_watts * self.count * (now - self.since_s)
        self.since_s = now

    def end_s(self) -> float:
        return max(self.since_s, self.paused_until_s) + self.remaining / self.truth.samples_per_s


def _per_node(shares: Shares) -> dict[str, tuple[int, int]]:
    """node -> (devices, workers)"""
    out: dict[str, tuple[int, int]] = {}
    for name, devices in shares:
        d, w = out.get(name, (0, 0))
        out[name] = (d + devices, w + 1)
    return out


def simulate(
    jobs: Sequence[SimJob],
    nodes: Sequence[NodeState],
    policy: Policy,
    offers: Mapping[str, Offers],
    predictions: Callable[[SimJob], Mapping[tuple[str, int], Prediction]],
    progress: Callable[[int], None] | None = None,
    elasticity: Elasticity | None = None,
) -> Run:
    state = {n.name: n for n in nodes}
    order = [n.name for n in nodes]
    kind = {n.name: n.accelerator.type or "" for n in nodes}
    idle_watts = {n.name: n.idle_watts or 0.0 for n in nodes}
    free: dict[str, int] = {}
    for n in nodes:
        free[kind[n.name]] = free.get(kind[n.name], 0) + devices_free(n)
    awake_since: dict[str, float] = {}
    run = Run()
    told: dict[str, Mapping[tuple[str, int], Prediction]] = {}
    # (job, type) -> (count -> prediction on it, (type, count) -> prediction elsewhere)
    scaling: dict[tuple[str, str], tuple[dict[int, Prediction], dict[Key, Prediction]]] = {}
    types: dict[str, tuple[str, ...]] = {}  # job -> the types it was offered predictions on
    running: dict[str, _Live] = {}
    events: list[tuple[float, int, int, int]] = [
        (j.submitted_s, ARRIVE, i, 0) for i, j in enumerate(jobs)
    ]
    heapq.heapify(events)
    pending: list[int] = []
    snapshot: ClusterSnapshot | None = None
    finished = 0
    next_tick: float | None = None

    def current() -> ClusterSnapshot:
        nonlocal snapshot
        if snapshot is None:
            snapshot = ClusterSnapshot(tuple(state[name] for name in order))
        return snapshot

    def move(shares: Shares, sign: int, now: float) -> None:
        nonlocal snapshot
        for name, (devices, workers) in _per_node(shares).items():
            node = state[name]
            if sign > 0 and node.workload_pods == 0:
                awake_since[name] = now
            gpus = Resources(gpus=sign * devices)
            state[name] = replace(
                node,
                requested=node.requested if node.cpu_only else node.requested + gpus,
                workload_pods=node.workload_pods + sign * workers,
            )
            free[kind[name]] -= sign * devices
            if sign < 0 and state[name].workload_pods == 0:
                run.idle_joules += idle_watts[name] * (now - awake_since.pop(name))
        snapshot = None

    def predicted(job: SimJob) -> Mapping[tuple[str, int], Prediction]:
        if job.id not in told:
            told[job.id] = predictions(job)
        return told[job.id]

    def could_fit(job: SimJob) -> bool:
        return any(free.get(t, 0) >= c for t, c in offers[job.id])

    def start(i: int, now: float) -> bool:
        job = jobs[i]
        if not could_fit(job):
            return False
        began = time.perf_counter()
        plan = policy(current(), job.job, predicted(job), EPOCH + timedelta(seconds=now))
        run.decision_seconds += time.perf_counter() - began
        run.decisions += 1
        chosen = plan.chosen
        if chosen is None:
            return False
        truth = offers[job.id][(chosen.type, chosen.count)]
        move(chosen.nodes, +1, now)
        live = _Live(i, chosen.type, chosen.nodes, truth, now, job.samples, now, now, now,
                     truth.watts_modelled)  # fmt: skip
        live.allocations.append((now, chosen.nodes))
        running[job.id] = live
        heapq.heappush(events, (live.end_s(), FINISH, i, 0))
        return True

    def finish(i: int, version: int, now: float) -> bool:
        nonlocal finished
        live = running.get(jobs[i].id)
        if live is None or live.version != version:
            return False  # a resize moved this job's end
        live.advance(now)
        del running[jobs[i].id]
        move(live.shares, -1, now)
        job = jobs[i]
        first = live.allocations[0][1]
        run.ran.append(
            Ran(
                job.id,
                live.type,
                sum(d for _, d in first),
                first,
                job.submitted_s,
                live.started_s,
                now,
                live.joules,
                job.deadline_s,
                live.modelled,
                tuple(live.allocations),
                live.restart_s,
                live.moves,
            )
        )
        finished += 1
        if progress is not None:
            progress(finished)
        return True

    def resize(r: Resize, now: float) -> bool:
        live = running[r.id]
        job = jobs[live.index]
        truth = offers[job.id].get((r.type, r.to_count))
        if truth is None:
            return False  # the ground truth cannot run it: nothing is changed
        live.advance(now)
        move(live.shares, -1, now)
        move(r.shares, +1, now)
        assert elasticity is not None
        pause = elasticity.restart_s(job)
        live.moves += r.type != live.type
        live.type, live.shares, live.truth = r.type, r.shares, truth
        live.modelled = live.modelled or truth.watts_modelled
        live.paused_until_s, live.last_resize_s = now + pause, now
        live.restart_s += pause
        live.version += 1
        live.allocations.append((now, r.shares))
        heapq.heappush(events, (live.end_s(), FINISH, live.index, live.version))
        return True

    def rebalanced(now: float) -> bool:
        assert elasticity is not None
        views = []
        for job_id, live in running.items():
            job = jobs[live.index]
            live.advance(now)
            key = (job.id, live.type)
            if key not in scaling:
                scaling[key] = by_type(predicted(job), live.type)
            here, elsewhere = scaling[key]
            deadline = None if job.deadline_s is None else job.deadline_s - now
            views.append(
                RunningJob(job_id, job.job, live.type, live.shares, live.remaining, deadline,
                           live.last_resize_s, here, elasticity.restart_s(job), elsewhere)
            )  # fmt: skip
        for i in pending:
            if jobs[i].id not in types:
                types[jobs[i].id] = tuple(sorted({t for t, _ in predicted(jobs[i])}))
        waiting = [WaitingJob(jobs[i].id, jobs[i].job, types[jobs[i].id]) for i in pending]
        decided = rebalance(current(), views, waiting, now, elasticity.settings)
        # Shrinks first, so growth never counts devices a shrink has not yet released.
        applied = [resize(r, now) for r in sorted(decided, key=lambda r: r.to_count > r.from_count)]
        return any(applied)

    while events:
        now = events[0][0]
        arrived, released, ticked = [], False, False
        while events and events[0][0] == now:
            _, what, i, version = heapq.heappop(events)
            if what == FINISH:
                released |= finish(i, version, now)
            elif what == ARRIVE:
                arrived.append(i)
            else:
                ticked = True
        pending += arrived
        changed = released
        if ticked:
            next_tick = None
            changed |= rebalanced(now)
        # Without a change nothing that waited before can fit now: try the newcomers only.
        tried = pending if changed else arrived
        started = {i for i in list(tried) if start(i, now)}
        if started:
            pending = [i for i in pending if i not in started]
        if started or changed:
            counts: dict[str, int] = {}
            for live in running.values():
                counts[live.type] = counts.get(live.type, 0) + live.count
            run.busy_timeline.append((now, counts))
        elastic = any(jobs[live.index].job.elastic for live in running.values())
        if elasticity is not None and next_tick is None and elastic:
            next_tick = now + elasticity.settings.period_s
            heapq.heappush(events, (next_tick, TICK, -1, 0))
    run.never_placed = [jobs[i].id for i in pending]
    return run
