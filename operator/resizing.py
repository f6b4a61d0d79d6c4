"""From recorded jobs to the elastic policy's inputs and from its resizes to status, pure.

The policy itself is placement/elastic.py, the same the simulator runs. Here a running job's
recorded placement and resizes become a RunningJob, a Resize becomes the new status.placement
and a status.resizes entry, and the recorded placement says which worker Pods are stale.

The closed loop: once the job's progress counter has been scraped, work left is what it says
(measured), and every prediction is conditioned on the rates measured (core/posterior.py);
until then work left is MODELLED from the predicted rate of each allocation since the job
started running, and status.progress says which.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from berth.core.allocation import Allocation
from berth.core.job import AcceleratorJob
from berth.core.prediction import Key, Prediction
from berth.core.snapshot import GPU_RESOURCE
from berth.operator.measurements import JobProgress
from berth.operator.status import ResizeEntry, allocation_of, allocation_status, stamp
from berth.placement.elastic import Resize, RunningJob, by_type
from berth.placement.plan import deadline_budget

MAX_RESIZES_KEPT = 16  # status.resizes keeps the latest


def _parsed(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _time(text: str) -> float:
    return _parsed(text).timestamp()


def running_since(status: Mapping[str, Any]) -> datetime | None:
    """When the job's workers first all ran (its Running condition turned True)."""
    for c in status.get("conditions") or ():
        if c.get("type") == "Running" and c.get("status") == "True":
            return _parsed(c["lastTransitionTime"])
    return None


def measured_left(job: AcceleratorJob, progress: JobProgress | None) -> float | None:
    """Work left as the job's progress counter says; None until it has been scraped, or
    without a known amount of work."""
    total = job.workload.total_samples
    if progress is None or progress.samples_done is None or total is None:
        return None
    return max(total - progress.samples_done, 0.0)


def remaining_samples(
    job: AcceleratorJob,
    status: Mapping[str, Any],
    found: Mapping[Key, Prediction],
    now_s: float,
) -> float | None:
    """Work left, MODELLED: total work less the predicted rate of each allocation over the
    time it held, from when the workers first ran; None without a known amount of work."""
    total = job.workload.total_samples
    began = running_since(status)
    if total is None or began is None:
        return None
    placement = status["placement"]
    resizes = [r for r in status.get("resizes") or () if "time" in r]
    held: Key = (str(placement["type"]), int(placement["count"]))
    if resizes:  # the allocation it started on
        held = (str(resizes[0].get("fromType", held[0])), int(resizes[0]["fromCount"]))
    done, since = 0.0, began.timestamp()
    for r in resizes:
        at = max(_time(r["time"]), since)
        done += _rate(found, held) * (at - since)
        held, since = (str(r.get("toType", held[0])), int(r["toCount"])), at
    done += _rate(found, held) * max(now_s - since, 0.0)
    return max(total - done, 0.0)


def _rate(found: Mapping[Key, Prediction], held: Key) -> float:
    p = found.get(held)
    return 0.0 if p is None else p.throughput.value


def running_job(
    uid: str,
    job: AcceleratorJob,
    status: Mapping[str, Any],
    found: Mapping[Key, Prediction],
    now: datetime,
    progress: JobProgress | None = None,
) -> RunningJob:
    """`found`: the job's predictions on every allowed (type, count), conditioned on what was
    measured when anything was; `progress`: what was measured of it."""
    held = allocation_of(status["placement"])
    type_id, shares = held.type, held.shares
    resizes = status.get("resizes") or ()
    last = _time(resizes[-1]["time"]) if resizes else -math.inf
    remaining = measured_left(job, progress)
    if remaining is None:
        remaining = remaining_samples(job, status, found, now.timestamp())
    deadline = deadline_budget(job, now)  # None without known work: no remaining to judge by
    here, elsewhere = by_type(found, type_id)
    measured = frozenset(
        m.count for m in (progress.measured if progress else ()) if m.type == type_id
    )
    trial = resizes[-1] if resizes and resizes[-1].get("trial") else None
    trial_from = None
    if trial is not None and trial["toType"] == type_id == trial["fromType"]:
        trial_from = int(trial["fromCount"])
    return RunningJob(
        uid, job, type_id, shares, remaining, deadline, last, here, job.restart_s, elsewhere,
        resumable=job.restart_s is not None, measured=measured, trial_from=trial_from,
    )  # fmt: skip


def resized(
    status: Mapping[str, Any], resize: Resize, now: datetime
) -> tuple[dict[str, Any], list[Mapping[str, Any]]]:
    """The new status.placement (its allocation replaced, its predictions kept) and
    status.resizes for `resize`."""
    placement = dict(status["placement"])
    placement |= allocation_status(Allocation.of(resize.type, resize.shares))
    entry: ResizeEntry = {
        "time": stamp(now),
        "fromType": str(status["placement"]["type"]),
        "toType": resize.type,
        "fromCount": resize.from_count,
        "toCount": resize.to_count,
        "reason": resize.reason,
        "predictedGain": resize.predicted_gain,
    }
    if resize.trial:
        entry["trial"] = True
    history: list[Mapping[str, Any]] = [*(status.get("resizes") or ()), entry][-MAX_RESIZES_KEPT:]
    return placement, history


def _pinned_node(pod: Mapping[str, Any]) -> str | None:
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return str(spec["nodeName"])
    affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    for term in required.get("nodeSelectorTerms") or ():
        for field in term.get("matchFields") or ():
            if field.get("key") == "metadata.name" and field.get("values"):
                return str(field["values"][0])
    return None


def _devices(pod: Mapping[str, Any]) -> int | None:
    containers = (pod.get("spec") or {}).get("containers") or ()
    limits = ((containers[0].get("resources") or {}).get("limits") or {}) if containers else {}
    return int(limits[GPU_RESOURCE]) if GPU_RESOURCE in limits else None


def stale_workers(
    job_name: str, placement: Allocation, own: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """This job's worker Pods the recorded placement no longer holds: beyond its workers (a
    shrink), on another node than their share (a move) or with another device count (a Pod's
    devices cannot change). Only names of the form the job's own workers have, so no other Pod
    is ever touched.

    Worker 0 hosts torchrun's rendezvous store: when it is stale, every worker is, so all
    restart from the checkpoint around the new worker 0 and the group is never split in two."""
    prefix = f"{job_name}-w"
    workers: dict[int, str] = {}
    for name in own:
        index = name[len(prefix) :]
        if name.startswith(prefix) and index.isdigit() and str(int(index)) == index:
            workers[int(index)] = name
    stale: list[int] = []
    for k, name in workers.items():
        pod = own[name]
        share = placement.shares[k] if k < len(placement.shares) else None
        if (
            share is None
            or _pinned_node(pod) not in (None, share.node)
            or _devices(pod) not in (None, share.devices)
        ):
            stale.append(k)
    if 0 in stale:
        stale = list(workers)
    return sorted(workers[k] for k in stale)


def progress_status(
    job: AcceleratorJob,
    status: Mapping[str, Any],
    prior: Mapping[Key, Prediction],
    planned: Mapping[Key, Prediction],
    progress: JobProgress,
) -> dict[str, Any]:
    """status.progress: what was measured of the job at its allocation, what the recommender
    predicted there, and what berth now plans with (the prior conditioned on the measured)."""
    held: Key = (str(status["placement"]["type"]), int(status["placement"]["count"]))
    out: dict[str, Any] = {"measuredAt": stamp(progress.at)}
    out["workLeft"] = "modelled" if measured_left(job, progress) is None else "measured"
    if progress.samples_done is not None:
        out["samplesDone"] = progress.samples_done
    if progress.counters:
        out["counters"] = dict(progress.counters)
    windows = [r for m in progress.measured if (m.type, m.count) == held for r in m.rates]
    out["measurements"] = sum(len(m.rates) for m in progress.measured)
    if windows:
        out["measuredThroughput"] = sum(windows) / len(windows)
    before = prior.get(held)
    if before is not None:
        out["predictedThroughput"] = before.throughput.value
        after = planned.get(held, before)
        out["plannedThroughput"] = after.throughput.value
        if after.throughput.provenance.uncertainty is not None:
            out["uncertainty"] = after.throughput.provenance.uncertainty
    return out
