"""The exporter's /metrics text (pure): dcgm-exporter's metric names for the fields both have,
so dashboards and the collector read either, plus node health and idle power as berth_ metrics.

Two deliberate differences from dcgm-exporter, both for `promtool check metrics`: the model
label is `model_name` (dcgm-exporter's `modelName` is camelCase), and the energy counter is
declared a gauge (a counter must end in `_total`; the DCGM name does not). PromQL's rate() and
increase() read it either way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from berth.core.snapshot import Health
from berth.profiler.samples import DeviceSample, ProcessUse, Sample


@dataclass(frozen=True)
class Field:
    name: str
    help: str
    value: Callable[[DeviceSample], float | None]


def _flag(v: bool | None) -> float | None:
    return None if v is None else float(v)


# Names and help as dcgm-exporter's default-counters.csv writes them.
FIELDS = (
    Field("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", lambda d: d.sm_clock_mhz),
    Field("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", lambda d: d.temperature_c),
    Field("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", lambda d: d.power_w),
    Field(
        "DCGM_FI_DEV_POWER_MGMT_LIMIT", "Power management limit (in W).", lambda d: d.power_limit_w
    ),
    Field(
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "Total energy consumption since boot (in mJ).",
        lambda d: d.energy_mj,
    ),
    Field("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", lambda d: d.gpu_util_pct),
    Field("DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).", lambda d: d.mem_util_pct),
    Field("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", lambda d: d.fb_free_mib),
    Field("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", lambda d: d.fb_used_mib),
    Field("DCGM_FI_DEV_XID_ERRORS", "Value of the last XID error encountered.", lambda d: d.xid),
    Field(
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
        "Total number of single-bit volatile ECC errors.",
        lambda d: d.ecc_sbe_volatile,
    ),
    Field(
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "Total number of double-bit volatile ECC errors.",
        lambda d: d.ecc_dbe_volatile,
    ),
    Field(
        "berth_gpu_retired_pages_pending",
        "1 when retired pages wait for a GPU reset.",
        lambda d: _flag(d.retired_pages_pending),
    ),
    Field(
        "berth_gpu_thermal_throttle",
        "1 while the GPU's clocks are slowed for heat.",
        lambda d: _flag(d.thermal_throttle),
    ),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Mapping[str, str]) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _number(v: float) -> str:
    if not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("+Inf" if v > 0 else "-Inf")
    return str(int(v)) if v == int(v) else repr(float(v))


def device_labels(d: DeviceSample, hostname: str) -> dict[str, str]:
    labels = {
        "gpu": str(d.index),
        "UUID": d.uuid,
        "device": f"nvidia{d.index}",
        "model_name": d.name,
        "Hostname": hostname,
    }
    # dcgm-exporter's Kubernetes mapping: the pod using the device (the first one named).
    pod: ProcessUse | None = next((p for p in d.processes if p.pod), None)
    if pod is not None:
        labels |= {"namespace": pod.namespace or "", "pod": pod.pod or ""}
        labels |= {"container": pod.container or ""}
    return labels


def render(
    sample: Sample | None,
    hostname: str,
    health: Health,
    idle_watts: float | None,
    counters: Mapping[str, float],
) -> str:
    """The exposition text; `counters` are the exporter's own (samples taken, failed)."""
    out: list[str] = []
    devices = sample.devices if sample else ()
    for f in FIELDS:
        rows = [(device_labels(d, hostname), v) for d in devices if (v := f.value(d)) is not None]
        if not rows:
            continue
        out += [f"# HELP {f.name} {f.help}", f"# TYPE {f.name} gauge"]
        out += [f"{f.name}{_labels(labels)} {_number(v)}" for labels, v in rows]
    out += [
        "# HELP berth_node_health Health of the node's GPUs (1 for the current state).",
        "# TYPE berth_node_health gauge",
    ]
    for state in Health:
        out.append(
            f"berth_node_health{_labels({'Hostname': hostname, 'state': state.value})} "
            f"{int(state is health)}"
        )
    if idle_watts is not None:
        out += [
            "# HELP berth_node_idle_power_watts Idle power of the node's GPUs (median while idle).",
            "# TYPE berth_node_idle_power_watts gauge",
            f"berth_node_idle_power_watts{_labels({'Hostname': hostname})} {_number(idle_watts)}",
        ]
    for name, help_text in (
        ("berth_exporter_samples_total", "Samples taken from the backend."),
        ("berth_exporter_sample_errors_total", "Samples the backend failed to give."),
    ):
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        out.append(f"{name} {_number(counters.get(name, 0))}")
    if sample is not None:
        out += [
            "# HELP berth_exporter_last_sample_timestamp_seconds When the shown sample was taken.",
            "# TYPE berth_exporter_last_sample_timestamp_seconds gauge",
            f"berth_exporter_last_sample_timestamp_seconds {_number(sample.time)}",
        ]
    return "\n".join(out) + "\n"
