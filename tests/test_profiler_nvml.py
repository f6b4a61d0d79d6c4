import subprocess
import sys

import pytest

from berth.profiler.nvml import NvmlBackend, NvmlUnavailable, pod_of_cgroup

UID = "0e3bd6a4-1c41-4f35-9b7c-2d9f0b7e8a11"
CONTAINER = "a" * 64


def test_a_systemd_cgroup_names_the_pod_and_container() -> None:
    text = (
        "0::/kubepods.slice/kubepods-burstable.slice/"
        f"kubepods-burstable-pod{UID.replace('-', '_')}.slice/cri-containerd-{CONTAINER}.scope\n"
    )
    assert pod_of_cgroup(text) == (UID, CONTAINER)


def test_a_cgroupfs_cgroup_names_the_pod_and_container() -> None:
    text = f"12:memory:/kubepods/besteffort/pod{UID}/{CONTAINER}\n11:cpu:/kubepods\n"
    assert pod_of_cgroup(text) == (UID, CONTAINER)


def test_a_process_outside_kubernetes_has_no_pod() -> None:
    assert pod_of_cgroup("0::/user.slice/user-0.slice/session-1.scope\n") == (None, None)


def _nvml_present() -> bool:
    try:
        NvmlBackend().close()
    except NvmlUnavailable:
        return False
    return True


@pytest.mark.skipif(_nvml_present(), reason="this machine has an NVIDIA driver")
def test_without_a_driver_nvml_says_so_and_the_commands_exit_2() -> None:
    with pytest.raises(NvmlUnavailable, match="no NVIDIA driver"):
        NvmlBackend()
    for command in (
        ["exporter", "--port", "0"],
        ["profile", "--family", "x", "--batch-size", "1", "--", "true"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "berth", *command], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2
        assert "NVML is not available here" in done.stderr
        assert "Traceback" not in done.stderr


@pytest.mark.skipif(not _nvml_present(), reason="no NVIDIA driver here")
def test_nvml_samples_every_device_with_its_power_and_memory() -> None:
    backend = NvmlBackend()
    try:
        sample = backend.sample()
    finally:
        backend.close()
    assert sample.devices and sample.driver
    for d in sample.devices:
        assert d.name and d.uuid.startswith("GPU-")
        assert d.power_w is not None and d.power_w > 0
        assert d.fb_used_mib is not None and d.fb_free_mib is not None
