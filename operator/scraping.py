"""A running job's progress read from its workers' own metrics endpoints, for a cluster without
Prometheus: every Running worker pod whose container sets BERTH_METRICS_PORT (the progress
contract, profiler/progress.py) is scraped at its pod IP every `interval_s`, off the decision
path, and the rebalancer's questions are answered from what was kept.

Counted as Prometheus's increase() counts: a reading below a series' last is a restart (the
counter began again at zero); a series is the pod (by uid, so a worker made anew under its old
name counts from zero) and its labels. Windows as PrometheusProgress makes them: the rate over
at least `window_s` between rounds in which every worker of the job answered under one (type,
count), without the first window of each such stretch (starting workers read low).

Samples done are counted on from the job's status, not from memory: each period's status
write keeps samples done and each series' last reading (status.progress.counters), and the
next period adds what each series did since (all of a series new since, or one that began
again). So a restarted operator, or a standby that takes over, counts on from what the last
writer wrote; what a series did between that write and a restart of its own is the one thing
lost. The windows live in memory: a new operator has none until it has scraped one.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from berth.core.posterior import Measured
from berth.operator.informer import Slim
from berth.operator.measurements import WINDOWS, JobProgress, counter_value
from berth.operator.workers import LABEL_JOB
from berth.profiler.progress import METRIC

log = logging.getLogger("berth.operator")
MAX_BYTES = 1 << 20  # a worker's /metrics answer read at most; the counter needs a few lines
TIMEOUT_S = 2.0
PARALLEL = 16  # scrapes in flight at once


@dataclass(frozen=True)
class Reading:
    """One counter series of one worker, as scraped."""

    series: str  # "<pod uid>/<type>/<count>"
    samples: float
    type: str
    count: int


@dataclass
class _Stretch:
    """Consecutive complete rounds under one (type, count) and one set of series."""

    key: tuple[str, int]
    series: frozenset[str]
    t: float  # where the open window began
    total: float
    windows: int = 0  # windows closed so far


@dataclass
class Counted:
    """One job's readings, fed with its rounds in time order, and its windows. Pure: no clock,
    no I/O."""

    window_s: float
    last: dict[str, float] = field(default_factory=dict)  # each series' latest reading
    stretch: _Stretch | None = None
    rates: dict[tuple[str, int], deque[float]] = field(default_factory=dict)

    def add(self, t: float, readings: Sequence[Reading], complete: bool) -> None:
        """A round: `complete` when every worker of the job answered."""
        restarted = any(r.samples < self.last.get(r.series, 0.0) for r in readings)
        got = {r.series: r.samples for r in readings}
        # A series missing from an incomplete round is still there: keep its last reading.
        self.last = got if complete else self.last | got
        if not complete or not readings:
            return
        keys = {(r.type, r.count) for r in readings}
        if len(keys) != 1 or restarted:
            self.stretch = None  # mid-resize, or a worker began again: a new stretch after it
            return
        (key,) = keys
        series = frozenset(got)
        total = sum(got.values())
        s = self.stretch
        if s is None or s.key != key or s.series != series:
            self.stretch = _Stretch(key, series, t, total)
            return
        if t - s.t < self.window_s:
            return
        rate = (total - s.total) / (t - s.t)
        if s.windows > 0 and rate > 0:
            self.rates.setdefault(key, deque(maxlen=WINDOWS)).append(rate)
        s.windows, s.t, s.total = s.windows + 1, t, total

    def done(self, progress: Mapping[str, Any] | None) -> float:
        """Samples done: the status's, plus what each series did since it was written."""
        written = (progress or {}).get("counters")
        if not isinstance(written, Mapping):
            return sum(self.last.values())  # never counted here: all the workers have done
        base = (progress or {}).get("samplesDone")
        out = float(base) if isinstance(base, int | float) else 0.0
        for series, value in self.last.items():
            was = written.get(series)
            out += value - was if isinstance(was, int | float) and value >= was else value
        return out

    def measured(self) -> tuple[Measured, ...]:
        return tuple(Measured(t, c, tuple(r)) for (t, c), r in sorted(self.rates.items()) if r)


@dataclass(frozen=True)
class Target:
    namespace: str
    job: str
    uid: str
    url: str


def targets(pods: Iterable[Slim]) -> list[Target]:
    """Every Running berth worker that serves the progress counter, from the pod cache."""
    out = []
    for pod in pods:
        meta, status = pod["metadata"], pod["status"]
        job = meta["labels"].get(LABEL_JOB)
        ip = status.get("podIP")
        if job is None or status.get("phase") != "Running" or not ip or not meta.get("uid"):
            continue
        ports = [e["value"] for c in pod["spec"]["containers"] for e in c.get("env") or ()]
        if ports and str(ports[0]).isdigit() and 0 < int(ports[0]) < 65536:
            host = f"[{ip}]" if ":" in ip else ip
            url = f"http://{host}:{int(ports[0])}/metrics"
            out.append(Target(meta["namespace"] or "", job, meta["uid"], url))
    return out


def readings(text: str, job: str, uid: str) -> list[Reading]:
    """The job's counter series in a worker's /metrics text; ValueError if it is not text
    exposition. Series of another job, without a type or world size, or not finite and
    non-negative, are not the contract's and are skipped."""
    out = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name != f"{METRIC}_total" or s.labels.get("berth_job") != job:
                continue
            type_id, world = s.labels.get("accelerator", ""), s.labels.get("world_size", "")
            value = counter_value(s.value)
            if value is not None and type_id and world.isdigit() and int(world) > 0:
                out.append(Reading(f"{uid}/{type_id}/{world}", value, type_id, int(world)))
    return out


def fetch(url: str, timeout_s: float) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as answer:
        body: bytes = answer.read(MAX_BYTES + 1)
    if len(body) > MAX_BYTES:
        raise ValueError(f"more than {MAX_BYTES} bytes")
    return body.decode("utf-8")


class WorkerScraper:
    """Measurements (operator/measurements.py) from the workers themselves."""

    def __init__(
        self,
        pods: Callable[[], Iterable[Slim]],
        window_s: float,
        interval_s: float | None = None,
        get: Callable[[str, float], str] = fetch,
        clock: Callable[[], float] = time.time,
        failed: Callable[[], object] = lambda: None,
    ) -> None:
        self.pods, self.window_s, self.get, self.clock = pods, window_s, get, clock
        self.failed = failed  # called per worker that did not answer (a metric)
        # Four rounds a window, as Prometheus's 15 s scrapes fill the default 60 s window.
        self.interval_s = interval_s or min(max(window_s / 4, 1.0), 15.0)
        self.counts: dict[tuple[str, str], Counted] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.pool = ThreadPoolExecutor(PARALLEL, thread_name_prefix="berth-scrape")
        self.thread = threading.Thread(target=self._run, name="berth-scraper", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self.stopping.wait(self.interval_s):
            try:
                self.round()
            except Exception:  # keep scraping: one bad round is one missed window
                log.exception("scraping the workers' progress counters failed")

    def round(self) -> None:
        """Scrape every worker once, and count what answered by job."""
        found = targets(self.pods())
        answers = list(self.pool.map(self._one, found))
        by_job: dict[tuple[str, str], tuple[list[float], list[Reading], list[bool]]] = {}
        for target, (t, got) in zip(found, answers, strict=True):
            times, kept, answered = by_job.setdefault((target.namespace, target.job), ([], [], []))
            answered.append(got is not None)
            if got is not None:
                times.append(t)
                kept.extend(got)
        with self.lock:
            for key, (times, kept, answered) in by_job.items():
                if times:
                    count = self.counts.setdefault(key, Counted(self.window_s))
                    count.add(sum(times) / len(times), kept, all(answered))
            for key in set(self.counts) - set(by_job):
                del self.counts[key]  # no worker Running: its status keeps the count

    def _one(self, target: Target) -> tuple[float, list[Reading] | None]:
        try:
            text = self.get(target.url, TIMEOUT_S)
            return self.clock(), readings(text, target.job, target.uid)
        except Exception as exc:  # a worker that does not answer, or not in the contract's words
            self.failed()
            log.debug("scraping %s (%s/%s): %s", target.url, target.namespace, target.job, exc)
            return self.clock(), None

    def of(
        self,
        namespace: str,
        name: str,
        since: datetime,
        now: datetime,
        last: Mapping[str, Any] | None = None,
    ) -> JobProgress | None:
        with self.lock:
            count = self.counts.get((namespace, name))
            if count is None:
                return None  # no worker read yet, or none serves the counter
            counters = tuple(sorted(count.last.items()))
            return JobProgress(count.done(last), count.measured(), now, counters)
