"""The Prometheus collector: measured jobs as profile records, from PromQL answers.

A job's work is the berth_job_samples_total counter its workers serve (see progress.py); its
power is the GPU metrics of the same pods, dcgm-exporter's or berth exporter's (same names).
One record per (job, family, batch size, accelerator type, world size): a resized job yields
one record per size it ran at. Throughput sums the pods' rates; power per device is the energy
counter's rise over the span where there is one, else the mean power reading.
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from berth.core.catalog import resolve
from berth.core.profile import ProfileRecord
from berth.profiler.progress import LABELS

KEY = ("namespace", *LABELS)  # one job run: its namespace and the progress counter's labels

Series = tuple[Mapping[str, str], list[tuple[float, float]]]  # labels, (time, value) points
# Jobs are found with a range query at a coarse step (at most 5 min, within Prometheus's
# lookback, so no series is missed), then measured on their raw samples.
MAX_STEP_S = 300.0
POINTS = 1000


class Query(Protocol):
    """What the collector asks of Prometheus (PrometheusConnect's methods)."""

    def custom_query_range(
        self, query: str, start_time: datetime, end_time: datetime, step: str
    ) -> list[dict[str, Any]]: ...

    def custom_query(self, query: str, params: dict[str, Any] | None = None) -> Any: ...


@dataclass(frozen=True)
class JobRun:
    namespace: str
    job: str
    family: str
    batch_size: int
    accelerator: str
    world_size: int
    pods: tuple[str, ...]
    start: float
    end: float
    samples_done: float
    throughput: float  # samples/s, summed over pods
    watts_per_device: float | None
    power_from: str
    gpu_util_pct: float | None

    def record(self, url: str) -> ProfileRecord:
        when = datetime.fromtimestamp(self.start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return ProfileRecord(
            family=self.family,
            batch_size=self.batch_size,
            accelerator=self.accelerator,
            count=self.world_size,
            throughput=self.throughput,
            watts_per_device=self.watts_per_device,
            source=f"prometheus {url} {self.namespace}/{self.job} from {when} "
            f"for {self.end - self.start:.0f} s",
            conversion="sum over pods of the rise of berth_job_samples_total / span; "
            f"W from {self.power_from}",
        )


def increase(points: Sequence[tuple[float, float]]) -> float:
    """A counter's rise over the points, across resets (a restarted worker starts at 0)."""
    total = 0.0
    for (_, a), (_, b) in itertools.pairwise(points):
        total += b - a if b >= a else b
    return total


def _series(answer: Iterable[Mapping[str, Any]]) -> list[Series]:
    return [(dict(s["metric"]), [(float(t), float(v)) for t, v in s["values"]]) for s in answer]


def _key(labels: Mapping[str, str]) -> tuple[str, ...] | None:
    key = tuple(labels.get(k, "") for k in KEY)
    return key if all(key) and labels.get("pod") else None


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def selector(equal: Mapping[str, str], regex: Mapping[str, str] | None = None) -> str:
    """A PromQL label selector: `name="value"` for `equal`, `name=~"value"` for `regex`."""
    matchers = [f'{k}="{_quote(v)}"' for k, v in equal.items()]
    matchers += [f'{k}=~"{_quote(v)}"' for k, v in (regex or {}).items()]
    return "{" + ",".join(matchers) + "}"


def pod_selector(namespace: str, pods: Iterable[str]) -> str:
    alternatives = "|".join(re.escape(p) for p in sorted(pods))
    return selector({"namespace": namespace}, {"pod": alternatives})


class Collector:
    def __init__(self, prom: Query, url: str, step_s: float = 15.0) -> None:
        self.prom, self.url, self.step_s = prom, url, step_s

    def _range(self, query: str, start: float, end: float) -> list[Series]:
        step = min(max(self.step_s, (end - start) / POINTS), MAX_STEP_S)
        start = end - math.ceil((end - start) / step) * step  # `end` itself is a step
        return _series(
            self.prom.custom_query_range(
                query,
                datetime.fromtimestamp(start, UTC),
                datetime.fromtimestamp(end, UTC),
                f"{step:g}s",
            )
        )

    def _raw(self, selector: str, start: float, end: float) -> list[Series]:
        """Every sample scraped between start and end: a range vector at `end`."""
        window = max(int(end - start) + 1, 1)
        return _series(self.prom.custom_query(f"{selector}[{window}s]", params={"time": end}))

    def runs(self, start: float, end: float, namespace: str | None = None) -> list[JobRun]:
        """Every job whose workers reported progress between start and end (unix seconds)."""
        where = selector({"namespace": namespace}) if namespace else ""
        found: set[tuple[str, ...]] = set()
        for labels, _ in self._range(f"berth_job_samples_total{where}", start, end):
            key = _key(labels)
            if key is not None:
                found.add(key)
        runs = []
        for key in sorted(found):
            this_run = f"berth_job_samples_total{selector(dict(zip(KEY, key, strict=True)))}"
            series = [(lab, p) for lab, p in self._raw(this_run, start, end) if len(p) >= 2]
            if series and (run := self._run(key, series)):
                runs.append(run)
        return runs

    def _run(self, key: tuple[str, ...], series: list[Series]) -> JobRun | None:
        namespace, job, family, batch, accelerator, world = key
        kind = resolve(accelerator)
        if kind.type is None or not batch.isdigit() or not world.isdigit():
            return None  # not a run berth can learn from; the label says what is wrong
        rate = sum(increase(p) / (p[-1][0] - p[0][0]) for _, p in series)
        if rate <= 0:
            return None
        start = min(p[0][0] for _, p in series)
        end = max(p[-1][0] for _, p in series)
        pods = tuple(sorted({labels["pod"] for labels, _ in series}))
        select = pod_selector(namespace, pods)
        watts, source = None, "nothing measured"
        energy = self._raw(f"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{select}", start, end)
        energy = [(labels, p) for labels, p in energy if len(p) >= 2]
        if energy:
            per_device = [increase(p) / 1000 / (p[-1][0] - p[0][0]) for _, p in energy]
            watts, source = statistics.fmean(per_device), "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
        else:
            power = [v for _, p in self._raw(f"DCGM_FI_DEV_POWER_USAGE{select}", start, end)
                     for _, v in p]  # fmt: skip
            if power:
                watts, source = statistics.fmean(power), "DCGM_FI_DEV_POWER_USAGE"
        util = [v for _, p in self._raw(f"DCGM_FI_DEV_GPU_UTIL{select}", start, end)
                for _, v in p]  # fmt: skip
        return JobRun(
            namespace=namespace,
            job=job,
            family=family,
            batch_size=int(batch),
            accelerator=kind.type,
            world_size=int(world),
            pods=pods,
            start=start,
            end=end,
            samples_done=sum(increase(p) for _, p in series),
            throughput=rate,
            watts_per_device=watts,
            power_from=source,
            gpu_util_pct=statistics.fmean(util) if util else None,
        )


def connect(url: str) -> Collector:
    """A collector on a live Prometheus; a clear error when it does not answer."""
    import urllib.request

    from prometheus_api_client import PrometheusConnect

    try:  # the API, not "/": Debian's build serves no web UI there
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/v1/status/buildinfo", timeout=10):
            pass
    except OSError as exc:
        raise ConnectionError(f"no Prometheus answers at {url}: {exc}") from None
    return Collector(PrometheusConnect(url=url), url)


def parse_since(text: str) -> float:
    """Seconds in a Prometheus-style duration: 90s, 30m, 12h, 7d, 2w."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw])", text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 90s, 30m, 12h, 7d or 2w")
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
    return float(match.group(1)) * unit
