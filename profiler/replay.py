"""The replay backend: recorded samples (JSON lines, one Sample each) played back in real time,
so the exporter runs, and is tested, where no GPU is. Times are shifted to now; energy counters
keep rising across loops, as a real counter would."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from berth.profiler.samples import Sample, read_recording


class ReplayBackend:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise FileNotFoundError(f"replay file {path}: {exc.strerror}") from None
        self.samples = read_recording(lines, str(path))
        self.clock = clock
        self.start = clock()
        first, last = self.samples[0].time, self.samples[-1].time
        # One loop lasts the recording plus one typical step, so the loop joins up evenly.
        step = (last - first) / (len(self.samples) - 1) if len(self.samples) > 1 else 1.0
        self.period = last - first + step
        self.driver = self.samples[0].driver
        self.gained = self._energy_per_loop()

    def at(self, now: float) -> Sample:
        """The recorded sample in force at `now` (the last one at or before it)."""
        first = self.samples[0].time
        loops, offset = divmod(max(now - self.start, 0.0), self.period)
        current = self.samples[0]
        for s in self.samples:
            if s.time - first > offset:
                break
            current = s
        devices = tuple(
            d
            if d.energy_mj is None
            else replace(d, energy_mj=d.energy_mj + loops * self.gained.get(d.index, 0.0))
            for d in current.devices
        )
        return replace(current, time=now, devices=devices)

    def _energy_per_loop(self) -> dict[int, float]:
        first, last = self.samples[0], self.samples[-1]
        span = last.time - first.time
        gained = {}
        for d in last.devices:
            before = next((x for x in first.devices if x.index == d.index), None)
            if span > 0 and d.energy_mj is not None and before and before.energy_mj is not None:
                # The recording's energy rate over one whole loop, its closing step included.
                gained[d.index] = (d.energy_mj - before.energy_mj) * self.period / span
        return gained

    def sample(self) -> Sample:
        return self.at(self.clock())

    def close(self) -> None:
        pass
