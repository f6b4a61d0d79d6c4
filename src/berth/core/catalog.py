"""The accelerator catalog: one table of facts and names per accelerator type.

A *type* is what a user asks for and the recommender scores (a100, v100, t4, ... and cpu). A
*variant* is one product of that type (A100 SXM4 80GB); nodes tell us the variant through the
GPU operator's `nvidia.com/gpu.product` label, which is NVML's name with spaces as dashes.

TDP and FP16/FP32 tensor figures are those of ../shared/data/gpu_specs.csv (tests hold the two
equal); memory, bandwidth and FP64 come from the vendor datasheet named in each row's source.
Idle power is left out: no source here gives it per device, so nodes report it (the exporter
measures it) or cluster descriptions declare it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CPU = "cpu"


@dataclass(frozen=True)
class Variant:
    id: str
    type: str
    names: tuple[str, ...]  # NVML names; GPU-operator labels are these with dashes
    memory_gib: float  # nominal; a node's nvidia.com/gpu.memory label gives the exact MiB
    memory_bandwidth_gbs: float
    tdp_w: float
    fp16_tensor_tflops: float | None  # dense FP16/BF16 (tensor cores where present)
    fp32_tflops: float
    fp64_tflops: float | None  # None where the datasheet gives no figure
    source: str
    specs_row: tuple[str, str] | None  # (gpu, variant) in gpu_specs.csv
    devices_per_board: int = 1  # K80 boards carry two GPUs; figures here are per GPU


@dataclass(frozen=True)
class AcceleratorType:
    id: str
    dataset_names: tuple[str, ...]  # names public data sets use for the type as a whole
    variants: tuple[Variant, ...]


@dataclass(frozen=True)
class CpuClass:
    """A CPU node class. Peak FP64 is modelled: cores x base clock x FP64 FLOP per cycle."""

    id: str
    cores: int
    base_ghz: float
    tdp_w: float
    fp64_flop_per_cycle: int
    source: str

    @property
    def peak_fp64_gflops(self) -> float:
        return self.cores * self.base_ghz * self.fp64_flop_per_cycle


def _v(
    id: str,
    type: str,
    names: tuple[str, ...],
    mem: float,
    bw: float,
    tdp: float,
    fp16: float | None,
    fp32: float,
    fp64: float | None,
    source: str,
    row: tuple[str, str] | None,
    per_board: int = 1,
) -> Variant:
    return Variant(id, type, names, mem, bw, tdp, fp16, fp32, fp64, source, row, per_board)


_K80 = "NVIDIA Tesla K80 board spec BD-07317-001 (24 GB, 480 GB/s, 2.91 FP64 per board)"
_P100 = "NVIDIA Tesla P100 datasheet (16 GB HBM2, 732 GB/s)"
_V100 = "NVIDIA V100 datasheet (HBM2 900 GB/s; FP64 7.8 SXM2, 7 PCIe)"
_A100 = "NVIDIA A100 datasheet (40GB 1,555 GB/s; 80GB SXM 2,039 / PCIe 1,935 GB/s; FP64 9.7)"
_H100 = "NVIDIA H100 datasheet (SXM5 3.35 TB/s, FP64 34; PCIe 2 TB/s, FP64 26)"
_H200 = "NVIDIA H200 datasheet (141 GB HBM3e, 4.8 TB/s; FP64 34 SXM, 30 NVL)"
# GeForce cards run FP16 tensor maths with FP32 accumulation (mixed-precision training) at half
# the rate of FP16 accumulation; their figure here is the FP32-accumulate one.
_TURING = "NVIDIA Turing architecture whitepaper (reference board; FP16 tensor, FP32 accumulate)"
_GA102 = "NVIDIA GA102 (Ampere) architecture whitepaper (FP16 tensor dense, FP32 accumulate)"
_QUADRO = "NVIDIA Quadro RTX 8000 datasheet (48 GB GDDR6, 672 GB/s, FP32 16.3, tensor 130.5, 295 W)"

# A table reads better aligned by hand.
# fmt: off
TYPES: tuple[AcceleratorType, ...] = (
    AcceleratorType("k80", ("k80",), (
        _v("k80", "k80", ("Tesla K80",), 12, 240, 150, None, 4.365, 1.455, _K80,
           ("K80", "board (2x GK210)"), per_board=2),
    )),
    AcceleratorType("p100", ("p100",), (
        _v("p100-sxm2-16gb", "p100", ("Tesla P100-SXM2-16GB",), 16, 732, 300, 21.2, 10.6, 5.3,
           _P100 + "; FP64 5.3", ("P100", "SXM2 (NVLink)")),
        _v("p100-pcie-16gb", "p100", ("Tesla P100-PCIE-16GB",), 16, 732, 250, 18.7, 9.3, 4.7,
           _P100 + "; FP64 4.7", ("P100", "PCIe 16GB")),
    )),
    AcceleratorType("v100", ("v100", "Tesla V100", "V100 SXM2", "V100 PCIe"), (
        _v("v100-sxm2-16gb", "v100", ("Tesla V100-SXM2-16GB",), 16, 900, 300, 125, 15.7, 7.8,
           _V100, ("V100", "SXM2")),
        _v("v100-sxm2-32gb", "v100", ("Tesla V100-SXM2-32GB",), 32, 900, 300, 125, 15.7, 7.8,
           _V100, ("V100", "SXM2")),
        _v("v100-sxm3-32gb", "v100", ("Tesla V100-SXM3-32GB",), 32, 900, 350, 125, 15.7, 7.8,
           "NVIDIA DGX-2 datasheet (16 V100 SXM3 32GB, 2 PFLOPS tensor; 350 W per GPU); FP32 and "
           "FP64 as SXM2", None),
        _v("v100-pcie-16gb", "v100", ("Tesla V100-PCIE-16GB",), 16, 900, 250, 112, 14, 7,
           _V100, ("V100", "PCIe")),
        _v("v100-pcie-32gb", "v100", ("Tesla V100-PCIE-32GB",), 32, 900, 250, 112, 14, 7,
           _V100, ("V100", "PCIe")),
    )),
    AcceleratorType("t4", ("t4",), (
        _v("t4", "t4", ("Tesla T4",), 16, 320, 70, 65, 8.1, None,
           "NVIDIA T4 datasheet (16 GB GDDR6, 320 GB/s)", ("T4", "PCIe LP")),
    )),
    AcceleratorType("a10", ("a10",), (
        _v("a10", "a10", ("NVIDIA A10",), 24, 600, 150, 125, 31.2, None,
           "NVIDIA A10 datasheet (24 GB GDDR6, 600 GB/s)", ("A10", "PCIe")),
    )),
    AcceleratorType("a40", ("a40",), (
        _v("a40", "a40", ("NVIDIA A40",), 48, 696, 300, 149.7, 37.4, None,
           "NVIDIA A40 datasheet (48 GB GDDR6, 696 GB/s, 300 W, FP32 37.4, TF16 149.7)", None),
    )),
    # "RTX 6000" alone is the Quadro (Turing) card in the benchmarks of its time; the Ada card
    # is always named with "Ada".
    AcceleratorType("rtx6000", ("rtx6000", "Quadro RTX 6000", "RTX 6000"), (
        _v("rtx6000", "rtx6000", ("Quadro RTX 6000",), 24, 672, 260, 130.5, 16.3, None,
           "NVIDIA Quadro RTX 6000 datasheet (24 GB GDDR6, 672 GB/s, FP32 16.3, tensor 130.5); "
           "260 W is the default power limit, the highest Zeus measured", None),
    )),
    AcceleratorType("rtx8000", ("rtx8000", "RTX 8000", "Quadro RTX 8000"), (
        _v("rtx8000", "rtx8000", ("Quadro RTX 8000",), 48, 672, 295, 130.5, 16.3, None,
           _QUADRO, None),
    )),
    AcceleratorType("rtx5000", ("rtx5000", "Quadro RTX 5000"), (
        _v("rtx5000", "rtx5000", ("Quadro RTX 5000",), 16, 448, 230, 89.2, 11.2, None,
           "NVIDIA Quadro RTX 5000 datasheet (16 GB GDDR6, 448 GB/s, 230 W, FP32 11.2, tensor "
           "89.2)", None),
    )),
    AcceleratorType("rtx2080", ("rtx2080", "RTX 2080"), (
        _v("rtx2080", "rtx2080", ("GeForce RTX 2080", "NVIDIA GeForce RTX 2080"), 8, 448, 215,
           40.3, 10.1, None, _TURING + ": 8 GB GDDR6, 448 GB/s, 215 W", None),
    )),
    AcceleratorType("titanxp", ("titanxp", "Titan Xp"), (
        _v("titanxp", "titanxp", ("TITAN Xp", "NVIDIA TITAN Xp"), 12, 547.7, 250, None, 12.1, None,
           "NVIDIA TITAN Xp product page (12 GB GDDR5X, 547.7 GB/s, 250 W, FP32 12.1; no tensor "
           "cores)", None),
    )),
    AcceleratorType("rtx4090", ("rtx4090", "RTX 4090"), (
        _v("rtx4090", "rtx4090", ("NVIDIA GeForce RTX 4090", "GeForce RTX 4090"), 24, 1008, 450,
           165.2, 82.6, None,
           "NVIDIA Ada Lovelace architecture whitepaper (RTX 4090: 24 GB GDDR6X, 1,008 GB/s, "
           "450 W, FP32 82.6; FP16 tensor dense, FP32 accumulate)", None),
    )),
    AcceleratorType("a4000", ("a4000", "RTX A4000"), (
        _v("a4000", "a4000", ("NVIDIA RTX A4000",), 16, 448, 140, 76.7, 19.2, None,
           "NVIDIA RTX A4000 datasheet (16 GB GDDR6, 448 GB/s, 140 W, FP32 19.2, tensor 153.4 "
           "sparse)", None),
    )),
    AcceleratorType("rtx6000ada", ("rtx6000ada", "RTX 6000 Ada"), (
        _v("rtx6000ada", "rtx6000ada", ("NVIDIA RTX 6000 Ada Generation",), 48, 960, 300, 364.2,
           91.1, None,
           "NVIDIA RTX 6000 Ada Generation datasheet (48 GB GDDR6, 960 GB/s, 300 W, FP32 91.1, "
           "FP16 tensor 728.5 sparse)", None),
    )),
    AcceleratorType("titanrtx", ("titanrtx", "Titan RTX"), (
        _v("titanrtx", "titanrtx", ("TITAN RTX", "NVIDIA TITAN RTX"), 24, 672, 280, 130.5, 16.3,
           None, "NVIDIA TITAN RTX product page (24 GB GDDR6, 672 GB/s, 280 W); " + _TURING,
           None),
    )),
    AcceleratorType("titanv", ("titanv", "Titan V"), (
        _v("titanv", "titanv", ("TITAN V", "NVIDIA TITAN V"), 12, 652.8, 250, 110, 14.9, 7.45,
           "NVIDIA TITAN V product page (12 GB HBM2, 652.8 GB/s, 250 W, 110 tensor TFLOPS)",
           None),
    )),
    AcceleratorType("rtx2080ti", ("rtx2080ti", "RTX 2080 Ti", "RTX 2080Ti", "2080Ti", "2080 Ti"), (
        _v("rtx2080ti", "rtx2080ti", ("GeForce RTX 2080 Ti", "NVIDIA GeForce RTX 2080 Ti"),
           11, 616, 250, 53.8, 13.4, None, _TURING + ": 11 GB GDDR6, 616 GB/s, 250 W", None),
    )),
    AcceleratorType("gtx1080ti", ("gtx1080ti", "GTX 1080 Ti", "GTX 1080Ti", "1080Ti"), (
        _v("gtx1080ti", "gtx1080ti", ("GeForce GTX 1080 Ti", "NVIDIA GeForce GTX 1080 Ti"),
           11, 484, 250, None, 11.3, None,
           "NVIDIA GeForce GTX 1080 Ti specifications (11 GB GDDR5X, 484 GB/s, 250 W, FP32 11.3;"
           " no tensor cores)", None),
    )),
    AcceleratorType("rtx3080", ("rtx3080", "RTX 3080"), (
        _v("rtx3080", "rtx3080", ("GeForce RTX 3080", "NVIDIA GeForce RTX 3080"), 10, 760, 320,
           59.5, 29.8, None, _GA102 + ": 10 GB GDDR6X, 760 GB/s, 320 W", None),
    )),
    AcceleratorType("rtx3090", ("rtx3090", "RTX 3090"), (
        _v("rtx3090", "rtx3090", ("GeForce RTX 3090", "NVIDIA GeForce RTX 3090"), 24, 936, 350,
           71, 35.6, None, _GA102 + ": 24 GB GDDR6X, 936 GB/s, 350 W", None),
    )),
    AcceleratorType("a5000", ("a5000", "RTX A5000"), (
        _v("a5000", "a5000", ("NVIDIA RTX A5000",), 24, 768, 230, 111.1, 27.8, None,
           "NVIDIA RTX A5000 datasheet (24 GB GDDR6, 768 GB/s, 230 W, FP32 27.8, tensor 222.2 "
           "sparse)", None),
    )),
    AcceleratorType("a6000", ("a6000", "RTX A6000"), (
        _v("a6000", "a6000", ("NVIDIA RTX A6000",), 48, 768, 300, 154.8, 38.7, None,
           "NVIDIA RTX A6000 datasheet (48 GB GDDR6, 768 GB/s, 300 W, FP32 38.7, tensor 309.7 "
           "sparse)", None),
    )),
    AcceleratorType("a2", ("a2",), (
        _v("a2", "a2", ("NVIDIA A2",), 16, 200, 60, 18, 4.5, None,
           "NVIDIA A2 datasheet (16 GB GDDR6, 200 GB/s, 40-60 W, FP32 4.5, FP16 tensor 36 "
           "sparse)", None),
    )),
    AcceleratorType("a30", ("a30",), (
        _v("a30", "a30", ("NVIDIA A30",), 24, 933, 165, 165, 10.3, 5.2,
           "NVIDIA A30 datasheet (24 GB HBM2, 933 GB/s, 165 W, FP32 10.3, FP64 5.2, FP16 tensor "
           "330 sparse)", None),
    )),
    AcceleratorType("l40", ("l40",), (
        _v("l40", "l40", ("NVIDIA L40",), 48, 864, 300, 181.05, 90.5, None,
           "NVIDIA L40 datasheet (48 GB GDDR6, 864 GB/s, 300 W, FP32 90.5, FP16 tensor 362.1 "
           "sparse)", None),
    )),
    AcceleratorType("a100", ("a100", "A100 SXM4", "A100 SXM", "A100 PCIe"), (
        _v("a100-sxm4-40gb", "a100", ("NVIDIA A100-SXM4-40GB",), 40, 1555, 400, 312, 19.5, 9.7,
           _A100, ("A100", "SXM4 40GB")),
        _v("a100-sxm4-80gb", "a100", ("NVIDIA A100-SXM4-80GB",), 80, 2039, 400, 312, 19.5, 9.7,
           _A100, ("A100", "SXM4 80GB")),
        _v("a100-pcie-40gb", "a100", ("NVIDIA A100-PCIE-40GB",), 40, 1555, 250, 312, 19.5, 9.7,
           _A100, ("A100", "PCIe 40GB")),
        _v("a100-pcie-80gb", "a100", ("NVIDIA A100 80GB PCIe",), 80, 1935, 300, 312, 19.5, 9.7,
           _A100, ("A100", "PCIe 80GB")),
    )),
    AcceleratorType("l4", ("l4",), (
        _v("l4", "l4", ("NVIDIA L4",), 24, 300, 72, 121, 30.3, None,
           "NVIDIA L4 datasheet (24 GB GDDR6, 300 GB/s)", ("L4", "PCIe LP")),
    )),
    AcceleratorType("l40s", ("l40s",), (
        _v("l40s", "l40s", ("NVIDIA L40S",), 48, 864, 350, 362.05, 91.6, None,
           "NVIDIA L40S datasheet (48 GB GDDR6, 864 GB/s)", ("L40S", "PCIe")),
    )),
    AcceleratorType("h100", ("h100",), (  # form factors: the variants' aliases below
        _v("h100-sxm5-80gb", "h100", ("NVIDIA H100 80GB HBM3", "NVIDIA H100-SXM5-80GB", "H100 SXM",
                                      "H100 SXM5"),
           80, 3350, 700, 989.4, 66.9, 34, _H100, ("H100", "SXM5 80GB")),
        _v("h100-pcie-80gb", "h100", ("NVIDIA H100 PCIe", "H100 PCIe"), 80, 2000, 350, 756, 51, 26,
           _H100, ("H100", "PCIe 80GB")),
    )),
    AcceleratorType("h200", ("h200",), (
        _v("h200-sxm-141gb", "h200", ("NVIDIA H200",), 141, 4800, 700, 989, 67, 34,
           _H200, ("H200", "SXM 141GB")),
        _v("h200-nvl-141gb", "h200", ("NVIDIA H200 NVL",), 141, 4800, 600, 835, 60, 30,
           _H200, ("H200", "NVL 141GB")),
    )),
)

CPU_CLASSES: tuple[CpuClass, ...] = (
    CpuClass("epyc-7763", 64, 2.45, 280, 16,
             "AMD EPYC 7763 product page (64 cores, 2.45 GHz base, 280 W); Zen 3: 2x256-bit FMA"),
    CpuClass("xeon-8380", 40, 2.3, 270, 32,
             "Intel Xeon Platinum 8380 product page (40 cores, 2.3 GHz base, 270 W); "
             "2x AVX-512 FMA units"),
)
# fmt: on

TYPE_IDS: frozenset[str] = frozenset(t.id for t in TYPES)
VARIANTS: dict[str, Variant] = {v.id: v for t in TYPES for v in t.variants}
# The variant a name that says only the type stands for (a data set's "v100", a request's
# "a100"): the first listed.
DEFAULT_VARIANT: dict[str, Variant] = {t.id: t.variants[0] for t in TYPES}


# --- names -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AcceleratorName:
    """A name met in the wild, resolved. `type` is None when we do not know the name."""

    raw: str
    type: str | None
    variant: str | None = None
    memory_gib: float | None = None

    @property
    def known(self) -> bool:
        return self.type is not None


def _key(name: str) -> str:
    return re.sub(r"[\s_-]+", "-", name.strip().lower())


# Names that say only the type (and sometimes the memory), as public data sets write them.
_DATASET_ONLY: dict[str, tuple[str, float | None]] = {
    "v100m32": ("v100", 32),  # Alibaba PAI 2020: V100 with 32 GB
    # Benchmarks name the memory, not the form factor.
    "V100 16GB": ("v100", 16), "V100 32GB": ("v100", 32),
    "A100 40GB": ("a100", 40), "A100 80GB": ("a100", 80),
}  # fmt: skip


def _build_alias_map() -> dict[str, AcceleratorName]:
    aliases: dict[str, AcceleratorName] = {}

    def add(name: str, resolved: AcceleratorName) -> None:
        key = _key(name)
        resolved = AcceleratorName("", resolved.type, resolved.variant, resolved.memory_gib)
        if key in aliases and aliases[key] != resolved:
            raise ValueError(f"alias {name!r} maps to two accelerators")
        aliases[key] = resolved

    add(CPU, AcceleratorName(CPU, CPU))
    for t in TYPES:
        # A type with one variant names that variant; otherwise the variant stays open.
        only = t.variants[0] if len(t.variants) == 1 else None
        for name in (t.id, *t.dataset_names):
            if only is None:
                add(name, AcceleratorName(name, t.id))
            else:
                add(name, AcceleratorName(name, t.id, only.id, only.memory_gib))
        for v in t.variants:
            for name in (v.id, *v.names):
                add(name, AcceleratorName(name, t.id, v.id, v.memory_gib))
    for name, (type_id, mem) in _DATASET_ONLY.items():
        add(name, AcceleratorName(name, type_id, None, mem))
    return aliases


_ALIASES = _build_alias_map()


def resolve(raw: str) -> AcceleratorName:
    """Map any accelerator name (GPU-operator label, NVML name, data-set name) to its type.

    An unknown name stays unknown, with its raw text: berth never guesses a type.
    """
    found = _ALIASES.get(_key(raw))
    if found is None:
        return AcceleratorName(raw, None)
    return AcceleratorName(raw, found.type, found.variant, found.memory_gib)
