import pytest

from berth.core.snapshot import Health
from berth.profiler.health import device_health, idle_watts, node_health
from berth.profiler.samples import Sample
from tests.recordings import busy_run, device, idle


def test_a_healthy_device_is_healthy() -> None:
    assert device_health(device())[0] is Health.HEALTHY


@pytest.mark.parametrize(
    ("fields", "health"),
    [
        ({"ecc_dbe_volatile": 2}, Health.UNHEALTHY),
        ({"xid": 79}, Health.UNHEALTHY),
        ({"xid": 13}, Health.DEGRADED),
        ({"retired_pages_pending": True}, Health.DEGRADED),
        ({"thermal_throttle": True}, Health.DEGRADED),
    ],
)
def test_device_health_follows_its_error_signals(fields: dict[str, object], health: Health) -> None:
    assert device_health(device(**fields))[0] is health  # type: ignore[arg-type]


def test_a_node_is_as_healthy_as_its_worst_device_and_says_why() -> None:
    sample = Sample(0.0, (device(0), device(1, xid=79), device(2, thermal_throttle=True)))
    health, reasons = node_health(sample)
    assert health is Health.UNHEALTHY
    assert reasons == ["GPU 1: Xid 79", "GPU 2: thermal slowdown"]


def test_idle_watts_sums_each_devices_median_idle_power() -> None:
    run = busy_run(5, 300.0, devices=2)
    window = [idle(run[0], 60.0), idle(run[1], 62.0), idle(run[2], 200.0), run[3]]
    assert idle_watts(window) == pytest.approx(2 * 62.0)


def test_idle_watts_is_unknown_until_every_device_was_seen_idle() -> None:
    assert idle_watts(busy_run(3, 300.0, devices=2)) is None
