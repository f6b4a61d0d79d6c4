"""An AcceleratorJob's status, pure: what a Plan, a refusal or the workers' phases write there.

Conditions follow the Kubernetes shape; a condition keeps its lastTransitionTime while its
status does not change, so rewriting the same facts does not look like news.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

from berth.core.allocation import Allocation
from berth.core.energy import EnergyEstimate
from berth.operator.workers import worker_name
from berth.placement.plan import Option, Plan

PENDING, PLACED, RUNNING, SUCCEEDED, FAILED = "Pending", "Placed", "Running", "Succeeded", "Failed"
RESIZING = "Resizing"  # workers being added or removed; Running again once all run
FINISHED = (SUCCEEDED, FAILED)


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str


def stamp(t: datetime) -> str:
    """A time as status and Events write it (RFC 3339, UTC as Z)."""
    return t.isoformat().replace("+00:00", "Z")


def conditions(
    current: Sequence[Mapping[str, Any]],
    updates: Sequence[Condition],
    now: datetime,
    generation: int | None,
) -> list[dict[str, Any]]:
    """`current` with `updates` applied (by type), order kept, new types appended."""
    at = stamp(now)
    out = {c["type"]: dict(c) for c in current}
    for u in updates:
        status = "True" if u.status else "False"
        old = out.get(u.type)
        changed = old is None or old.get("status") != status
        entry = {
            "type": u.type,
            "status": status,
            "reason": u.reason,
            "message": u.message[:1024],
            "lastTransitionTime": (old or {}).get("lastTransitionTime", at) if not changed else at,
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        out[u.type] = entry
    return list(out.values())


def _predicted(e: EnergyEstimate, throughput: float, uncertainty: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "throughput": throughput,
        "watts": e.watts.value,
        "joulesPerSample": e.joules_per_sample.value,
        "provenance": e.joules_per_sample.describe(),
    }
    if e.runtime_s is not None:
        out["runtimeSeconds"] = e.runtime_s.value
    if e.energy_kwh is not None:
        out["energyKWh"] = e.energy_kwh.value
    if uncertainty is not None:
        out["uncertainty"] = uncertainty
    return out


class NodeEntry(TypedDict):
    name: str
    count: int


class AllocationStatus(TypedDict):
    """status.placement's allocation: the CRD's fields of the same names."""

    type: str
    count: int
    nodes: list[NodeEntry]
    nodeNames: str


class PlacementStatus(AllocationStatus):
    """status.placement as a placement writes it."""

    predicted: dict[str, Any]
    source: str
    alternatives: list[dict[str, Any]]


class ResizeEntry(TypedDict, total=False):
    """One entry of status.resizes (all but `trial` always there)."""

    time: str
    fromType: str
    toType: str
    fromCount: int
    toCount: int
    reason: str
    predictedGain: str
    trial: bool  # an exploration trial (placement/explore.py), settled once measured


def allocation_status(a: Allocation) -> AllocationStatus:
    """An Allocation as status.placement (and status.resizes) hold it."""
    return {
        "type": a.type,
        "count": a.count,
        "nodes": [{"name": s.node, "count": s.devices} for s in a.shares],
        "nodeNames": a.node_names,
    }


def allocation_of(placement: Mapping[str, Any]) -> Allocation:
    """The Allocation a recorded status.placement holds."""
    return Allocation.of(
        str(placement["type"]), ((str(n["name"]), int(n["count"])) for n in placement["nodes"])
    )


def placement_status(chosen: Option, plan: Plan, source: str) -> PlacementStatus:
    throughput = chosen.prediction.throughput
    alternatives = []
    for r in plan.alternatives:
        alt: dict[str, Any] = {"type": r.type, "count": r.count, "reason": r.reason}
        e = r.estimate
        if e is not None and e.joules_per_sample.value > 0:
            # Rejected keeps no throughput; W / (J/sample) gives it back.
            alt["predicted"] = _predicted(e, e.watts.value / e.joules_per_sample.value, None)
        alternatives.append(alt)
    return {
        **allocation_status(chosen.allocation),
        "predicted": _predicted(
            chosen.estimate, throughput.value, throughput.provenance.uncertainty
        ),
        "source": source,
        "alternatives": alternatives,
    }


def _pod_failure(pod: Mapping[str, Any]) -> str:
    status = pod.get("status") or {}
    for cs in status.get("containerStatuses") or ():
        term = (cs.get("state") or {}).get("terminated")
        if term and term.get("exitCode", 0) != 0:
            detail = term.get("message") or f"exit code {term.get('exitCode')}"
            return f"container {cs.get('name')}: {term.get('reason', 'Error')}: {detail}"
    return status.get("message") or status.get("reason") or "worker failed"


@dataclass(frozen=True)
class WorkersPhase:
    phase: str
    reason: str
    message: str


def workers_phase(
    job_name: str, placement: Allocation, pods: Mapping[str, Mapping[str, Any]]
) -> WorkersPhase:
    """The job's phase from its workers (`pods`: name -> pod of this job)."""
    names = [worker_name(job_name, k) for k in range(len(placement.shares))]
    found = [pods[n] for n in names if n in pods]
    phases = [(p.get("status") or {}).get("phase", "Pending") for p in found]
    for pod, phase in zip(found, phases, strict=True):
        if phase == "Failed":
            name = pod["metadata"]["name"]
            return WorkersPhase(FAILED, "WorkerFailed", f"{name}: {_pod_failure(pod)}")
    if len(found) == len(names) and all(p == "Succeeded" for p in phases):
        return WorkersPhase(SUCCEEDED, "WorkersSucceeded", f"all {len(names)} workers succeeded")
    if len(found) == len(names) and all(p in ("Running", "Succeeded") for p in phases):
        return WorkersPhase(RUNNING, "WorkersRunning", f"all {len(names)} workers running")
    running = sum(p == "Running" for p in phases)
    return WorkersPhase(
        PLACED, "WorkersStarting", f"{len(found)}/{len(names)} workers exist, {running} running"
    )
