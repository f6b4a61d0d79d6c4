"""decide(snapshot, job, predictions, now) -> Plan: the whole placement decision, pure.

Candidates are every (accelerator type, count) the job allows; a candidate is feasible when a
gang of that many devices fits on usable nodes and a prediction exists for it (predictions are
never invented here). Feasible candidates are scored by the objective; a deadline is a
constraint. The Plan names the choice and the best rejected candidates with the reason each
lost, so a person can see why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from berth.core.allocation import Allocation, Share, Shares
from berth.core.catalog import CPU
from berth.core.energy import EnergyEstimate, NodeShare, estimate, node_idle_watts
from berth.core.job import AcceleratorJob
from berth.core.prediction import Prediction
from berth.core.snapshot import ClusterSnapshot, NodeState, pod_requests
from berth.placement.lateness import SLOWDOWN, least_energy_in_time
from berth.placement.nodes import Gang, WorkerNeed, devices_free, gang_picker, why_not
from berth.placement.score import objective_scores

MAX_ALTERNATIVES = 8  # the CRD's status.placement.alternatives maxItems


@dataclass(frozen=True)
class Option:
    type: str
    count: int
    nodes: Shares  # (node name, devices) per worker
    prediction: Prediction
    estimate: EnergyEstimate
    late_s: float | None  # seconds past the deadline (<= 0: in time); None without one

    @property
    def meets_deadline(self) -> bool | None:
        return None if self.late_s is None else self.late_s <= 0

    @property
    def allocation(self) -> Allocation:
        return Allocation.of(self.type, self.nodes)


@dataclass(frozen=True)
class Rejected:
    type: str
    count: int
    reason: str
    estimate: EnergyEstimate | None = None


@dataclass(frozen=True)
class Plan:
    chosen: Option | None
    alternatives: tuple[Rejected, ...]
    note: str | None = None  # why nothing was chosen, or what the choice cannot promise


def worker_need(job: AcceleratorJob) -> WorkerNeed:
    """What one worker requests, parsed once per job object (every decision and every period
    of the elastic policy asks; a job's template does not change under it)."""
    known = _needs.get(id(job))
    if known is not None and known[0] is job:
        return known[1]
    spec = job.template.get("spec", {})
    requests = pod_requests({"spec": spec})
    need = WorkerNeed(
        requests.cpu_millis, requests.memory_bytes, tuple(spec.get("tolerations", ()))
    )
    if len(_needs) >= NEEDS:
        _needs.clear()
    _needs[id(job)] = (job, need)  # the job held: its id cannot be reused while it is here
    return need


NEEDS = 4096  # jobs whose worker needs are kept (each entry holds its job: a bound on memory)
_needs: dict[int, tuple[AcceleratorJob, WorkerNeed]] = {}


def min_memory_mib(job: AcceleratorJob) -> int | None:
    wanted = [
        b
        for b in (job.accelerators.min_device_memory_bytes, job.workload.memory_per_replica_bytes)
        if b is not None
    ]
    return -(-max(wanted) // 2**20) if wanted else None


def _shares(chosen: Gang) -> list[NodeShare]:
    return [
        NodeShare(node_idle_watts(n), n.awake, used, max(n.allocatable.gpus, 1))
        for n, used in chosen
    ]


def deadline_budget(job: AcceleratorJob, now: datetime) -> float | None:
    """Seconds left until the job's deadline, when it has one and a known amount of work."""
    if job.deadline is None or job.workload.total_samples is None:
        return None
    return (job.deadline.resolve(job.created or now) - now).total_seconds()


def make_option(
    job: AcceleratorJob, type_id: str, gang: Gang, prediction: Prediction, budget_s: float | None
) -> Option:
    """A candidate with its energy estimate and lateness, for a gang already picked."""
    count = sum(used for _, used in gang)
    result = estimate(
        prediction.device_watts,
        count,
        prediction.throughput,
        _shares(gang),
        job.workload.total_samples,
    )
    late = None
    if budget_s is not None and result.runtime_s is not None:
        late = result.runtime_s.value - budget_s
    nodes = tuple(Share(node.name, used) for node, used in gang)
    return Option(type_id, count, nodes, prediction, result, late)


def decide(
    snapshot: ClusterSnapshot,
    job: AcceleratorJob,
    predictions: Mapping[tuple[str, int], Prediction],
    now: datetime,
) -> Plan:
    need = worker_need(job)
    min_mib = min_memory_mib(job)
    budget_s = deadline_budget(job, now)

    types = sorted(t for t in snapshot.by_type if t is not None and job.accelerators.allows(t))
    options: list[Option] = []
    rejected: list[Rejected] = []
    count = job.accelerators.count
    for type_id in types:
        of_type = snapshot.by_type[type_id]
        reasons = [why_not(n, type_id, need, min_mib) for n in of_type]
        eligible = [n for n, r in zip(of_type, reasons, strict=True) if r is None]
        pick = gang_picker(eligible)
        for n in range(count.min, count.max + 1):
            prediction = predictions.get((type_id, n))
            # Only the first MAX_ALTERNATIVES rejections can be shown: none made past them (a
            # count range of 1-64 would make hundreds per decision).
            if prediction is None:
                if len(rejected) < MAX_ALTERNATIVES:
                    rejected.append(Rejected(type_id, n, f"no prediction for {type_id} x{n}"))
                continue
            gang = pick(n)
            if gang is None:
                if len(rejected) < MAX_ALTERNATIVES:
                    rejected.append(Rejected(type_id, n, _no_room(eligible, reasons, type_id, n)))
                continue
            options.append(make_option(job, type_id, gang, prediction, budget_s))

    if not types:
        return Plan(None, (), "no usable node of an allowed accelerator type")
    if not options:
        return Plan(None, tuple(rejected[:MAX_ALTERNATIVES]), "no allowed placement fits now")

    note = None
    in_time = [o for o in options if o.meets_deadline is not False]
    if not in_time:
        # Late whatever it gets now: the least energy within a bounded slowdown, and say so.
        least = least_energy_in_time(
            sorted(options, key=lambda o: (o.type, o.count)),
            lambda o: o.estimate.joules_per_sample.value,
            lambda o: 1 / o.prediction.throughput.value,
        )
        in_time = [least]
        note = (
            f"no placement meets the deadline; the least energy within {SLOWDOWN:g}x the "
            f"fastest's runtime misses it by {least.late_s:.0f} s"
        )
    else:
        rejected += [
            Rejected(o.type, o.count, f"misses the deadline by {o.late_s:.0f} s", o.estimate)
            for o in options
            if o.meets_deadline is False
        ]

    scores = objective_scores(
        [o.estimate.joules_per_sample.value for o in in_time],
        [1 / o.prediction.throughput.value for o in in_time],
        job.objective,
    )
    ranked = sorted(
        zip(scores, in_time, strict=True),
        key=lambda so: (so[0], 1 / so[1].prediction.throughput.value, so[1].type, so[1].count),
    )
    best_score, best = ranked[0]
    losers = [
        Rejected(o.type, o.count, _lost(job, best, o, score, best_score), o.estimate)
        for score, o in ranked[1:]
    ]
    return Plan(best, tuple((losers + rejected)[:MAX_ALTERNATIVES]), note)


def _no_room(eligible: list[NodeState], reasons: list[str | None], type_id: str, n: int) -> str:
    unit = "free CPU nodes" if type_id == CPU else f"free {type_id} devices"
    text = f"needs {n}, only {sum(devices_free(node) for node in eligible)} {unit} on usable nodes"
    refused = Counter(r for r in reasons if r is not None)
    if refused:
        # Most nodes that cannot host a worker say why; the commonest reason is the useful one.
        reason, count = refused.most_common(1)[0]
        text += f" ({count} of {len(reasons)} {type_id} nodes: {reason})"
    return text


def _lost(job: AcceleratorJob, best: Option, o: Option, score: float, best_score: float) -> str:
    kind = job.objective.kind.value
    if kind == "energy":
        j, bj = o.estimate.joules_per_sample.value, best.estimate.joules_per_sample.value
        return f"{j:.4g} J/sample vs {bj:.4g}"
    if kind == "time":
        rate, best_rate = o.prediction.throughput.value, best.prediction.throughput.value
        return f"{rate:.4g} samples/s vs {best_rate:.4g}"
    return f"balanced score {score:.3f} vs {best_score:.3f}"
