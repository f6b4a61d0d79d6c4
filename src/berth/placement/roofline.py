"""The roofline-style estimate: what berth predicts from datasheets alone.

For a job that states (or whose model family gives) FLOPs per sample, on a device with a known
peak for the job's precision:

    samples/s = count x peak FLOP/s x EFFICIENCY / FLOPs per sample x SCALING^log2(count)
    W/device  = TDP x TDP_FRACTION

Every figure is labelled modelled with its formula. It is the last resort: for HPC jobs and
CPU nodes, which no measured table covers, and for families the recommender does not know.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from berth.core.catalog import CPU, CPU_CLASSES, CpuClass, Variant
from berth.core.families import FAMILIES
from berth.core.job import AcceleratorJob, Precision, WorkloadKind
from berth.core.prediction import Prediction
from berth.core.provenance import Figure, modelled

NAME = "fallback: roofline estimate from datasheet peaks"
EFFICIENCY = 0.4  # a typical achieved fraction of peak (model-FLOPs utilisation) on GPUs
CPU_EFFICIENCY = 0.2  # vectorised FP64 codes reach a smaller fraction of a CPU's peak
SCALING = 0.9  # throughput kept per doubling of devices (communication, stragglers)
TDP_FRACTION = 0.8  # as the spec-ratio fallback
BACKWARD_FACTOR = 3  # training: forward + backward is about three forward passes


def flops_per_sample(job: AcceleratorJob) -> tuple[float, str] | None:
    """The job's own figure, else its family's forward GFLOPs (x3 for training)."""
    w = job.workload
    if w.flops_per_sample is not None:
        return w.flops_per_sample, "spec.workload.flopsPerSample"
    family = FAMILIES.get(w.model or "")
    if family is None or family.gflops_per_sample is None:
        return None
    factor = BACKWARD_FACTOR if w.kind is WorkloadKind.TRAINING else 1
    return family.gflops_per_sample * 1e9 * factor, f"{family.id} forward GFLOPs x{factor}"


def gpu_peak_tflops(variant: Variant, precision: Precision) -> float | None:
    if precision is Precision.FP64:
        return variant.fp64_tflops
    if precision in (Precision.FP16, Precision.BF16):
        return variant.fp16_tensor_tflops or variant.fp32_tflops
    return variant.fp32_tflops


def cpu_peak_tflops(cpu: CpuClass, precision: Precision) -> float:
    # FP32 (and FP16 without matrix units) runs at twice the FP64 vector rate.
    per_node = cpu.peak_fp64_gflops / 1000
    return per_node if precision is Precision.FP64 else 2 * per_node


def cpu_class(name: str | None) -> CpuClass:
    """A CPU node's class; an unlabelled node counts as the first class listed."""
    return next((c for c in CPU_CLASSES if c.id == name), CPU_CLASSES[0])


class Roofline:
    name = NAME

    def predict(
        self, job: AcceleratorJob, device: Variant | CpuClass, count: int
    ) -> Prediction | None:
        found = flops_per_sample(job)
        if found is None:
            return None
        flops, flops_source = found
        precision = job.workload.precision
        if isinstance(device, CpuClass):
            peak, efficiency, tdp = cpu_peak_tflops(device, precision), CPU_EFFICIENCY, device.tdp_w
        else:
            gpu_peak = gpu_peak_tflops(device, precision)
            if gpu_peak is None:
                return None
            peak, efficiency, tdp = gpu_peak, EFFICIENCY, device.tdp_w
        scaling = SCALING ** math.log2(count)
        rate = count * peak * 1e12 * efficiency / flops * scaling
        throughput = modelled(
            rate,
            "samples/s",
            f"roofline: {count} x {peak:g} TFLOP/s ({device.id}, {precision.value}) x "
            f"{efficiency} / {flops:.4g} FLOP/sample ({flops_source}) x {SCALING}^log2({count})",
        )
        watts: Figure = modelled(tdp * TDP_FRACTION, "W", f"TDP {tdp:g} W x {TDP_FRACTION}")
        return Prediction(throughput, watts)

    def predict_all(
        self,
        job: AcceleratorJob,
        candidates: Iterable[tuple[str, Variant | CpuClass, int]],
    ) -> dict[tuple[str, int], Prediction]:
        out = {}
        for type_id, device, count in candidates:
            if type_id == CPU and not isinstance(device, CpuClass):
                continue
            p = self.predict(job, device, count)
            if p is not None:
                out[(type_id, count)] = p
        return out
