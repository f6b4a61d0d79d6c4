"""Job traces: the ITP traces with deadlines (ElasticFlow) and Microsoft's Philly trace (Pollux).

Both become TraceJobs (times in seconds from the trace's own clock), and a TraceJob becomes an
AcceleratorJob manifest, so the simulator schedules the very objects the operator parses.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TraceJob:
    id: str
    submitted_s: float  # seconds on the trace's clock
    gpus: int  # as the user asked in the source cluster
    duration_s: float  # as it ran there
    model: str | None = None  # ITP: model family named by the ElasticFlow authors
    iterations: int | None = None
    batch_size: int | None = None
    deadline_s: float | None = None  # absolute, on the same clock as submitted_s
    source: str = ""


class TraceError(ValueError):
    """A row that cannot be read; the message names file, line and field."""


def _rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as f:
        try:
            yield from enumerate(csv.DictReader(f), start=2)  # line 1 is the header
        except UnicodeDecodeError as exc:
            raise TraceError(f"{path}: not UTF-8 (byte {exc.start} of a block)") from None
        except csv.Error as exc:
            raise TraceError(f"{path}: not CSV: {exc}") from None


def _number(
    path: Path, line: int, row: dict[str, str], field: str, kind: type[float] | type[int]
) -> Any:
    try:
        value = kind(row[field])
    except (KeyError, TypeError, ValueError):
        raise TraceError(
            f"{path}:{line}: {field}={row.get(field)!r} is not a {kind.__name__}"
        ) from None
    if value < 0:
        raise TraceError(f"{path}:{line}: {field}={value} is negative")
    return value


def load_itp(path: Path) -> list[TraceJob]:
    """ElasticFlow's ITP traces: submission_time, deadline and duration in seconds, sorted by
    submission."""
    jobs = []
    for line, row in _rows(path):
        jobs.append(
            TraceJob(
                id=row["job_id"],
                submitted_s=_number(path, line, row, "submission_time", float),
                gpus=_number(path, line, row, "num_gpu", int),
                duration_s=_number(path, line, row, "duration", float),
                model=row["model_name"],
                iterations=_number(path, line, row, "num_iteration", int),
                batch_size=_number(path, line, row, "batch_size", int),
                deadline_s=_number(path, line, row, "deadline", float),
                source=f"{path.name}:{line}",
            )
        )
    return sorted(jobs, key=lambda j: (j.submitted_s, j.id))


def load_philly(path: Path) -> list[TraceJob]:
    """The Philly-derived trace: wall-clock timestamps become seconds after the first
    submission; no model, batch or deadline is known."""
    raw = []
    for line, row in _rows(path):
        try:
            stamp = datetime.strptime(row["timestamp"], "%Y-%m-%d %H:%M:%S")
        except (KeyError, TypeError, ValueError):
            raise TraceError(
                f"{path}:{line}: timestamp={row.get('timestamp')!r} is not a time"
            ) from None
        gpus = _number(path, line, row, "num_gpus", int)
        duration = _number(path, line, row, "duration", float)
        raw.append((stamp, line, gpus, duration))
    start = min(stamp for stamp, *_ in raw)
    jobs = [
        TraceJob(
            f"philly-{line}",
            (stamp - start).total_seconds(),
            gpus,
            duration,
            source=f"{path.name}:{line}",
        )
        for stamp, line, gpus, duration in raw
    ]
    return sorted(jobs, key=lambda j: (j.submitted_s, j.id))


def manifest_name(job: TraceJob) -> str:
    """A DNS-1035 name unique per trace id: "t-" and the id, lower case."""
    return "t-" + re.sub(r"[^a-z0-9-]", "-", job.id.lower())[:50]


def as_manifest(
    job: TraceJob,
    created: datetime | None = None,
    image: str = "berth.dev/trace-replay",
    up_to: int | None = None,
) -> dict[str, Any]:
    """The AcceleratorJob a trace job stands for: a training job of the trace's model, its work
    in iterations of its batch, its deadline as a duration from submission (`created`, when
    given, is the submission's wall-clock time). Any GPU type is allowed. The user's GPU count
    is the most it may get: count {min: 1, max: gpus}; baselines take the max as the user
    asked, berth may give fewer when that costs less energy and still meets the deadline. With
    `up_to`, the count is left to the scheduler as ElasticFlow leaves it: {min: 1, max: up_to},
    elastic."""
    workload: dict[str, Any] = {"kind": "training"}
    if job.model is not None:
        workload["model"] = job.model
    if job.iterations is not None and job.batch_size is not None:
        workload["batchSize"] = job.batch_size
        workload["totalWork"] = {"iterations": job.iterations}
    spec: dict[str, Any] = {
        "workload": workload,
        "accelerators": {"count": {"min": 1, "max": up_to or job.gpus}},
        "template": {"spec": {"containers": [{"name": "worker", "image": image}]}},
    }
    if up_to is not None and up_to > 1:
        spec["elastic"] = True
    if job.deadline_s is not None:
        spec["deadline"] = f"{max(job.deadline_s - job.submitted_s, 1):.0f}s"
    metadata: dict[str, Any] = {"name": manifest_name(job), "namespace": "trace"}
    if created is not None:
        metadata["creationTimestamp"] = created.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "berth.dev/v1alpha1",
        "kind": "AcceleratorJob",
        "metadata": metadata,
        "spec": spec,
    }
