"""What a running job has really done, from its progress counter in Prometheus (the contract of
profiler/progress.py: berth_job_samples_total, labelled with the job, its accelerator type and
its world size, summed over the job's pods).

Prometheus keeps the history, so an operator that restarts asks again and loses nothing. Two
queries per job and period: the samples done since the job first ran (increase() counts across
the counter resets every resize's restart makes), and the job's rate in consecutive windows of
`window_s`, by the (type, count) it held in each.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from berth.core.posterior import Measured
from berth.profiler.progress import METRIC

WINDOWS = 8  # the latest windows per (type, count) kept: more move the posterior no further


@dataclass(frozen=True)
class JobProgress:
    samples_done: float | None  # None: the counter has not been scraped yet
    measured: tuple[Measured, ...]  # rates per window, by the (type, count) held in each
    at: datetime
    # (series, last reading) where berth counts itself (scraping.py), kept in the status
    counters: tuple[tuple[str, float], ...] = ()


class Query(Protocol):
    """PrometheusConnect's methods this uses."""

    def custom_query(self, query: str, params: Any = None, timeout: Any = None) -> Any: ...

    def custom_query_range(
        self,
        query: str,
        start_time: datetime,
        end_time: datetime,
        step: str,
        params: Any = None,
        timeout: Any = None,
    ) -> Any: ...


class Measurements(Protocol):
    def of(
        self,
        namespace: str,
        name: str,
        since: datetime,
        now: datetime,
        last: Mapping[str, Any] | None = None,
    ) -> JobProgress | None:
        """`last`: the job's status.progress as last written. None: nothing is known of the job
        yet (its status is left as it is)."""
        ...


def _selector(namespace: str, name: str) -> str:
    def quoted(v: str) -> str:
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return f"{METRIC}_total{{namespace={quoted(namespace)},berth_job={quoted(name)}}}"


def counter_value(value: Any) -> float | None:
    """A counter's value as a number: finite and non-negative, else None."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and x >= 0 else None


class PrometheusProgress:
    def __init__(self, prom: Query, window_s: float, timeout_s: float = 5.0) -> None:
        self.prom, self.window_s, self.timeout_s = prom, window_s, timeout_s

    @staticmethod
    def connect(url: str, window_s: float) -> PrometheusProgress:
        from prometheus_api_client import PrometheusConnect

        return PrometheusProgress(PrometheusConnect(url=url, disable_ssl=True), window_s)

    def of(
        self,
        namespace: str,
        name: str,
        since: datetime,
        now: datetime,
        last: Mapping[str, Any] | None = None,
    ) -> JobProgress:
        series = _selector(namespace, name)
        ran_s = max((now - since).total_seconds(), 0.0)
        done = None
        if ran_s >= 1:
            query = f"sum(increase({series}[{ran_s:.0f}s]))"
            answer = self.prom.custom_query(query, timeout=self.timeout_s)
            if answer:
                done = counter_value(answer[0]["value"][1])
        step = timedelta(seconds=self.window_s)
        # The newest window ends half a window ago (at least one scrape interval): a window
        # ending now misses the scrapes Prometheus has not taken in yet, and reads low.
        end = now - step / 2
        start = max(since + step, end - (WINDOWS - 1) * step)
        measured: list[Measured] = []
        if start <= end:
            rates = self.prom.custom_query_range(
                f"sum by (accelerator, world_size) (rate({series}[{self.window_s:.0f}s]))",
                start,
                end,
                f"{self.window_s:.0f}s",
                timeout=self.timeout_s,
            )
            measured = _windows(rates)
        return JobProgress(done, tuple(measured), now)


def _windows(answer: Sequence[dict[str, Any]]) -> list[Measured]:
    """Non-overlapping windows (the step is the window), positive rates only, without each
    series' oldest window: a window the series began in (workers just started, or restarted
    by a resize) reads low, Prometheus extrapolating its start; with it goes one good window
    of a long series."""
    out = []
    for s in answer:
        labels = s.get("metric") or {}
        try:
            count = int(labels.get("world_size", ""))
        except ValueError:
            continue
        type_id = str(labels.get("accelerator") or "")
        values = (s.get("values") or ())[1:]
        rates = [r for _, v in values if (r := counter_value(v)) is not None and r > 0]
        if type_id and count > 0 and rates:
            out.append(Measured(type_id, count, tuple(rates[-WINDOWS:])))
    return out
