"""Deadline admission, pure: is a job's deadline still reachable on this cluster, and with what?

ElasticFlow's minimum satisfactory share: of the allocations the cluster could ever hold (all its
devices of a type, busy or not), the one with the least device-seconds predicted to finish the
job's work by its deadline. When none can, the job is told so when it is admitted, not when the
deadline passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from berth.core.job import AcceleratorJob
from berth.core.prediction import Prediction


@dataclass(frozen=True)
class Admission:
    reachable: bool
    type: str
    count: int
    runtime_s: float
    message: str


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h"


def admission(
    job: AcceleratorJob,
    predictions: Mapping[tuple[str, int], Prediction],
    capacity: Mapping[str, int],
    budget_s: float | None,
) -> Admission | None:
    """None without a deadline, a known amount of work or any prediction to judge by."""
    samples = job.workload.total_samples
    if budget_s is None or samples is None:
        return None
    runs = [
        (t, c, samples / p.throughput.value)
        for (t, c), p in predictions.items()
        if c <= capacity.get(t, 0) and job.accelerators.allows(t) and p.throughput.value > 0
    ]
    if not runs:
        return None
    in_time = [r for r in runs if r[2] <= budget_s]
    if in_time:
        t, c, runtime = min(in_time, key=lambda r: (r[1] * r[2], r[2], r[0]))
        return Admission(
            True, t, c, runtime,
            f"reachable: the least allocation that meets it is {t} x{c} ({_hours(runtime)}, "
            f"{_hours(budget_s)} left)",
        )  # fmt: skip
    t, c, runtime = min(runs, key=lambda r: (r[2], r[1], r[0]))
    return Admission(
        False, t, c, runtime,
        f"unreachable: the fastest allocation this cluster holds, {t} x{c}, needs "
        f"{_hours(runtime)}, {_hours(runtime - budget_s)} past the deadline",
    )  # fmt: skip
