import csv
import subprocess
import sys
from pathlib import Path

import pytest

from berth.profiler.summary import NothingMeasured, summarise
from tests.recordings import busy_run, write

WORKLOAD = """
import time
from berth.profiler.progress import Progress
p = Progress("resnet50", 64)
end = time.time() + 3
while time.time() < end:
    time.sleep(0.01)
    p.advance(64)
"""


def test_throughput_is_the_workloads_own_count_between_its_first_and_last_report() -> None:
    measured = summarise(
        [(1002.0, 100.0), (1005.0, 400.0), (1008.0, 700.0)],
        busy_run(10, 250.0),
        "resnet50",
        64,
        set(),
        "test",
    )
    r = measured.record
    assert (r.accelerator, r.count, r.family, r.batch_size) == ("h100", 1, "resnet50", 64)
    assert r.throughput == pytest.approx(100.0)
    assert r.watts_per_device == pytest.approx(250.0)
    assert measured.power_from == "energy counter"


def test_power_is_per_device_over_the_devices_the_workload_used() -> None:
    measured = summarise(
        [(1001.0, 0.0), (1009.0, 800.0)], busy_run(10, 250.0, devices=4), "gpt2", 8, set(), "t"
    )
    assert measured.record.count == 4
    assert measured.record.watts_per_device == pytest.approx(250.0)
    assert measured.energy_j == pytest.approx(4 * 250.0 * 8)


def test_a_workload_that_never_reported_progress_is_refused_with_what_to_do() -> None:
    with pytest.raises(NothingMeasured, match=r"Progress\.advance"):
        summarise([(1001.0, 5.0)], busy_run(5, 250.0), "gpt2", 8, set(), "t")


def _profile(tmp_path: Path, *command: str) -> subprocess.CompletedProcess[str]:
    recording = write(tmp_path / "gpu.jsonl", busy_run(600, 250.0, per_s=10))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "berth",
            "profile",
            "--replay",
            str(recording),
            "--family",
            "resnet50",
            "--batch-size",
            "64",
            "--interval",
            "0.05",
            "--out",
            str(tmp_path / "profiles.csv"),
            "--",
            *command,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_berth_profile_runs_a_workload_and_appends_its_record(tmp_path: Path) -> None:
    done = _profile(tmp_path, sys.executable, "-c", WORKLOAD)
    assert done.returncode == 0, done.stderr
    with (tmp_path / "profiles.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    assert (row["family"], row["accelerator"], row["count"]) == ("resnet50", "h100", "1")
    assert 1000 < float(row["throughput"]) < 6400  # 64 samples per >= 10 ms step
    assert float(row["watts_per_device"]) == pytest.approx(250.0, rel=0.1)
    assert "driver 550.54.15" in row["source"] and "cmd: " in row["source"]


def test_a_failing_workload_records_nothing(tmp_path: Path) -> None:
    done = _profile(tmp_path, sys.executable, "-c", "raise SystemExit(3)")
    assert done.returncode == 1
    assert "exited with 3" in done.stderr
    assert not (tmp_path / "profiles.csv").exists()
