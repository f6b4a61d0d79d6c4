import math

from berth.core.snapshot import Health
from berth.profiler.exposition import render
from berth.profiler.samples import Sample
from tests.recordings import busy_run, device


def test_metrics_carry_dcgm_names_and_the_pod_on_the_gpu() -> None:
    text = render(busy_run(1, 250.0, pod="train-w0")[1], "node-1", Health.HEALTHY, 120.0, {})
    assert "# TYPE DCGM_FI_DEV_POWER_USAGE gauge" in text
    line = next(x for x in text.splitlines() if x.startswith("DCGM_FI_DEV_POWER_USAGE{"))
    assert 'gpu="0"' in line and 'Hostname="node-1"' in line and 'pod="train-w0"' in line
    assert line.endswith(" 250")
    assert 'berth_node_health{Hostname="node-1",state="healthy"} 1' in text
    assert "berth_node_idle_power_watts" in text


def test_a_field_the_device_does_not_report_is_left_out_and_nan_is_spelt_for_prometheus() -> None:
    sample = Sample(0.0, (device(energy_mj=None, power_w=math.nan),))  # type: ignore[arg-type]
    text = render(sample, "n", Health.HEALTHY, None, {})
    assert "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" not in text
    assert any(
        x.startswith("DCGM_FI_DEV_POWER_USAGE{") and x.endswith(" NaN") for x in text.splitlines()
    )
