"""Rank feasible placements by the job's objective; lower scores are better."""

from __future__ import annotations

from collections.abc import Sequence

from berth.core.job import Objective


def objective_scores(
    joules_per_sample: Sequence[float], seconds_per_sample: Sequence[float], objective: Objective
) -> list[float]:
    """energy: J/sample. time: s/sample (runtime, for a fixed amount of work). balanced: each
    normalised by the best candidate's, weighted by the objective's energy weight, so 1.0 is a
    candidate best at both."""
    w = objective.energy_weight
    if w == 1.0:
        return list(joules_per_sample)
    if w == 0.0:
        return list(seconds_per_sample)
    best_j, best_s = min(joules_per_sample), min(seconds_per_sample)
    return [
        w * j / best_j + (1 - w) * s / best_s
        for j, s in zip(joules_per_sample, seconds_per_sample, strict=True)
    ]
