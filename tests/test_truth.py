"""The simulator's ground truth uses measurements only, and names what it had to model."""

from __future__ import annotations

import pytest

from berth.core import tables
from berth.core.catalog import VARIANTS
from berth.core.profile import PowerRecord, ProfileRecord, Rate, nearest
from berth.core.provenance import Origin
from berth.placement.fallback import SpecTransfer
from berth.simulator.truth import GroundTruth


def record(family: str, type_id: str, count: int, batch: int, rate: float) -> ProfileRecord:
    return ProfileRecord(family, batch, type_id, count, rate, None, f"{type_id}-{batch}", "test")


ZEUS = [
    PowerRecord("resnet50", "v100", 64, 200.0, 250.0, 3, "zeus v100"),
    PowerRecord("resnet50", "p100", 64, 150.0, 250.0, 3, "zeus p100"),
]


def test_the_nearest_measured_batch_is_taken_on_a_log_scale() -> None:
    rates = [Rate(64, 1.0, "a"), Rate(256, 2.0, "b")]
    assert nearest(rates, 100).batch == 64  # log(100/64) < log(256/100)
    assert nearest(rates, 200).batch == 256
    assert nearest(rates, 128).batch == 64  # a tie goes to the smaller batch


def test_a_throughput_at_another_batch_says_which_batch_it_is() -> None:
    truth = GroundTruth([record("bert", "a100", 1, 64, 380.0)], ZEUS)
    figure = truth.throughput("bert", "a100", 1, 128)
    assert figure is not None and figure.value == 380.0
    assert figure.provenance.origin is Origin.MEASURED
    assert "nearest measured batch to 128" in figure.provenance.detail


def test_an_unmeasured_count_or_type_gets_no_throughput() -> None:
    truth = GroundTruth([record("bert", "a100", 1, 64, 380.0)], ZEUS)
    assert truth.throughput("bert", "a100", 2, 64) is None
    assert truth.throughput("bert", "t4", 1, 64) is None


def test_power_is_measured_where_zeus_ran_the_family_on_the_type() -> None:
    watts = GroundTruth([], ZEUS).device_watts("resnet50", VARIANTS["v100-sxm2-16gb"])
    assert (watts.value, watts.provenance.origin) == (200.0, Origin.MEASURED)


def test_power_elsewhere_is_tdp_times_zeus_fraction_and_says_modelled() -> None:
    watts = GroundTruth([], ZEUS).device_watts("resnet50", VARIANTS["a100-sxm4-80gb"])
    assert watts.value == pytest.approx(400 * (0.8 + 0.6) / 2)
    assert watts.provenance.origin is Origin.MODELLED


def test_the_fallback_scales_the_a100_rate_by_fp32_peak_and_says_modelled() -> None:
    fallback = SpecTransfer([record("bert", "a100", 2, 64, 500.0)])
    p = fallback.predict("bert", 64, VARIANTS["t4"], 2)
    assert p is not None
    assert p.throughput.value == pytest.approx(500.0 * 8.1 / 19.5)
    assert p.throughput.provenance.origin is Origin.MODELLED
    assert p.throughput.provenance.inputs[0].provenance.origin is Origin.MEASURED
    assert fallback.predict("bert", 64, VARIANTS["t4"], 4) is None


def test_the_shipped_tables_cover_every_itp_model_on_a100() -> None:
    truth = GroundTruth(*tables.read())
    for family in ("bert", "deepspeech2", "gpt2", "inception3", "resnet50", "vgg16"):
        assert truth.counts(family, "a100") == [1, 2, 4, 8, 16, 32, 64]
