"""The alias map resolves every accelerator name in the shared data and in GPU-operator labels,
and the catalog's figures are the ones the shared spec table gives."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from berth.core.catalog import CPU, CPU_CLASSES, TYPE_IDS, TYPES, VARIANTS, resolve


def _dataset_gpu_names(data: Path) -> dict[str, set[str]]:
    gavel = json.loads((data / "gavel/simulation_throughputs.json").read_text())
    with (data / "alibaba-pai-2020/pai_machine_spec.csv").open() as f:
        # No header row: machine, gpu_type, cap_cpu, cap_mem, cap_gpu (data README).
        alibaba = {row[1] for row in csv.reader(f)}
    with (data / "gpu_specs.csv").open() as f:
        specs = {row["gpu"] for row in csv.DictReader(f)}
    return {
        # Gavel's "_unconsolidated" keys are a placement variant of the same GPU.
        "gavel": {k.removesuffix("_unconsolidated") for k in gavel},
        "elasticflow": {
            p.name.removeprefix("throughputs_")
            for p in (data / "elasticflow").glob("throughputs_*")
        },
        "pollux": {p.name.removesuffix("_profiles") for p in (data / "pollux").glob("*_profiles")},
        "zeus": {
            p.stem.removeprefix("summary_power_")
            for p in (data / "zeus").glob("summary_power_*.csv")
        },
        "alibaba": alibaba - {"MISC"},
        "gpu_specs": specs,
    }


def test_every_gpu_name_in_the_shared_data_resolves_to_a_type(shared_data: Path) -> None:
    names = _dataset_gpu_names(shared_data)
    assert names["gavel"] == {"k80", "p100", "v100"}
    assert names["zeus"] == {"v100", "a40", "p100", "rtx6000"}
    assert names["alibaba"] == {"V100M32", "V100", "P100", "T4", "CPU"}
    for source, found in names.items():
        for name in found:
            assert resolve(name).known, f"{source}: {name}"


def test_alibaba_names_resolve_with_their_memory() -> None:
    assert resolve("V100M32").type == "v100"
    assert resolve("V100M32").memory_gib == 32
    assert resolve("CPU").type == CPU


def test_unknown_name_stays_unknown_with_its_raw_text() -> None:
    misc = resolve("MISC")
    assert (misc.known, misc.raw, misc.type) == (False, "MISC", None)
    assert not resolve("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb").known


GPU_OPERATOR_LABELS = {
    "NVIDIA-A100-SXM4-80GB": "a100-sxm4-80gb",
    "NVIDIA-A100-SXM4-40GB": "a100-sxm4-40gb",
    "NVIDIA-A100-PCIE-40GB": "a100-pcie-40gb",
    "NVIDIA-A100-80GB-PCIe": "a100-pcie-80gb",
    "NVIDIA-H100-80GB-HBM3": "h100-sxm5-80gb",
    "NVIDIA-H100-PCIe": "h100-pcie-80gb",
    "NVIDIA-H200": "h200-sxm-141gb",
    "NVIDIA-H200-NVL": "h200-nvl-141gb",
    "Tesla-V100-SXM2-16GB": "v100-sxm2-16gb",
    "Tesla-V100-SXM2-32GB": "v100-sxm2-32gb",
    "Tesla-V100-PCIE-16GB": "v100-pcie-16gb",
    "Tesla-V100-PCIE-32GB": "v100-pcie-32gb",
    "Tesla-T4": "t4",
    "NVIDIA-L4": "l4",
    "NVIDIA-A10": "a10",
    "NVIDIA-L40S": "l40s",
}


@pytest.mark.parametrize(("label", "variant"), sorted(GPU_OPERATOR_LABELS.items()))
def test_gpu_operator_product_label_resolves_to_its_variant(label: str, variant: str) -> None:
    assert resolve(label).variant == variant
    assert resolve(label).type == VARIANTS[variant].type


def test_nvml_names_resolve_like_their_gpu_operator_labels() -> None:
    for variant in VARIANTS.values():
        for name in variant.names:
            assert resolve(name).variant == variant.id
            assert resolve(name.replace(" ", "-")).variant == variant.id


def test_catalog_figures_equal_the_shared_spec_table(shared_data: Path) -> None:
    with (shared_data / "gpu_specs.csv").open() as f:
        rows = {(r["gpu"], r["variant"]): r for r in csv.DictReader(f)}
    checked = 0
    for v in VARIANTS.values():
        if v.specs_row is None:
            continue
        row = rows[v.specs_row]
        n = v.devices_per_board
        assert v.tdp_w * n == pytest.approx(float(row["tdp_w"])), v.id
        assert v.fp32_tflops * n == pytest.approx(float(row["fp32_tflops"])), v.id
        fp16 = row["fp16_bf16_tensor_dense_tflops"]
        assert (v.fp16_tensor_tflops is None) == (fp16 == ""), v.id
        if fp16:
            assert v.fp16_tensor_tflops == pytest.approx(float(fp16)), v.id
        checked += 1
    # Not in the table, each with its own datasheet as the source: A40, RTX 6000 and the types
    # benchmarks name (workstation and GeForce cards, A2, A30, L40, V100 SXM3).
    assert len(VARIANTS) - checked == 21


def test_every_catalog_row_names_its_source() -> None:
    assert all(v.source for v in VARIANTS.values())
    assert all(c.source for c in CPU_CLASSES)
    assert {t.id for t in TYPES} == TYPE_IDS


def test_cpu_class_peak_is_cores_times_clock_times_flop_per_cycle() -> None:
    epyc = next(c for c in CPU_CLASSES if c.id == "epyc-7763")
    assert epyc.peak_fp64_gflops == pytest.approx(64 * 2.45 * 16)


@pytest.mark.parametrize(
    ("name", "type_id", "memory"),
    [("RTX 6000", "rtx6000", 24), ("RTX 6000 Ada", "rtx6000ada", 48), ("2080 Ti", "rtx2080ti", 11),
     ("Tesla V100", "v100", None), ("V100 32GB", "v100", 32), ("A100-80GB", "a100", 80),
     ("H100 PCIe", "h100", 80), ("NVIDIA-GeForce-RTX-4090", "rtx4090", 24)],
)  # fmt: skip
def test_names_benchmarks_use_resolve_to_their_type(
    name: str, type_id: str, memory: float | None
) -> None:
    found = resolve(name)
    assert (found.type, found.memory_gib) == (type_id, memory)
