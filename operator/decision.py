"""Admission of one waiting job, pure: from the job, its predictions and the cluster snapshot
to a Decision value that the reconciler applies (a status write, Events, metrics)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from berth.core.allocation import Allocation
from berth.core.job import AcceleratorJob, check_deadline
from berth.core.prediction import Prediction
from berth.core.snapshot import ClusterSnapshot
from berth.core.validation import InvalidObject
from berth.operator import predictions, status
from berth.placement.deadline import admission
from berth.placement.plan import deadline_budget, decide


@dataclass(frozen=True)
class Note:
    """An Event to post about the job."""

    kind: str  # Normal or Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Refused:
    """The spec cannot run: the job fails with this reason."""

    reason: str
    message: str


@dataclass(frozen=True)
class Waiting:
    """Nothing fits now; retried when capacity changes."""

    message: str
    conditions: tuple[status.Condition, ...]


@dataclass(frozen=True)
class Placed:
    allocation: Allocation
    placement: status.PlacementStatus  # with the predictions and alternatives
    conditions: tuple[status.Condition, ...]
    notes: tuple[Note, ...]
    source: str  # which predictor answered for the chosen allocation
    degraded: str | None  # why the recommender did not answer, when it did not
    energy_j: float | None  # predicted, for the metric
    predictions: Mapping[tuple[str, int], Prediction] = field(default_factory=dict)


Decision = Refused | Waiting | Placed


def refusal(job: AcceleratorJob | InvalidObject, now: datetime) -> Refused | None:
    """Why the job cannot be considered at all (an invalid spec, a deadline passed)."""
    if isinstance(job, InvalidObject):
        return Refused("Invalid", str(job))
    late = check_deadline(job, now)
    if late is not None:
        return Refused("DeadlinePassed", f"{late.path}: {late.message}")
    return None


def admit(
    job: AcceleratorJob,
    got: predictions.Predicted,
    snapshot: ClusterSnapshot,
    capacity: Mapping[str, int],
    now: datetime,
) -> Waiting | Placed:
    """The placement decision for a valid job whose predictions are `got`; `capacity`: the
    devices of each type on usable nodes, free or not."""
    admitted = admission(job, got.predictions, capacity, deadline_budget(job, now))
    deadline: tuple[status.Condition, ...] = ()
    if admitted is not None:
        reason = "MinimumShare" if admitted.reachable else "Unreachable"
        deadline = (
            status.Condition("DeadlineReachable", admitted.reachable, reason, admitted.message),
        )
    plan = decide(snapshot, job, got.predictions, now)
    chosen = plan.chosen
    if chosen is None:
        message = plan.note or "no placement"
        if plan.alternatives:
            message += ": " + "; ".join(
                f"{r.type} x{r.count}: {r.reason}" for r in plan.alternatives[:3]
            )
        return Waiting(message, deadline)

    source = got.sources[(chosen.type, chosen.count)]
    placement = status.placement_status(chosen, plan, source)
    where = f"{chosen.type} x{chosen.count} on {placement['nodeNames']}"
    conditions = [
        status.Condition("Validated", True, "Valid", "spec accepted"),
        status.Condition(
            "Placed", True, "Placed", where + (f" ({plan.note})" if plan.note else "")
        ),
    ]
    if got.degraded is not None:
        conditions.append(
            status.Condition("RecommenderUnavailable", True, "Fallback", got.degraded)
        )
    conditions += deadline
    predicted = placement["predicted"]
    notes = [
        Note(
            "Normal",
            "Placed",
            f"{where}: {predicted['joulesPerSample']:.4g} J/sample predicted by {source}"
            + (f"; {got.degraded}" if got.degraded else ""),
        )
    ]
    if admitted is not None and not admitted.reachable:
        notes.append(Note("Warning", "DeadlineUnreachable", admitted.message))
    energy = chosen.estimate.energy_kwh
    return Placed(
        chosen.allocation,
        placement, tuple(conditions), tuple(notes), source, got.degraded,
        None if energy is None else energy.value * 3.6e6, dict(got.predictions),
    )  # fmt: skip
