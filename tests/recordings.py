"""Synthetic NVML recordings for tests (made here, never shipped as measurements)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from berth.profiler.samples import DeviceSample, ProcessUse, Sample, to_json

H100 = "NVIDIA H100 80GB HBM3"


def device(
    index: int = 0, watts: float = 300.0, energy_mj: float = 0.0, **kw: object
) -> DeviceSample:
    fields: dict[str, object] = dict(
        index=index,
        uuid=f"GPU-{index:08d}-0000-0000-0000-000000000000",
        name=H100,
        power_w=watts,
        energy_mj=energy_mj,
        gpu_util_pct=95.0,
        mem_util_pct=40.0,
        fb_used_mib=30000.0,
        fb_free_mib=51000.0,
        sm_clock_mhz=1980.0,
        temperature_c=60.0,
        power_limit_w=700.0,
        ecc_dbe_volatile=0,
        ecc_sbe_volatile=0,
        retired_pages_pending=False,
        xid=0,
        thermal_throttle=False,
    )
    return DeviceSample(**(fields | kw))  # type: ignore[arg-type]


def busy_run(
    seconds: int,
    watts: float,
    devices: int = 1,
    pod: str | None = None,
    start: float = 1000.0,
    per_s: int = 1,
) -> list[Sample]:
    """`devices` GPUs drawing `watts` each for `seconds`, `per_s` samples a second; the energy
    counter rises accordingly; the pod (namespace "ml") runs on each when named."""
    procs = (ProcessUse(4242, 30000.0, namespace="ml", pod=pod, container="worker"),) if pod else ()
    return [
        Sample(
            start + k / per_s,
            tuple(
                device(i, watts, energy_mj=watts * k / per_s * 1000, processes=procs)
                for i in range(devices)
            ),
            driver="550.54.15",
            hostname="gpu-node-1",
        )
        for k in range(seconds * per_s + 1)
    ]


def idle(sample: Sample, watts: float) -> Sample:
    return replace(
        sample,
        devices=tuple(
            replace(d, power_w=watts, gpu_util_pct=0.0, processes=()) for d in sample.devices
        ),
    )


def write(path: Path, samples: list[Sample]) -> Path:
    path.write_text("".join(to_json(s) + "\n" for s in samples))
    return path
