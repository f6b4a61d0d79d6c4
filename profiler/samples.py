"""What one look at a GPU sees, as plain data: NVML fills it, a replay file records it, the
exporter renders it and health is judged on it. Units are NVML's own where it has one."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class ProcessUse:
    """A compute process on a device, with the pod it runs in when its cgroup names one."""

    pid: int
    used_memory_mib: float | None
    pod_uid: str | None = None
    container_id: str | None = None
    # Filled by the exporter from the API server (the pod UID alone means nothing to a user).
    namespace: str | None = None
    pod: str | None = None
    container: str | None = None


@dataclass(frozen=True)
class DeviceSample:
    index: int
    uuid: str
    name: str  # NVML product name, e.g. "NVIDIA H100 80GB HBM3"
    power_w: float | None
    energy_mj: float | None  # total energy since the driver loaded (Volta and later)
    gpu_util_pct: float | None
    mem_util_pct: float | None
    fb_used_mib: float | None
    fb_free_mib: float | None
    sm_clock_mhz: float | None
    temperature_c: float | None
    power_limit_w: float | None = None
    ecc_dbe_volatile: int | None = None  # uncorrectable ECC errors since the driver loaded
    ecc_sbe_volatile: int | None = None
    retired_pages_pending: bool | None = None
    xid: int | None = None  # the last Xid event seen; 0 when none
    thermal_throttle: bool | None = None
    processes: tuple[ProcessUse, ...] = ()


@dataclass(frozen=True)
class Sample:
    """All devices of one node at one time (seconds since the epoch)."""

    time: float
    devices: tuple[DeviceSample, ...]
    driver: str | None = None
    hostname: str | None = None


class BadRecording(ValueError):
    pass


def to_json(sample: Sample) -> str:
    return json.dumps(asdict(sample), separators=(",", ":"))


def _build(cls: type[Any], raw: Mapping[str, Any], where: str) -> Any:
    names = {f.name for f in fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise BadRecording(f"{where}: unknown field(s) {sorted(unknown)} for {cls.__name__}")
    try:
        return cls(**raw)
    except TypeError as exc:
        raise BadRecording(f"{where}: {exc}") from None


def from_json(line: str, where: str = "sample") -> Sample:
    """One recorded sample; a malformed one is refused with where it is, never half-read."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadRecording(f"{where}: not JSON: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("devices"), list):
        raise BadRecording(f"{where}: expected an object with a 'devices' list")
    devices = []
    for k, d in enumerate(raw["devices"]):
        if not isinstance(d, dict):
            raise BadRecording(f"{where}: device {k} is not an object")
        procs = tuple(
            _build(ProcessUse, p, f"{where}: device {k} process") for p in d.get("processes", [])
        )
        devices.append(_build(DeviceSample, {**d, "processes": procs}, f"{where}: device {k}"))
    sample: Sample = _build(Sample, {**raw, "devices": tuple(devices)}, where)
    if not isinstance(sample.time, int | float):
        raise BadRecording(f"{where}: time must be a number of seconds")
    return sample


def read_recording(lines: Iterable[str], where: str) -> list[Sample]:
    samples = [from_json(line, f"{where}:{n}") for n, line in enumerate(lines, 1) if line.strip()]
    if not samples:
        raise BadRecording(f"{where}: no samples")
    if any(b.time <= a.time for a, b in itertools.pairwise(samples)):
        raise BadRecording(f"{where}: sample times must increase")
    return samples
