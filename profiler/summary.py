"""`berth profile -- COMMAND`: run a workload, sample its GPUs while it runs and write what it
measured as profile records, with provenance (GPU, driver, date, command).

The summary is pure: progress points and device samples in, a ProfileRecord out. Throughput is
the workload's own count of samples between its first and last progress report (start-up is not
work); power is the energy counter's rise over the same span where the GPU has one, else the
mean of the power readings.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from berth.core.catalog import resolve
from berth.core.profile import ProfileRecord
from berth.profiler.health import IDLE_UTIL_PCT
from berth.profiler.samples import Sample


@dataclass(frozen=True)
class Measured:
    record: ProfileRecord
    seconds: float  # the span measured
    samples_done: float
    devices: tuple[int, ...]
    energy_j: float | None  # all devices over the span, from the energy counters
    gpu_util_pct: float | None
    fb_used_mib: float | None  # the most any device used
    power_from: str  # "energy counter" | "power readings"


class NothingMeasured(ValueError):
    pass


def devices_used(samples: Sequence[Sample], pids: set[int]) -> tuple[int, ...]:
    """Devices running one of the workload's processes; else those that left idle at all."""
    by_pid = {d.index for s in samples for d in s.devices for p in d.processes if p.pid in pids}
    if by_pid:
        return tuple(sorted(by_pid))
    busy = {
        d.index
        for s in samples
        for d in s.devices
        if d.gpu_util_pct is not None and d.gpu_util_pct > IDLE_UTIL_PCT
    }
    return tuple(sorted(busy))


def summarise(
    progress: Sequence[tuple[float, float]],
    samples: Sequence[Sample],
    family: str,
    batch_size: int,
    pids: set[int],
    provenance: str,
    precision: str = "fp32",
    framework: str = "pytorch",
) -> Measured:
    if len(progress) < 2:
        raise NothingMeasured(
            "the workload reported progress fewer than twice: call Progress.advance() after "
            "every step, or write '<unix time> <samples so far>' lines to $BERTH_PROGRESS_FILE"
        )
    (t0, n0), (t1, n1) = progress[0], progress[-1]
    if t1 <= t0 or n1 <= n0:
        raise NothingMeasured("progress did not advance between the first and last report")
    inside = [s for s in samples if t0 <= s.time <= t1]
    if len(inside) < 2:
        raise NothingMeasured(
            f"fewer than two GPU samples in the {t1 - t0:.1f} s the workload ran steadily: "
            "run it longer or sample faster (--interval)"
        )
    used = devices_used(inside, pids)
    if not used:
        raise NothingMeasured("no GPU did any work while the workload ran")
    names = {d.name for s in inside for d in s.devices if d.index in used}
    if len(names) != 1:
        raise NothingMeasured(f"the workload ran on different GPU models {sorted(names)}")
    (name,) = names
    kind = resolve(name)
    if kind.type is None:
        raise NothingMeasured(f"{name!r} is not in berth's accelerator catalog")

    def series(attr: str) -> list[float]:
        return [
            float(v)
            for s in inside
            for d in s.devices
            if d.index in used and (v := getattr(d, attr)) is not None
        ]

    first, last = inside[0], inside[-1]
    span = last.time - first.time
    rises = []
    for i in used:
        a = next((d.energy_mj for d in first.devices if d.index == i), None)
        b = next((d.energy_mj for d in last.devices if d.index == i), None)
        if a is not None and b is not None:
            rises.append((b - a) / 1000)
    energy_j = sum(rises) if len(rises) == len(used) else None
    watts: float | None
    if energy_j is not None and span > 0:
        watts, source = energy_j / span / len(used), "energy counter"
    else:
        power = series("power_w")
        watts, source = (statistics.fmean(power) if power else None), "power readings"
    util, memory = series("gpu_util_pct"), series("fb_used_mib")
    rate = (n1 - n0) / (t1 - t0)
    record = ProfileRecord(
        family=family,
        batch_size=batch_size,
        accelerator=kind.type,
        count=len(used),
        throughput=rate,
        watts_per_device=watts,
        source=f"berth-profile {provenance}",
        conversion=f"samples reported by the workload over {t1 - t0:.1f} s; W from {source}",
        precision=precision,
        framework=framework,
    )
    return Measured(
        record,
        t1 - t0,
        n1 - n0,
        used,
        energy_j,
        statistics.fmean(util) if util else None,
        max(memory) if memory else None,
        source,
    )
