"""gavel-like: heterogeneity-aware, energy-blind. The user's count on the type with the best
throughput for this job (Gavel's profiled throughput matrix), packed onto the fewest nodes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from berth.core.job import AcceleratorJob
from berth.core.prediction import Prediction
from berth.core.snapshot import ClusterSnapshot
from berth.placement.plan import Plan
from berth.placement.rigid import packed, rigid_plan


def gavel_like(
    snapshot: ClusterSnapshot,
    job: AcceleratorJob,
    predictions: Mapping[tuple[str, int], Prediction],
    now: datetime,
) -> Plan:
    return rigid_plan(
        snapshot,
        job,
        predictions,
        now,
        packed,
        lambda o: (-o.prediction.throughput.value,),
    )
