"""eelas-like: EELAS's greedy energy efficiency. The user's count on the type with the best
throughput per device watt (the GPU form of MIPS per watt), packed onto the fewest nodes, awake
ones first. Unlike berth it neither chooses the count nor charges idle power."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from berth.core.job import AcceleratorJob
from berth.core.prediction import Prediction
from berth.core.snapshot import ClusterSnapshot
from berth.placement.plan import Option, Plan
from berth.placement.rigid import packed, rigid_plan


def _per_watt(o: Option) -> float:
    return o.prediction.throughput.value / (o.prediction.device_watts.value * o.count)


def eelas_like(
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
        lambda o: (-_per_watt(o),),
    )
