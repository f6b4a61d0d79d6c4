"""Reading a job's progress back from Prometheus's answers (operator/measurements.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from berth.core.posterior import Measured
from berth.operator.measurements import PrometheusProgress

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


class Answers:
    """PrometheusConnect's two calls, answering what a test gives and recording the queries."""

    def __init__(self, done: list[dict[str, Any]], rates: list[dict[str, Any]]) -> None:
        self.done, self.rates = done, rates
        self.queries: list[str] = []

    def custom_query(self, query: str, params: Any = None, timeout: Any = None) -> Any:
        self.queries.append(query)
        return self.done

    def custom_query_range(
        self, query: str, start_time: datetime, end_time: datetime, step: str, params: Any = None,
        timeout: Any = None,
    ) -> Any:  # fmt: skip
        self.queries.append(query)
        return self.rates


def series(accelerator: str, world: str, *values: str) -> dict[str, Any]:
    return {"metric": {"accelerator": accelerator, "world_size": world},
            "values": [[i, v] for i, v in enumerate(values)]}  # fmt: skip


def test_windows_by_allocation_held_positive_finite_and_not_the_one_a_series_began_in() -> None:
    rates = [
        series("a100", "2", "50", "0", "120.5", "NaN", "119.5"),
        series("a100", "4", "9", "230"),
    ]
    got = PrometheusProgress(Answers([{"value": [0, "5000"]}], rates), 60).of(
        "ml", "train", NOW - timedelta(hours=1), NOW
    )
    assert got.samples_done == 5000.0
    assert got.measured == (Measured("a100", 2, (120.5, 119.5)), Measured("a100", 4, (230.0,)))


def test_a_counter_not_yet_scraped_leaves_work_left_unmeasured() -> None:
    got = PrometheusProgress(Answers([], []), 60).of("ml", "train", NOW - timedelta(hours=1), NOW)
    assert got.samples_done is None and got.measured == ()


def test_series_without_a_usable_allocation_label_are_ignored() -> None:
    rates = [
        series("", "2", "1", "10"),
        series("a100", "two", "1", "10"),
        series("a100", "0", "1", "10"),
    ]
    got = PrometheusProgress(Answers([], rates), 60).of("ml", "t", NOW - timedelta(hours=1), NOW)
    assert got.measured == ()


def test_the_job_is_selected_by_its_exact_quoted_namespace_and_name() -> None:
    answers = Answers([], [])
    PrometheusProgress(answers, 30).of('a"b', "c\\d", NOW - timedelta(minutes=5), NOW)
    assert all('{namespace="a\\"b",berth_job="c\\\\d"}' in q for q in answers.queries)
    assert "increase(" in answers.queries[0] and "[300s]" in answers.queries[0]
    assert "rate(" in answers.queries[1] and "[30s]" in answers.queries[1]
