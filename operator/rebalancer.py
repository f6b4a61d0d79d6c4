"""One period of the elastic policy, applied: running jobs and the queue to `rebalance()`
(placement/elastic.py, the same the simulator runs), each resize written to the job's status
first (placement and a status.resizes entry, under the resourceVersion precondition); the
children controller then adds and deletes the workers that follow from it."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from berth.core.allocation import Allocation
from berth.core.job import AcceleratorJob
from berth.core.posterior import Prior
from berth.core.prediction import Key, Prediction
from berth.core.snapshot import ClusterSnapshot
from berth.core.validation import InvalidObject
from berth.operator import resizing, status
from berth.operator.events import Events
from berth.operator.forecasts import Forecasts
from berth.operator.kube import Conflict
from berth.operator.measurements import JobProgress, Measurements
from berth.operator.metrics import Metrics
from berth.operator.writer import StatusWriter
from berth.placement.elastic import RunningJob, Settings, WaitingJob, rebalance

log = logging.getLogger("berth.operator")
Placed = list[tuple[Mapping[str, Any], Allocation]]


class Rebalancer:
    def __init__(
        self,
        settings: Settings,
        writer: StatusWriter,
        events: Events,
        forecasts: Forecasts,
        metrics: Metrics,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float],
        measurements: Measurements | None = None,
    ) -> None:
        self.measurements = measurements
        self.settings, self.writer, self.events = settings, writer, events
        self.forecasts, self.metrics, self.clock, self.monotonic = (
            forecasts,
            metrics,
            clock,
            monotonic,
        )
        self.last = -math.inf  # monotonic
        # uid -> (the predictions kept for it, arranged to be conditioned)
        self.priors: dict[str, tuple[Mapping[Key, Prediction], Prior]] = {}

    def due(self) -> bool:
        if self.monotonic() - self.last < self.settings.period_s:
            return False
        self.last = self.monotonic()
        return True

    def apply(
        self,
        snapshot: ClusterSnapshot,
        placed: Placed,
        waiting: Sequence[Mapping[str, Any]],
        parse: Callable[[Mapping[str, Any]], AcceleratorJob | InvalidObject],
    ) -> Placed:
        """One period; the placements after the resizes it applied."""
        now = self.clock()
        running: list[RunningJob] = []
        by_uid = {}
        progress: dict[str, dict[str, Any]] = {}  # uid -> status.progress, when measured
        # 1. The running jobs as the policy sees them: measured where Prometheus knows them.
        for job, _ in placed:
            parsed = parse(job)
            current = self.writer.current(job)[1]
            if isinstance(parsed, InvalidObject):
                continue
            if not parsed.elastic and parsed.restart_s is None:
                continue  # rigid without the checkpoint contract: never moved
            if current.get("phase") != status.RUNNING:
                continue  # resized only once its workers run, never mid-start
            uid = job["metadata"]["uid"]
            found = self.forecasts.of_placed(uid, parsed, snapshot)
            measured = self.measure(job, current, now)
            planned = found
            if measured is not None:
                self.forecasts.learn(uid, parsed, measured.measured)
                planned = self.prior(uid, found).condition(measured.measured)
                progress[uid] = resizing.progress_status(parsed, current, found, planned, measured)
                self.observe(progress[uid])
            running.append(resizing.running_job(uid, parsed, current, planned, now, measured))
            by_uid[uid] = job
        if not running:
            return placed
        # 2. The queue, for the shrinks that admit waiting jobs.
        types = sorted(t for t in snapshot.by_type if t)
        queue = []
        for job in waiting:
            parsed = parse(job)
            if not isinstance(parsed, InvalidObject) and self.writer.allocation(job) is None:
                allowed = tuple(t for t in types if parsed.accelerators.allows(t))
                queue.append(WaitingJob(job["metadata"]["name"], parsed, allowed))
        # 3. Each resize written (with what was measured), then announced.
        changed: dict[str, Allocation] = {}
        for r in rebalance(snapshot, running, queue, now.timestamp(), self.settings):
            job = by_uid[r.id]
            current = self.writer.current(job)[1]
            placement, history = resizing.resized(current, r, now)
            was = current["placement"]["type"]
            to = f"x{r.to_count}" if r.type == was else f"{r.type} x{r.to_count}"
            message = (
                f"{was} x{r.from_count} -> {to} on {placement['nodeNames']}: "
                f"{r.reason} ({r.predicted_gain} predicted)"
            )
            update = status.Condition("Running", True, "Resized", message)
            written = self.writer.write(
                job, status.RESIZING, [update], now, placement, history, progress.pop(r.id, None)
            )
            if not written:
                continue
            changed[r.id] = Allocation.of(r.type, r.shares)
            self.metrics.resizes.inc()
            self.events.post(job, "Normal", "Resized", message)
        # 4. What was measured of the others; a conflict waits for the next period.
        for uid, fields in progress.items():
            with contextlib.suppress(Conflict):
                self.writer.write(by_uid[uid], status.RUNNING, [], now, progress=fields)
        return [(j, changed.get(j["metadata"]["uid"], p)) for j, p in placed]

    def forget_except(self, uids: set[str]) -> None:
        self.priors = {u: p for u, p in self.priors.items() if u in uids}

    def prior(self, uid: str, found: Mapping[Key, Prediction]) -> Prior:
        kept = self.priors.get(uid)
        if kept is None or kept[0] is not found:
            kept = self.priors[uid] = (found, Prior(found))
        return kept[1]

    def measure(
        self, job: Mapping[str, Any], current: Mapping[str, Any], now: datetime
    ) -> JobProgress | None:
        since = resizing.running_since(current)
        if self.measurements is None or since is None:
            return None
        meta = job["metadata"]
        try:
            last = current.get("progress")
            return self.measurements.of(meta["namespace"], meta["name"], since, now, last)
        except Exception as exc:  # Prometheus down or odd: work left is modelled this period
            self.metrics.measurement_failures.inc()
            log.warning("progress of %s/%s not measured: %s", meta["namespace"], meta["name"], exc)
            return None

    def observe(self, progress: Mapping[str, Any]) -> None:
        self.metrics.measured_at.set(self.clock().timestamp())
        measured, predicted = (
            progress.get("measuredThroughput"),
            progress.get("predictedThroughput"),
        )
        if measured and predicted:
            self.metrics.measured_ratio.observe(measured / predicted)
