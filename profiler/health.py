"""Node health and idle power from samples (pure): what the exporter annotates its node with,
so that placement avoids sick devices and counts the watts a node draws doing nothing."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from berth.core.snapshot import Health
from berth.profiler.samples import DeviceSample, Sample

# Xids NVIDIA's XID catalogue says need a reset or point at the hardware: double-bit ECC (48),
# GPU fallen off the bus (79), row-remapping failure (64), NVLink errors (74), contained and
# uncontained memory errors (94, 95), GSP timeouts (119, 120), internal errors (62, 63, 92).
FATAL_XIDS = frozenset({48, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120})
IDLE_UTIL_PCT = 1.0  # a device at or below this with no compute process counts as idle


def device_health(d: DeviceSample) -> tuple[Health, str]:
    """The device's health and why."""
    if d.ecc_dbe_volatile:
        return Health.UNHEALTHY, f"GPU {d.index}: {d.ecc_dbe_volatile} uncorrectable ECC error(s)"
    if d.xid in FATAL_XIDS:
        return Health.UNHEALTHY, f"GPU {d.index}: Xid {d.xid}"
    if d.retired_pages_pending:
        return Health.DEGRADED, f"GPU {d.index}: retired pages pending a reset"
    if d.thermal_throttle:
        return Health.DEGRADED, f"GPU {d.index}: thermal slowdown"
    if d.xid:
        return Health.DEGRADED, f"GPU {d.index}: Xid {d.xid}"
    return Health.HEALTHY, f"GPU {d.index}: healthy"


_RANK = {Health.HEALTHY: 0, Health.DEGRADED: 1, Health.UNHEALTHY: 2}


def node_health(sample: Sample) -> tuple[Health, list[str]]:
    """The worst device's health, with the reasons of every device not healthy."""
    judged = [device_health(d) for d in sample.devices]
    if not judged:
        return Health.UNKNOWN, ["no GPU seen"]
    worst = max((h for h, _ in judged), key=_RANK.__getitem__)
    return worst, [why for h, why in judged if h is not Health.HEALTHY]


def is_idle(d: DeviceSample) -> bool:
    return not d.processes and d.gpu_util_pct is not None and d.gpu_util_pct <= IDLE_UTIL_PCT


def idle_watts(window: Sequence[Sample]) -> float | None:
    """The node's idle GPU power: per device, the median power over the samples in which it was
    idle; summed over devices. None until every device has been seen idle at least once."""
    per_device: dict[int, list[float]] = {}
    indexes = {d.index for s in window for d in s.devices}
    for s in window:
        for d in s.devices:
            if is_idle(d) and d.power_w is not None:
                per_device.setdefault(d.index, []).append(d.power_w)
    if not indexes or set(per_device) != indexes:
        return None
    return sum(statistics.median(w) for w in per_device.values())
