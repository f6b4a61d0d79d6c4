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

Measuring, when given (the closed loop): the elastic policy sees a running job's rate only once
it has worked `delay_s` on its allocation, then one window per period, each the true rate with
log-normal noise (MODELLED), never the rate itself; its predictions are the prior conditioned on
those windows (core/posterior.py). Its work left is its progress counter's (exact) once
measured, and modelled from the prior's rate before.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from berth.core.allocation import Shares
from berth.core.job import AcceleratorJob
from berth.core.posterior import KIN_NOISE, KIN_WINDOWS, NOISE, Measured, Prior
from berth.core.prediction import Key, Prediction
from berth.core.snapshot import ClusterSnapshot, NodeState, Resources
from berth.placement.elastic import (
    Resize,
    RunningJob,
    Settings,
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
class Measuring:
    delay_s: float = 60.0  # two scrapes at the chart's 30 s interval: a rate needs two points
    noise: float = NOISE  # MODELLED: relative spread of one window's rate
    windows: int = 4  # per allocation; more move a conditioned prediction little further
    seed: int = 0
    # A new job's prior is conditioned on what was measured of jobs of the same model and
    # batch, each window counted with this noise. None: each job starts from its prior.
    kin_noise: float | None = KIN_NOISE


@dataclass(frozen=True)
class Elasticity:
    settings: Settings
    restart_s: Callable[[SimJob], float]  # modelled checkpoint + restart of one resize
    measuring: Measuring | None = None  # None: the policy acts on the prior alone


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
    # |log(rate acted on / true rate)| of each running job's allocation at each period,
    # before its first measurement and after
    errors: dict[bool, list[float]] = field(default_factory=lambda: {False: [], True: []})


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
    trial_from: int | None = None  # the count before, while on an exploration trial
    allocations: list[tuple[float, Shares]] = field(default_factory=list)
    windows: dict[Key, tuple[float, ...]] = field(default_factory=dict)  # measured rates
    # the prior given `windows`, split by_type() for the type it was split for
    conditioned: tuple[str, dict[int, Prediction], dict[Key, Prediction]] | None = None

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


def _kind(job: SimJob) -> tuple[str | None, int | None]:
    return job.job.workload.model, job.job.workload.batch_size


def _per_node(shares: Shares) -> dict[str, tuple[int, int]]:
    """node -> (devices, workers)"""
    out: dict[str, tuple[int, int]] = {}
    for name, devices in shares:
        d, w = out.get(name, (0, 0))
        out[name] = (d + devices, w + 1)
    return out


class Simulation:
    """One policy over one trace: the cluster's state, the event queue and what ran, outside
    the steps of the event loop that change them."""

    def __init__(
        self,
        jobs: Sequence[SimJob],
        nodes: Sequence[NodeState],
        policy: Policy,
        offers: Mapping[str, Offers],
        predictions: Callable[[SimJob], Mapping[tuple[str, int], Prediction]],
        progress: Callable[[int], None] | None,
        elasticity: Elasticity | None,
    ) -> None:
        self.jobs, self.policy, self.offers = jobs, policy, offers
        self.predictions, self.progress, self.elasticity = predictions, progress, elasticity
        self.state = {n.name: n for n in nodes}
        self.order = [n.name for n in nodes]
        self.kind = {n.name: n.accelerator.type or "" for n in nodes}
        self.idle_watts = {n.name: n.idle_watts or 0.0 for n in nodes}
        self.free: dict[str, int] = {}
        for n in nodes:
            self.free[self.kind[n.name]] = self.free.get(self.kind[n.name], 0) + devices_free(n)
        self.awake_since: dict[str, float] = {}
        self.run = Run()
        self.told: dict[str, Mapping[tuple[str, int], Prediction]] = {}
        self.priors: dict[str, Prior] = {}  # job -> its predictions, to condition
        # (model, batch) -> (type, count) -> the latest windows measured of jobs of that kind
        self.kin: dict[tuple[str | None, int | None], dict[Key, tuple[float, ...]]] = {}
        # (job, type) -> (count -> prediction on it, (type, count) -> prediction elsewhere)
        self.scaling: dict[
            tuple[str, str], tuple[dict[int, Prediction], dict[Key, Prediction]]
        ] = {}
        self.types: dict[
            str, tuple[str, ...]
        ] = {}  # job -> the types it was offered predictions on
        self.running: dict[str, _Live] = {}
        self.events: list[tuple[float, int, int, int]] = [
            (j.submitted_s, ARRIVE, i, 0) for i, j in enumerate(jobs)
        ]
        heapq.heapify(self.events)
        self.pending: list[int] = []
        self.snapshot: ClusterSnapshot | None = None
        self.finished = 0
        self.next_tick: float | None = None
        measuring = elasticity.measuring if elasticity is not None else None
        self.rng = random.Random(measuring.seed if measuring is not None else 0)

    # --- the event loop ------------------------------------------------------------------

    def loop(self) -> Run:
        while self.events:
            now = self.events[0][0]
            # 1. Everything that happens now: finishes release devices, arrivals queue.
            arrived, released, ticked = self.pop(now)
            self.pending += arrived
            changed = released
            # 2. On a tick of the elastic period: the elastic policy's resizes.
            if ticked:
                self.next_tick = None
                changed |= self.rebalanced(now)
            # 3. Start what fits. Without a change nothing that waited before can fit now:
            # try the newcomers only.
            tried = self.pending if changed else arrived
            started = {i for i in list(tried) if self.start(i, now)}
            if started:
                self.pending = [i for i in self.pending if i not in started]
            # 4. The devices busy per type, when that changed.
            if started or changed:
                counts: dict[str, int] = {}
                for live in self.running.values():
                    counts[live.type] = counts.get(live.type, 0) + live.count
                self.run.busy_timeline.append((now, counts))
            # 5. The next tick, while an elastic job runs.
            self.schedule_tick(now)
        self.run.never_placed = [self.jobs[i].id for i in self.pending]
        return self.run

    def pop(self, now: float) -> tuple[list[int], bool, bool]:
        """(jobs arriving, whether a finish released devices, whether the period ticked)."""
        arrived, released, ticked = [], False, False
        while self.events and self.events[0][0] == now:
            _, what, i, version = heapq.heappop(self.events)
            if what == FINISH:
                released |= self.finish(i, version, now)
            elif what == ARRIVE:
                arrived.append(i)
            else:
                ticked = True
        return arrived, released, ticked

    def schedule_tick(self, now: float) -> None:
        elastic = any(self.jobs[live.index].job.elastic for live in self.running.values())
        if self.elasticity is not None and self.next_tick is None and elastic:
            self.next_tick = now + self.elasticity.settings.period_s
            heapq.heappush(self.events, (self.next_tick, TICK, -1, 0))

    # --- the cluster ---------------------------------------------------------------------

    def current(self) -> ClusterSnapshot:
        if self.snapshot is None:
            self.snapshot = ClusterSnapshot(tuple(self.state[name] for name in self.order))
        return self.snapshot

    def move(self, shares: Shares, sign: int, now: float) -> None:
        for name, (devices, workers) in _per_node(shares).items():
            node = self.state[name]
            if sign > 0 and node.workload_pods == 0:
                self.awake_since[name] = now
            gpus = Resources(gpus=sign * devices)
            self.state[name] = replace(
                node,
                requested=node.requested if node.cpu_only else node.requested + gpus,
                workload_pods=node.workload_pods + sign * workers,
            )
            self.free[self.kind[name]] -= sign * devices
            if sign < 0 and self.state[name].workload_pods == 0:
                self.run.idle_joules += self.idle_watts[name] * (now - self.awake_since.pop(name))
        self.snapshot = None

    def predicted(self, job: SimJob) -> Mapping[tuple[str, int], Prediction]:
        if job.id not in self.told:
            told = self.predictions(job)
            measuring = self.elasticity.measuring if self.elasticity is not None else None
            kin = self.kin.get(_kind(job))
            if measuring is not None and measuring.kin_noise is not None and kin:
                seen = [Measured(t, c, rates) for (t, c), rates in kin.items()]
                told = Prior(told).condition(seen, measuring.kin_noise)
            self.told[job.id] = told
        return self.told[job.id]

    def could_fit(self, job: SimJob) -> bool:
        return any(self.free.get(t, 0) >= c for t, c in self.offers[job.id])

    # --- a job's life --------------------------------------------------------------------

    def start(self, i: int, now: float) -> bool:
        job = self.jobs[i]
        if not self.could_fit(job):
            return False
        began = time.perf_counter()
        plan = self.policy(self.current(), job.job, self.predicted(job),
                           EPOCH + timedelta(seconds=now))  # fmt: skip
        self.run.decision_seconds += time.perf_counter() - began
        self.run.decisions += 1
        chosen = plan.chosen
        if chosen is None:
            return False
        truth = self.offers[job.id][(chosen.type, chosen.count)]
        self.move(chosen.nodes, +1, now)
        live = _Live(i, chosen.type, chosen.nodes, truth, now, job.samples, now, now, now,
                     truth.watts_modelled)  # fmt: skip
        live.allocations.append((now, chosen.nodes))
        self.running[job.id] = live
        heapq.heappush(self.events, (live.end_s(), FINISH, i, 0))
        return True

    def finish(self, i: int, version: int, now: float) -> bool:
        live = self.running.get(self.jobs[i].id)
        if live is None or live.version != version:
            return False  # a resize moved this job's end
        live.advance(now)
        del self.running[self.jobs[i].id]
        self.move(live.shares, -1, now)
        job = self.jobs[i]
        first = live.allocations[0][1]
        self.run.ran.append(
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
        self.finished += 1
        if self.progress is not None:
            self.progress(self.finished)
        return True

    def resize(self, r: Resize, now: float) -> bool:
        live = self.running[r.id]
        job = self.jobs[live.index]
        truth = self.offers[job.id].get((r.type, r.to_count))
        if truth is None:
            return False  # the ground truth cannot run it: nothing is changed
        live.advance(now)
        self.move(live.shares, -1, now)
        self.move(r.shares, +1, now)
        assert self.elasticity is not None
        pause = self.elasticity.restart_s(job)
        live.moves += r.type != live.type
        live.trial_from = live.count if r.trial else None
        live.type, live.shares, live.truth = r.type, r.shares, truth
        live.modelled = live.modelled or truth.watts_modelled
        live.paused_until_s, live.last_resize_s = now + pause, now
        live.restart_s += pause
        live.version += 1
        live.allocations.append((now, r.shares))
        heapq.heappush(self.events, (live.end_s(), FINISH, live.index, live.version))
        return True

    def measure(self, live: _Live, now: float, measuring: Measuring) -> bool:
        """A window of the job's rate, once it has worked `delay_s` on its allocation; whether
        it has been measured at all."""
        key = (live.type, live.count)
        got = live.windows.get(key, ())
        worked = now - max(live.allocations[-1][0], live.paused_until_s)
        if worked >= measuring.delay_s and len(got) < measuring.windows:
            rate = live.truth.samples_per_s * math.exp(self.rng.gauss(0.0, measuring.noise))
            live.windows[key] = (*got, rate)
            live.conditioned = None
            kin = self.kin.setdefault(_kind(self.jobs[live.index]), {})
            kin[key] = (*kin.get(key, ())[1 - KIN_WINDOWS :], rate)
        return bool(live.windows)

    def seen(
        self, job: SimJob, live: _Live, now: float
    ) -> tuple[dict[int, Prediction], dict[Key, Prediction], float]:
        """What the elastic policy knows of a running job: predictions on its type and on the
        others, and its work left."""
        measuring = self.elasticity.measuring if self.elasticity is not None else None
        prior = self.predicted(job)
        if measuring is None or not job.job.elastic or not self.measure(live, now, measuring):
            key = (job.id, live.type)
            if key not in self.scaling:
                self.scaling[key] = by_type(prior, live.type)
            here, elsewhere = self.scaling[key]
            left = live.remaining
            if measuring is not None and (p := here.get(live.count)) is not None:
                # Not yet measured: modelled from the prior's rate since it started.
                worked = max(now - max(live.started_s, live.paused_until_s), 0.0)
                left = max(job.samples - p.throughput.value * worked, 0.0)
            self.record_error(here.get(live.count), live, measured=False)
            return here, elsewhere, left
        if live.conditioned is None or live.conditioned[0] != live.type:
            if job.id not in self.priors:
                self.priors[job.id] = Prior(prior)
            windows = [Measured(t, c, rates) for (t, c), rates in live.windows.items()]
            found = self.priors[job.id].condition(windows, measuring.noise)
            live.conditioned = (live.type, *by_type(found, live.type))
        _, here, elsewhere = live.conditioned
        self.record_error(here.get(live.count), live, measured=True)
        return here, elsewhere, live.remaining

    def record_error(self, p: Prediction | None, live: _Live, measured: bool) -> None:
        if p is not None:
            error = abs(math.log(p.throughput.value / live.truth.samples_per_s))
            self.run.errors[measured].append(error)

    def rebalanced(self, now: float) -> bool:
        assert self.elasticity is not None
        views = []
        for job_id, live in self.running.items():
            job = self.jobs[live.index]
            live.advance(now)
            here, elsewhere, left = self.seen(job, live, now)
            deadline = None if job.deadline_s is None else job.deadline_s - now
            measured = frozenset(c for t, c in live.windows if t == live.type)
            views.append(
                RunningJob(job_id, job.job, live.type, live.shares, left, deadline,
                           live.last_resize_s, here, self.elasticity.restart_s(job), elsewhere,
                           measured=measured, trial_from=live.trial_from)
            )  # fmt: skip
        jobs = self.jobs
        for i in self.pending:
            if jobs[i].id not in self.types:
                self.types[jobs[i].id] = tuple(sorted({t for t, _ in self.predicted(jobs[i])}))
        waiting = [
            WaitingJob(jobs[i].id, jobs[i].job, self.types[jobs[i].id]) for i in self.pending
        ]
        decided = rebalance(self.current(), views, waiting, now, self.elasticity.settings)
        # Shrinks first, so growth never counts devices a shrink has not yet released.
        ordered = sorted(decided, key=lambda r: r.to_count > r.from_count)
        applied = [self.resize(r, now) for r in ordered]
        return any(applied)


def simulate(
    jobs: Sequence[SimJob],
    nodes: Sequence[NodeState],
    policy: Policy,
    offers: Mapping[str, Offers],
    predictions: Callable[[SimJob], Mapping[tuple[str, int], Prediction]],
    progress: Callable[[int], None] | None = None,
    elasticity: Elasticity | None = None,
) -> Run:
    """Every job of the trace through `policy` on `nodes`, event by event."""
    return Simulation(jobs, nodes, policy, offers, predictions, progress, elasticity).loop()
