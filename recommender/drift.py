"""Drift: how far the served model's predictions are from what placed jobs measured (pure).

The recommender serves it as a metric (`serve-recommender --drift-prometheus URL`); when it
climbs, retrain (`berth train --from-prometheus URL`, the chart's CronJob).
"""

from __future__ import annotations

from collections.abc import Sequence

from berth.core.catalog import DEFAULT_VARIANT
from berth.core.prediction import Prediction
from berth.profiler.collector import JobRun
from berth.recommender.model import Model


def throughput_mape(pairs: Sequence[tuple[float, float]]) -> float | None:
    """Mean |predicted - measured| / measured over (predicted, measured) pairs."""
    if not pairs:
        return None
    return sum(abs(p - m) / m for p, m in pairs) / len(pairs)


def pairs(model: Model, runs: Sequence[JobRun]) -> list[tuple[float, float]]:
    """(predicted, measured) samples/s for each run, on the type's default variant."""
    known = [r for r in runs if r.accelerator in DEFAULT_VARIANT]
    predicted: list[Prediction] = model.predict_many(
        [(r.family, r.batch_size, DEFAULT_VARIANT[r.accelerator], r.world_size) for r in known]
    )
    return [(p.throughput.value, r.throughput) for p, r in zip(predicted, known, strict=True)]
