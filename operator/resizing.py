"""From recorded jobs to the elastic policy's inputs and from its resizes to status, pure.

The policy itself is placement/elastic.py, the same the simulator runs. Here a running job's
recorded placement and resizes become a RunningJob, and a Resize becomes the new
status.placement and a status.resizes entry. Work left is MODELLED from the predicted rate of
each allocation since the job started running, until measured progress is fed back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from berth.core.job import AcceleratorJob
from berth.operator.workers import worker_name
from berth.placement.elastic import Resize, RunningJob
from berth.placement.plan import Prediction, deadline_budget

MAX_RESIZES_KEPT = 16  # status.resizes keeps the latest


def _time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _since_running(status: Mapping[str, Any]) -> float | None:
    for c in status.get("conditions") or ():
        if c.get("type") == "Running" and c.get("status") == "True":
            return _time(c["lastTransitionTime"])
    return None


def remaining_samples(
    job: AcceleratorJob,
    status: Mapping[str, Any],
    scaling: Mapping[int, Prediction],
    now_s: float,
) -> float | None:
    """Work left, MODELLED: total work less the predicted rate of each allocation over the
    time it held, from when the workers first ran; None without a known amount of work."""
    total = job.workload.total_samples
    started = _since_running(status)
    if total is None or started is None:
        return None
    placement = status["placement"]
    resizes = [r for r in status.get("resizes") or () if "time" in r]
    count = int(resizes[0]["fromCount"]) if resizes else int(placement["count"])
    done, since = 0.0, started
    for r in resizes:
        at = max(_time(r["time"]), since)
        done += _rate(scaling, count) * (at - since)
        count, since = int(r["toCount"]), at
    done += _rate(scaling, count) * max(now_s - since, 0.0)
    return max(total - done, 0.0)


def _rate(scaling: Mapping[int, Prediction], count: int) -> float:
    p = scaling.get(count)
    return 0.0 if p is None else p.throughput.value


def running_job(
    uid: str,
    job: AcceleratorJob,
    status: Mapping[str, Any],
    scaling: Mapping[int, Prediction],
    now: datetime,
) -> RunningJob:
    placement = status["placement"]
    shares = tuple((str(n["name"]), int(n["count"])) for n in placement["nodes"])
    resizes = status.get("resizes") or ()
    last = _time(resizes[-1]["time"]) if resizes else -math.inf
    remaining = remaining_samples(job, status, scaling, now.timestamp())
    deadline = deadline_budget(job, now)  # None without known work: no remaining to judge by
    return RunningJob(uid, job, str(placement["type"]), shares, remaining, deadline, last, scaling)


def resized(
    status: Mapping[str, Any], resize: Resize, now: datetime
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The new status.placement and status.resizes for `resize`."""
    placement = dict(status["placement"])
    placement |= {
        "type": resize.type,
        "count": resize.to_count,
        "nodes": [{"name": n, "count": c} for n, c in resize.shares],
        "nodeNames": ",".join(dict.fromkeys(n for n, _ in resize.shares)),
    }
    entry = {
        "time": now.isoformat().replace("+00:00", "Z"),
        "fromType": status["placement"]["type"],
        "toType": resize.type,
        "fromCount": resize.from_count,
        "toCount": resize.to_count,
        "reason": resize.reason,
        "predictedGain": resize.predicted_gain,
    }
    history = [*(status.get("resizes") or ()), entry][-MAX_RESIZES_KEPT:]
    return placement, history


def surplus_workers(
    job_name: str, workers: int, own: Mapping[str, Mapping[str, Any]]
) -> Sequence[str]:
    """This job's worker Pods beyond its recorded workers (left by a shrink): only names of
    the form the job's own workers have, so no other Pod is ever touched."""
    keep = {worker_name(job_name, k) for k in range(workers)}
    prefix = f"{job_name}-w"
    return sorted(
        n for n in own if n not in keep and n.startswith(prefix) and n[len(prefix) :].isdigit()
    )
