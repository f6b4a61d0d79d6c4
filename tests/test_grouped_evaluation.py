"""Grouped folds (recommender/evaluation.py): a row is judged only by a fit that never saw its
group, and top-1 is judged on every (family, batch) measured on two or more (type, count)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pytest

from berth.core.profile import ProfileRecord
from berth.recommender import evaluation
from berth.recommender.evaluation import Answer, out_of_fold, summarise


def record(type_: str, rate: float, count: int = 1, family: str = "resnet50") -> ProfileRecord:
    return ProfileRecord(family, 64, type_, count, rate, None, f"src {type_}", "samples/s")


RECORDS = [record("t4", 100.0), record("a100", 400.0), record("v100", 250.0, count=2)]


def test_a_row_is_predicted_by_a_fit_that_never_saw_its_group() -> None:
    seen: list[set[str]] = []

    def fit(pool: Sequence[ProfileRecord]) -> Callable[[Sequence[ProfileRecord]], list[Answer]]:
        types = {r.accelerator for r in pool}
        seen.append(types)
        return lambda rows: [(0.0 if r.accelerator not in types else math.nan, None) for r in rows]

    answers = out_of_fold(RECORDS, evaluation.GROUPINGS["type"], fit)
    assert len(seen) == 3 and all(a is not None and a[0] == 0.0 for a in answers)


def test_a_perfect_predictor_has_no_error_full_coverage_and_every_top1() -> None:
    exact = [(math.log(r.throughput), 0.01) for r in RECORDS]
    s = summarise(RECORDS, evaluation.GROUPINGS["type"], exact)  # type: ignore[arg-type]
    assert s["median_mape_over_groups"] == pytest.approx(0.0)
    assert (s["coverage_90"], s["top1_groups"], s["top1_time"], s["top1_energy"]) == (1, 1, 1, 1)
    assert s["regret_time"] == s["regret_energy"] == 0.0


def test_top1_time_misses_when_the_slower_slot_is_predicted_faster() -> None:
    # One (family, batch) on three slots; the prediction swaps a100 and t4.
    swapped = [(math.log(400.0), None), (math.log(100.0), None), (math.log(250.0), None)]
    s = summarise(RECORDS, evaluation.GROUPINGS["type"], swapped)  # type: ignore[arg-type]
    assert (s["top1_groups"], s["top1_time"]) == (1, 0.0)
    assert s["regret_time"] == pytest.approx(1 - 100.0 / 400.0)


def test_an_unanswered_row_counts_against_the_share_answered_only() -> None:
    answers: list[Answer] = [(math.log(100.0), None), None, None]
    s = summarise(RECORDS, evaluation.GROUPINGS["type"], answers)
    assert s["answered"] == pytest.approx(1 / 3)
    assert s["median_mape_over_groups"] == pytest.approx(0.0)
