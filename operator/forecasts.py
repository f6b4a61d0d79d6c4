"""Where the operator's predictions come from: the recommender behind a breaker, the fallbacks,
and each placed job's predictions kept for the elastic policy (asked again after a restart)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from berth.core import tables
from berth.core.job import AcceleratorJob
from berth.core.prediction import Prediction
from berth.core.snapshot import ClusterSnapshot
from berth.operator import predictions
from berth.placement.fallback import SpecTransfer
from berth.placement.roofline import Roofline
from berth.recommender.client import RecommenderUnavailable

BREAKER_S = 10.0  # after a failed call, skip the recommender this long (no timeout per job)


class Forecasts:
    def __init__(
        self, ask: predictions.Ask | None, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.ask, self.monotonic = ask, monotonic
        self.spec_transfer = SpecTransfer(tables.read()[0])
        self.roofline = Roofline()
        self.breaker_until = 0.0
        self.breaker_reason = ""
        self.kept: dict[str, dict[tuple[str, int], Prediction]] = {}  # uid -> (type, count) ->

    def forget_except(self, uids: set[str]) -> None:
        self.kept = {k: v for k, v in self.kept.items() if k in uids}

    def predict(self, job: AcceleratorJob, snapshot: ClusterSnapshot) -> predictions.Predicted:
        rows = predictions.offers(job, snapshot)
        ask, skipped = self._guarded()
        return predictions.predict(job, rows, ask, self.spec_transfer, self.roofline, skipped)

    def of_placed(
        self, uid: str, job: AcceleratorJob, snapshot: ClusterSnapshot
    ) -> dict[tuple[str, int], Prediction]:
        """The job's predictions on every allowed (type, count): kept from placement, asked
        again after a restart."""
        if uid not in self.kept:
            self.kept[uid] = dict(self.predict(job, snapshot).predictions)
        return self.kept[uid]

    def _guarded(self) -> tuple[predictions.Ask | None, str]:
        """The recommender call, breaker-guarded, or None and the reason it is not asked."""
        if self.ask is None:
            return None, "no recommender configured"
        if self.monotonic() < self.breaker_until:
            return None, f"recommender skipped for {BREAKER_S:g} s after: {self.breaker_reason}"
        ask = self.ask

        def guarded(job: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
            try:
                return ask(job, rows)
            except RecommenderUnavailable as exc:
                self.breaker_until = self.monotonic() + BREAKER_S
                self.breaker_reason = str(exc)
                raise

        return guarded, ""
