"""Profile records: one measured run of a workload on (accelerator type, count).

Importers of public measurements, berth's pynvml profiler and its Prometheus collector all
write this one shape; the recommender trains on it and the simulator takes its ground truth
from it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ProfileRecord:
    family: str  # model family, lower case: resnet50, bert, gpt2 ...
    batch_size: int  # global samples per step
    accelerator: str  # canonical type id (catalog)
    count: int  # devices
    throughput: float  # samples/s of the whole job
    watts_per_device: float | None  # average board power, where measured
    source: str  # data set, file and key the figure comes from
    conversion: str  # how the source's unit became samples/s
    # What else defines the workload: the same family and batch is another job under another
    # framework or precision. fp16 = mixed precision (FP16 maths, FP32 master weights).
    precision: str = "fp32"
    framework: str = "pytorch"

    def __post_init__(self) -> None:
        if not (self.throughput > 0 and self.count > 0 and self.batch_size > 0):
            raise ValueError(f"not a measurement: {self}")


@dataclass(frozen=True)
class Rate:
    """One measured rate of a family on (type, count), at one global batch."""

    batch: int
    samples_per_s: float
    source: str


def nearest(rates: Sequence[Rate], batch: int) -> Rate:
    """The measured rate at the global batch nearest `batch` on a log scale (ties: smaller)."""
    return min(rates, key=lambda r: (abs(math.log(r.batch / batch)), r.batch))


@dataclass(frozen=True)
class PowerRecord:
    """Average board power of one device running a workload at the GPU's default power
    limit: the median over the measured runs (batch sizes, optimizers) at that limit."""

    family: str
    accelerator: str
    batch_size: int  # the median batch of those runs
    watts: float
    power_limit_w: float
    runs: int
    source: str
