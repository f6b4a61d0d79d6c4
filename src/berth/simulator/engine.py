"""The discrete-event core: jobs arrive, a policy places them, they run at the measured rate.

Pure: it takes parsed jobs, the cluster's nodes, a policy, each job's offers (what the ground
truth knows of it on every (type, count)) and each job's predictions (what the policy is told),
and returns what happened. Reading traces, progress bars and reports live at the edges.

Model, stated once: a job's workers start together and run at the measured rate of its (type,
count) until its work is done; devices draw the ground-truth power while busy; a node draws its
idle power while anything runs on it, and nothing while empty (powered off, as cluster
autoscalers do with empty nodes). Jobs wait in FIFO order; any waiting job that fits may start
(no head-of-line blocking), for every policy alike.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from berth.core.job import AcceleratorJob
from berth.core.snapshot import ClusterSnapshot, NodeState, Resources
from berth.placement.nodes import devices_free
from berth.placement.plan import Plan, Prediction

EPOCH = datetime(2021, 3, 1, tzinfo=UTC)  # trace second 0; the ITP traces start in 2021-03

Policy = Callable[
    [ClusterSnapshot, AcceleratorJob, Mapping[tuple[str, int], Prediction], datetime], Plan
]
Offers = Mapping[tuple[str, int], "Truth"]


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
class Ran:
    job: str
    type: str
    count: int
    nodes: tuple[tuple[str, int], ...]
    submitted_s: float
    start_s: float
    end_s: float
    busy_joules: float
    deadline_s: float | None
    watts_modelled: bool

    @property
    def met_deadline(self) -> bool | None:
        return None if self.deadline_s is None else self.end_s <= self.deadline_s


@dataclass
class Run:
    ran: list[Ran] = field(default_factory=list)
    never_placed: list[str] = field(default_factory=list)
    idle_joules: float = 0.0
    decisions: int = 0
    decision_seconds: float = 0.0
    busy_timeline: list[tuple[float, dict[str, int]]] = field(default_factory=list)


def _occupy(node: NodeState, devices: int, sign: int) -> NodeState:
    return replace(
        node,
        requested=node.requested + Resources(gpus=sign * devices)
        if not node.cpu_only
        else node.requested,
        workload_pods=node.workload_pods + sign,
    )


def simulate(
    jobs: Sequence[SimJob],
    nodes: Sequence[NodeState],
    policy: Policy,
    offers: Mapping[str, Offers],
    predictions: Callable[[SimJob], Mapping[tuple[str, int], Prediction]],
    progress: Callable[[int], None] | None = None,
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
    running: dict[str, Ran] = {}
    events: list[tuple[float, int, int]] = [(j.submitted_s, 1, i) for i, j in enumerate(jobs)]
    heapq.heapify(events)
    pending: list[int] = []
    snapshot: ClusterSnapshot | None = None
    finished = 0

    def could_fit(job: SimJob) -> bool:
        return any(free.get(t, 0) >= c for t, c in offers[job.id])

    def start(i: int, now: float) -> bool:
        nonlocal snapshot
        job = jobs[i]
        if not could_fit(job):
            return False
        if snapshot is None:
            snapshot = ClusterSnapshot(tuple(state[name] for name in order))
        if job.id not in told:
            told[job.id] = predictions(job)
        began = time.perf_counter()
        plan = policy(snapshot, job.job, told[job.id], EPOCH + timedelta(seconds=now))
        run.decision_seconds += time.perf_counter() - began
        run.decisions += 1
        chosen = plan.chosen
        if chosen is None:
            return False
        truth = offers[job.id][(chosen.type, chosen.count)]
        runtime = job.samples / truth.samples_per_s
        for name, used in chosen.nodes:
            if state[name].workload_pods == 0:
                awake_since[name] = now
            state[name] = _occupy(state[name], used, +1)
            free[kind[name]] -= used
        snapshot = None
        ran = Ran(
            job.id,
            chosen.type,
            chosen.count,
            chosen.nodes,
            job.submitted_s,
            now,
            now + runtime,
            truth.device_watts * chosen.count * runtime,
            job.deadline_s,
            truth.watts_modelled,
        )
        running[job.id] = ran
        heapq.heappush(events, (ran.end_s, 0, i))
        return True

    def finish(i: int, now: float) -> None:
        nonlocal snapshot, finished
        ran = running.pop(jobs[i].id)
        for name, used in ran.nodes:
            state[name] = _occupy(state[name], used, -1)
            free[kind[name]] += used
            if state[name].workload_pods == 0:
                run.idle_joules += idle_watts[name] * (now - awake_since.pop(name))
        snapshot = None
        run.ran.append(ran)
        finished += 1
        if progress is not None:
            progress(finished)

    while events:
        now = events[0][0]
        arrived, released = [], False
        while events and events[0][0] == now:
            _, kind_of_event, i = heapq.heappop(events)
            if kind_of_event == 0:
                finish(i, now)
                released = True
            else:
                arrived.append(i)
        pending += arrived
        # Without a release nothing that waited before can fit now: try the newcomers only.
        tried = pending if released else arrived
        started = {i for i in list(tried) if start(i, now)}
        if started:
            pending = [i for i in pending if i not in started]
        if started or released:
            counts: dict[str, int] = {}
            for ran in running.values():
                counts[ran.type] = counts.get(ran.type, 0) + ran.count
            run.busy_timeline.append((now, counts))
    run.never_placed = [jobs[i].id for i in pending]
    return run
