"""The energy model reproduces hand-computed cases and keeps each figure's provenance."""

from __future__ import annotations

import pytest

from berth.core.energy import NodeShare, estimate, node_idle_watts
from berth.core.provenance import Origin, measured, predicted
from berth.core.snapshot import build_snapshot
from tests.test_snapshot import node


def test_two_gpus_on_an_awake_node_by_hand() -> None:
    # 2 GPUs at 300 W (measured) + 2/8 of a 200 W idle node = 650 W.
    # 650 W / 1,000 samples/s = 0.65 J/sample; 3.6M samples take 3,600 s = 0.65 kWh.
    result = estimate(
        device_watts=measured(300, "W", "zeus"),
        devices=2,
        throughput=predicted(1000, "samples/s", "model v1", 0.08),
        nodes=[NodeShare(measured(200, "W", "exporter"), awake=True, used=2, total=8)],
        total_samples=3_600_000,
    )
    assert result.watts.value == pytest.approx(650)
    assert result.joules_per_sample.value == pytest.approx(0.65)
    assert result.runtime_s is not None and result.runtime_s.value == pytest.approx(3600)
    assert result.energy_kwh is not None and result.energy_kwh.value == pytest.approx(0.65)


def test_a_node_woken_for_the_job_is_charged_all_its_idle_power() -> None:
    result = estimate(
        measured(300, "W", "zeus"),
        2,
        measured(1000, "samples/s", "gavel"),
        [NodeShare(measured(200, "W", "exporter"), awake=False, used=2, total=8)],
        None,
    )
    assert result.watts.value == pytest.approx(800)
    assert result.runtime_s is None and result.energy_kwh is None


def test_every_figure_keeps_the_provenance_of_its_inputs() -> None:
    throughput = predicted(1000, "samples/s", "model v1", 0.08)
    result = estimate(measured(300, "W", "zeus"), 1, throughput, [], 1000)
    assert result.joules_per_sample.provenance.origin is Origin.MODELLED
    assert throughput in result.joules_per_sample.provenance.inputs
    text = result.joules_per_sample.describe()
    assert "predicted (model v1) ±8%" in text and "measured (zeus)" in text


def test_unknown_idle_power_is_counted_as_zero_and_says_so() -> None:
    state = build_snapshot([node()], []).node("gpu-1")
    idle = node_idle_watts(state)
    assert idle.value == 0 and idle.provenance.origin is Origin.MODELLED
    assert "unknown" in idle.provenance.detail


def test_zero_throughput_is_refused() -> None:
    with pytest.raises(ValueError, match="throughput"):
        estimate(measured(300, "W", "zeus"), 1, measured(0, "samples/s", "x"), [], None)
