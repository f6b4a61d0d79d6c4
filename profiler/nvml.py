"""The real backend: NVML through pynvml (the nvidia-ml-py distribution).

Every field is asked for on its own: a device that does not support one (no ECC on a
GeForce, no energy counter before Volta) reports None for it, not a failed sample. Without an
NVIDIA driver, `NvmlBackend()` raises NvmlUnavailable with what to do; nothing crashes.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from berth.profiler.samples import DeviceSample, ProcessUse, Sample

T = TypeVar("T")
# kubelet's cgroup names, systemd driver (pod UID with underscores) and cgroupfs driver alike.
_POD_UID = re.compile(
    r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
)
_CONTAINER = re.compile(r"([0-9a-f]{64})")


class NvmlUnavailable(RuntimeError):
    pass


def pod_of_cgroup(text: str) -> tuple[str | None, str | None]:
    """(pod UID, container ID) from the text of /proc/<pid>/cgroup; None where it names none."""
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        uid = _POD_UID.search(path)
        if uid:
            container = _CONTAINER.search(path[uid.end() :])
            return uid.group(1).replace("_", "-"), container.group(1) if container else None
    return None, None


def _process(pid: int, used_bytes: int | None, proc: Path) -> ProcessUse:
    try:
        uid, container = pod_of_cgroup((proc / str(pid) / "cgroup").read_text())
    except OSError:  # gone already, or in another PID namespace
        uid, container = None, None
    mib = None if used_bytes is None else used_bytes / 2**20
    return ProcessUse(pid, mib, uid, container)


class NvmlBackend:
    def __init__(self, proc: Path = Path("/proc")) -> None:
        try:
            import pynvml
        except ImportError:  # pragma: no cover - a dependency of berth
            raise NvmlUnavailable("pynvml is missing: pip install nvidia-ml-py") from None
        self.nvml: Any = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise NvmlUnavailable(
                f"NVML is not available here ({exc}): no NVIDIA driver is loaded, or this "
                "container was started without the GPU (NVIDIA container toolkit / device "
                "plugin). Use --replay FILE to run on recorded samples."
            ) from None
        self.proc = proc
        self.driver = self._get(pynvml.nvmlSystemGetDriverVersion)
        self.handles = [
            pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())
        ]
        self.events: Any = None
        try:
            self.events = pynvml.nvmlEventSetCreate()
            for h in self.handles:
                pynvml.nvmlDeviceRegisterEvents(
                    h, pynvml.nvmlEventTypeXidCriticalError, self.events
                )
        except pynvml.NVMLError:
            self.events = None  # Xid events need a supported device and driver
        self.last_xid = dict.fromkeys(range(len(self.handles)), 0)

    def _get(self, fn: Callable[..., T], *args: Any) -> T | None:
        try:
            return fn(*args)
        except self.nvml.NVMLError:
            return None

    def _ecc(self, h: Any, kind: int) -> int | None:
        return self._get(
            self.nvml.nvmlDeviceGetTotalEccErrors, h, kind, self.nvml.NVML_VOLATILE_ECC
        )

    def _poll_xid(self) -> None:
        if self.events is None:
            return
        while True:
            try:
                data = self.nvml.nvmlEventSetWait(self.events, 0)
            except self.nvml.NVMLError:  # timeout: nothing new
                return
            index = self._get(self.nvml.nvmlDeviceGetIndex, data.device)
            if index is not None:
                self.last_xid[index] = int(data.eventData)

    def _device(self, i: int, h: Any) -> DeviceSample:
        n = self.nvml
        util = self._get(n.nvmlDeviceGetUtilizationRates, h)
        memory = self._get(n.nvmlDeviceGetMemoryInfo, h)
        power = self._get(n.nvmlDeviceGetPowerUsage, h)
        limit = self._get(n.nvmlDeviceGetEnforcedPowerLimit, h)
        reasons = self._get(n.nvmlDeviceGetCurrentClocksThrottleReasons, h)
        thermal = (
            n.nvmlClocksThrottleReasonSwThermalSlowdown
            | n.nvmlClocksThrottleReasonHwThermalSlowdown
        )
        pending = self._get(n.nvmlDeviceGetRetiredPagesPendingStatus, h)
        procs = self._get(n.nvmlDeviceGetComputeRunningProcesses, h) or []
        return DeviceSample(
            index=i,
            uuid=str(self._get(n.nvmlDeviceGetUUID, h)),
            name=str(self._get(n.nvmlDeviceGetName, h)),
            power_w=None if power is None else power / 1000,
            energy_mj=self._get(n.nvmlDeviceGetTotalEnergyConsumption, h),
            gpu_util_pct=None if util is None else util.gpu,
            mem_util_pct=None if util is None else util.memory,
            fb_used_mib=None if memory is None else memory.used / 2**20,
            fb_free_mib=None if memory is None else memory.free / 2**20,
            sm_clock_mhz=self._get(n.nvmlDeviceGetClockInfo, h, n.NVML_CLOCK_SM),
            temperature_c=self._get(n.nvmlDeviceGetTemperature, h, n.NVML_TEMPERATURE_GPU),
            power_limit_w=None if limit is None else limit / 1000,
            ecc_dbe_volatile=self._ecc(h, n.NVML_MEMORY_ERROR_TYPE_UNCORRECTED),
            ecc_sbe_volatile=self._ecc(h, n.NVML_MEMORY_ERROR_TYPE_CORRECTED),
            retired_pages_pending=None if pending is None else bool(pending),
            xid=self.last_xid[i] if self.events is not None else None,
            thermal_throttle=None if reasons is None else bool(reasons & thermal),
            processes=tuple(_process(p.pid, p.usedGpuMemory, self.proc) for p in procs),
        )

    def sample(self) -> Sample:
        self._poll_xid()
        devices = tuple(self._device(i, h) for i, h in enumerate(self.handles))
        driver = self.driver.decode() if isinstance(self.driver, bytes) else self.driver
        return Sample(time.time(), devices, driver, socket.gethostname())

    def close(self) -> None:
        if self.events is not None:
            self._get(self.nvml.nvmlEventSetFree, self.events)
        self._get(self.nvml.nvmlShutdown)
