"""Features: (model family, global batch, accelerator variant, count) -> one vector.

Pure and deterministic. The accelerator enters only through its specs, so the model can score a
type it never saw measured. The names, in order, go into the ONNX model's metadata with the
scaling fitted at training, and the server builds its vectors by this function and checks the
names against the model's: nothing is repeated by hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from berth.core.catalog import Variant
from berth.core.families import FAMILIES

DOMAINS = ("vision", "language", "speech", "recommendation")
# The families with a one-hot feature: those of the MLP's own training tables (the shipped
# measured_*.csv). A family known only to the transfer tables has no column of its own.
KNOWN_FAMILIES = ("bert", "deepspeech2", "gpt2", "inception3", "lm", "ncf", "recommendation",
                  "resnet18", "resnet50", "resnet50_cifar10", "shufflenetv2", "transformer",
                  "vgg16", "yolov3")  # fmt: skip

NAMES: tuple[str, ...] = (
    "log2_count",
    "log2_global_batch",
    "log2_batch_per_device",
    "log10_params_m",
    "params_missing",
    "log10_gflops",
    "gflops_missing",
    "log2_fp32_tflops",
    "log2_fp16_tflops",
    "has_tensor_cores",
    "log2_mem_bw_gbs",
    "log2_mem_gib",
    "log2_tdp_w",
    "log2_job_fp32_tflops",
    *(f"domain_{d}" for d in DOMAINS),
    *(f"family_{f}" for f in KNOWN_FAMILIES),
)


def features(family: str, batch: int, variant: Variant, count: int) -> list[float]:
    """An unknown family gets zeros for its one-hot and its figures marked missing."""
    if batch < 1 or count < 1:
        raise ValueError(f"batch and count must be >= 1, got {batch} and {count}")
    f = FAMILIES.get(family)
    params = f.params_m if f else None
    gflops = f.gflops_per_sample if f else None
    fp16 = variant.fp16_tensor_tflops
    vector = [
        math.log2(count),
        math.log2(batch),
        math.log2(max(batch / count, 1e-3)),
        math.log10(params) if params else 0.0,
        0.0 if params else 1.0,
        math.log10(gflops) if gflops else 0.0,
        0.0 if gflops else 1.0,
        math.log2(variant.fp32_tflops),
        math.log2(fp16) if fp16 else math.log2(variant.fp32_tflops),
        1.0 if fp16 else 0.0,
        math.log2(variant.memory_bandwidth_gbs),
        math.log2(variant.memory_gib),
        math.log2(variant.tdp_w),
        math.log2(variant.fp32_tflops * count),
        *(1.0 if f and f.domain == d else 0.0 for d in DOMAINS),
        *(1.0 if family == k else 0.0 for k in KNOWN_FAMILIES),
    ]
    return vector


def check_names(names: Sequence[str]) -> None:
    """Refuse a model whose feature schema is not the one this code builds."""
    if tuple(names) != NAMES:
        raise ValueError(
            f"the model's features {list(names)[:5]}... are not this berth's {list(NAMES)[:5]}..."
        )
