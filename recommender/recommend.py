"""Recommendation, pure: rank (accelerator, count) candidates for a job from predictions.

The recommender knows devices, not nodes: joules per sample here are device power only (the
placement adds the idle power of the nodes it keeps awake). A deadline is a constraint; the
objective ranks what meets it; each loser says why it lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from berth.core.job import Objective
from berth.core.prediction import Prediction
from berth.placement.score import objective_scores


@dataclass(frozen=True)
class Candidate:
    accelerator: str  # the name the caller gave
    type: str
    count: int


@dataclass(frozen=True)
class Ranked:
    candidate: Candidate
    prediction: Prediction
    joules_per_sample: float
    runtime_s: float | None
    meets_deadline: bool | None
    score: float
    reason: str | None  # why it is not the first; None for the first


def rank(
    candidates: Sequence[Candidate],
    predictions: Sequence[Prediction],
    objective: Objective,
    total_samples: int | None,
    deadline_s: float | None,
) -> list[Ranked]:
    rows = []
    for c, p in zip(candidates, predictions, strict=True):
        rate = p.throughput.value
        joules = c.count * p.device_watts.value / rate
        runtime = None if total_samples is None else total_samples / rate
        meets = None if deadline_s is None or runtime is None else runtime <= deadline_s
        rows.append((c, p, joules, runtime, meets))
    if not rows:
        return []
    scores = objective_scores(
        [r[2] for r in rows], [1 / r[1].throughput.value for r in rows], objective
    )
    order = sorted(
        zip(scores, rows, strict=True),
        key=lambda sr: (sr[1][4] is False, sr[0], sr[1][0].type, sr[1][0].count),
    )
    best_score, best = order[0][0], order[0][1]
    out = []
    for i, (score, (c, p, joules, runtime, meets)) in enumerate(order):
        reason = None
        if i:
            reason = _why(objective, score, best_score, joules, best[2], p, best[1], meets)
        out.append(Ranked(c, p, joules, runtime, meets, score, reason))
    return out


def _why(
    objective: Objective,
    score: float,
    best_score: float,
    joules: float,
    best_joules: float,
    p: Prediction,
    best: Prediction,
    meets: bool | None,
) -> str:
    if meets is False:
        return "misses the deadline"
    kind = objective.kind.value
    if kind == "energy":
        return f"{joules:.4g} J/sample vs {best_joules:.4g}"
    if kind == "time":
        return f"{p.throughput.value:.4g} samples/s vs {best.throughput.value:.4g}"
    return f"balanced score {score:.3f} vs {best_score:.3f}"
