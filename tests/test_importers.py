"""Importers turn the shared measurements into profile records with honest units. Counts are
pinned to the raw files (counted independently with awk and a JSON walk)."""

from __future__ import annotations

from pathlib import Path

import pytest

from berth.core import tables
from berth.core.profile import ProfileRecord
from berth.recommender.importers import (
    derive,
    derive_transfer,
    import_elasticflow,
    import_gavel,
    import_lambda_tf,
    import_neusight,
    import_pollux_t4,
    import_zeus_power,
)


def test_elasticflow_yields_every_measured_a100_cell(shared_data: Path) -> None:
    records, skipped = import_elasticflow(shared_data / "elasticflow/throughputs_A100")
    assert (len(records), len(skipped)) == (109, 10)
    assert {r.accelerator for r in records} == {"a100"}
    assert {r.family for r in records} == {
        "bert",
        "deepspeech2",
        "gpt2",
        "inception3",
        "resnet50",
        "resnet50_cifar10",
        "vgg16",
    }


def test_elasticflow_iterations_become_samples_through_the_global_batch(shared_data: Path) -> None:
    records, _ = import_elasticflow(shared_data / "elasticflow/throughputs_A100")
    (r,) = [r for r in records if (r.family, r.batch_size, r.count) == ("resnet50", 64, 1)]
    assert r.throughput == pytest.approx(6.8429775823889685 * 64)
    assert r.conversion == "iterations/s x global batch 64"


def test_gavel_yields_isolated_runs_with_a_batch_size(shared_data: Path) -> None:
    records, skipped = import_gavel(shared_data / "gavel/simulation_throughputs.json")
    assert (len(records), len(skipped)) == (240, 12)
    assert {r.accelerator for r in records} == {"k80", "p100", "v100"}
    assert sum("no batch size" in s for s in skipped) == 6
    assert sum("not measured" in s for s in skipped) == 3


def test_gavel_steps_become_samples_through_the_job_types_batch(shared_data: Path) -> None:
    records, _ = import_gavel(shared_data / "gavel/simulation_throughputs.json")
    (r,) = [
        r
        for r in records
        if (r.accelerator, r.family, r.batch_size, r.count) == ("v100", "resnet50", 64, 4)
    ]
    assert r.throughput == pytest.approx(9.451949566394442 * 64)


def test_a_record_without_a_positive_throughput_is_refused() -> None:
    with pytest.raises(ValueError, match="not a measurement"):
        ProfileRecord("resnet50", 64, "v100", 1, 0.0, None, "test", "none")


def test_pollux_keeps_the_packed_placement_of_each_t4_count(shared_data: Path) -> None:
    # awk: placements matching ^[1-4]?4*$ (a partial node, then full nodes of four)
    records, skipped = import_pollux_t4(shared_data / "pollux/t4_profiles")
    assert (len(records), len(skipped)) == (824, 4718)
    assert {r.accelerator for r in records} == {"t4"}
    assert max(r.count for r in records) == 16


def test_pollux_step_time_becomes_samples_through_the_global_batch(shared_data: Path) -> None:
    records, _ = import_pollux_t4(shared_data / "pollux/t4_profiles")
    (r,) = [r for r in records if (r.family, r.count, r.batch_size) == ("resnet50", 4, 80)]
    assert r.throughput == pytest.approx(80 / 0.16101932525634766)
    assert "placement 4 local batch 20" in r.source


def test_zeus_power_is_the_median_at_the_default_limit(shared_data: Path) -> None:
    power = import_zeus_power(shared_data / "zeus")
    assert len(power) == 20  # 4 GPUs x 5 networks
    (p,) = [p for p in power if (p.family, p.accelerator) == ("resnet50", "v100")]
    assert (p.power_limit_w, p.runs) == (250, 8)
    assert p.watts == pytest.approx((220.66608560384415 + 222.43902320007504) / 2)


def test_the_shipped_tables_are_what_the_importers_make(shared_data: Path) -> None:
    assert tables.read() == derive(shared_data)
    assert tables.read_transfer() == derive_transfer(shared_data)


def test_lambda_yields_every_cell_but_laptop_gpus(shared_data: Path) -> None:
    records, skipped = import_lambda_tf(shared_data / "lambda-tf")
    # 38 systems x 6 models x 2 precisions; 3 laptop GPUs (36 cells, the 2 zeros among them)
    assert (len(records), len(skipped)) == (420, 36)
    assert all(s.endswith(": a laptop GPU") for s in skipped)
    assert {r.precision for r in records} == {"fp32", "fp16"}
    assert {r.framework for r in records} == {"tensorflow"}
    assert {r.accelerator for r in records} == {
        "rtx3080", "rtx3090", "a100", "a6000", "rtx2080ti", "rtx8000", "v100", "gtx1080ti"
    }  # fmt: skip


def test_lambda_rates_are_summed_images_at_the_bs_tables_global_batch(shared_data: Path) -> None:
    records, _ = import_lambda_tf(shared_data / "lambda-tf")
    (cell,) = [r for r in records if r.source.endswith("fp32.csv '2x RTX 3080' resnet50")]
    # tf-train-throughput-fp32.csv: 2x RTX 3080 resnet50 = 736; tf-train-bs-fp32.csv: 112
    assert (cell.throughput, cell.batch_size, cell.count) == (736.0, 112, 2)
    (cloud,) = [r for r in records
                if r.source.endswith("fp16.csv 'Lambda Cloud — 4x RTX A6000' vgg16")]  # fmt: skip
    assert (cloud.accelerator, cloud.count) == ("a6000", 4)


def test_a_shipped_table_with_a_foreign_header_is_refused(tmp_path: Path) -> None:
    (tmp_path / tables.THROUGHPUT_FILE).write_text("family,watts\nbert,1\n")
    (tmp_path / tables.POWER_FILE).write_text("")
    with pytest.raises(ValueError, match="is not ProfileRecord's"):
        tables.read(tmp_path)


def test_neusight_yields_single_gpu_training_on_nvidia_only(shared_data: Path) -> None:
    records, skipped = import_neusight(shared_data / "neusight")
    # 149 end-to-end records: 41 single-GPU training, 15 of them on AMD; 11 four-GPU; 97 inference
    assert (len(records), len(skipped)) == (26, 123)
    why = [s.split(": ", 1)[1] for s in skipped]
    assert (why.count("inference"), why.count("Megatron on 4 GPUs, batch semantics not stated"),
            len([w for w in why if w.startswith("AMD Instinct")])) == (69, 11, 43)  # fmt: skip
    assert {r.accelerator for r in records} == {"v100", "a100", "h100", "l4"}


def test_neusight_latency_becomes_samples_through_the_batch(shared_data: Path) -> None:
    records, _ = import_neusight(shared_data / "neusight")
    (cell,) = [
        r for r in records if r.source.endswith("A100_80GB_PCIe/bert_large-train-512-8.json")
    ]
    assert cell.throughput == pytest.approx(8 / 0.7162193969726562)  # e2e_latency 716.22 ms


def test_a_records_file_written_before_precision_and_framework_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "old.csv"
    path.write_text(
        "family,batch_size,accelerator,count,throughput,watts_per_device,source,conversion\n"
        "resnet50,64,t4,1,100.0,,berth profile,samples/s\n"
    )
    (r,) = tables.read_records(path)
    assert (r.throughput, r.precision, r.framework) == (100.0, "fp32", "pytorch")
