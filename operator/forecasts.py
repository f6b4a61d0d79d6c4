"""Where the operator's predictions come from: the recommender behind a breaker, the fallbacks,
and each placed job's predictions kept for the elastic policy (asked again after a restart)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from typing import Any

from berth.core import tables
from berth.core.job import AcceleratorJob
from berth.core.posterior import KIN_NOISE, Measured, Prior
from berth.core.prediction import Prediction
from berth.core.snapshot import ClusterSnapshot
from berth.operator import predictions
from berth.placement.fallback import SpecTransfer
from berth.placement.roofline import Roofline
from berth.recommender.client import RecommenderUnavailable

KIN_JOBS = 8  # jobs of one (model, batch) whose measurements are kept for the next ones
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
        # (model, batch) -> uid -> the latest windows measured of a job of that kind, for
        # KIN_JOBS jobs: a new one's prior is conditioned on them (rebuilt after a restart as
        # the running jobs are measured again)
        self.kin: dict[tuple[str, int], dict[str, tuple[Measured, ...]]] = {}

    def forget_except(self, uids: set[str]) -> None:
        self.kept = {k: v for k, v in self.kept.items() if k in uids}

    def predict_all(
        self, jobs: Sequence[AcceleratorJob], found: predictions.Devices, pool: Executor
    ) -> list[predictions.Predicted]:
        """Every job's predictions on the cluster's devices (`found`), concurrently; jobs that
        ask the recommender the same question (a sweep: one model, batch, precision and
        objective) share one call."""
        ask, skipped = self._guarded()
        shared = None if ask is None else _shared(ask)
        return list(pool.map(lambda job: self._predict(job, found, shared, skipped), jobs))

    def predict(self, job: AcceleratorJob, snapshot: ClusterSnapshot) -> predictions.Predicted:
        return self._predict(job, predictions.devices(snapshot), *self._guarded())

    def _predict(
        self,
        job: AcceleratorJob,
        devices: predictions.Devices,
        ask: predictions.Ask | None,
        skipped: str,
    ) -> predictions.Predicted:
        rows = predictions.offers(job, devices)
        found = predictions.predict(job, rows, ask, self.spec_transfer, self.roofline, skipped)
        kind = _kind(job)
        jobs = self.kin.get(kind, {}) if kind is not None else {}
        seen = [m for measured in jobs.values() for m in measured]
        if not seen or not found.predictions:
            return found
        n = sum(len(m.rates) for m in seen)
        note = f", conditioned on {n} windows measured of {job.workload.model} jobs"
        return predictions.Predicted(
            Prior(found.predictions).condition(seen, KIN_NOISE),
            {k: s + note for k, s in found.sources.items()},
            found.degraded,
        )

    def learn(self, uid: str, job: AcceleratorJob, measured: Sequence[Measured]) -> None:
        """Keep what was last measured of a running job for the next jobs of its kind."""
        kind = _kind(job)
        if kind is None or not measured:
            return
        jobs = self.kin.setdefault(kind, {})
        jobs.pop(uid, None)
        jobs[uid] = tuple(measured)
        while len(jobs) > KIN_JOBS:
            del jobs[next(iter(jobs))]  # the longest unmeasured

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


def _shared(ask: predictions.Ask) -> predictions.Ask:
    """`ask`, called once per distinct question however many threads ask it at once; the
    others wait for that call's answer (or its error)."""
    lock = threading.Lock()
    calls: dict[str, Future[dict[str, Any]]] = {}

    def once(job: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
        question = json.dumps([job, rows], sort_keys=True)
        with lock:
            call = calls.get(question)
            mine = call is None
            if call is None:
                call = calls[question] = Future()
        if mine:
            try:
                call.set_result(ask(job, rows))
            except Exception as exc:
                call.set_exception(exc)
        return call.result()

    return once


def _kind(job: AcceleratorJob) -> tuple[str, int] | None:
    w = job.workload
    return None if w.model is None or w.batch_size is None else (w.model, w.batch_size)
