import json
import subprocess
import sys
from pathlib import Path

import pytest

from berth.recommender.retrain import decide

RECORDS = (
    "family,batch_size,accelerator,count,throughput,watts_per_device,source,conversion\n"
    "resnet50,64,h100,1,2600.0,610.0,berth-profile test,samples reported by the workload\n"
)


def _metrics(throughput: float, power: float) -> dict[str, float]:
    return {"throughput_mape": throughput, "power_mape": power}


def test_a_candidate_with_a_higher_throughput_error_is_not_promoted() -> None:
    promote, why = decide(_metrics(0.10, 0.2), _metrics(0.11, 0.1))
    assert not promote and "throughput" in why


def test_a_candidate_much_worse_on_power_is_not_promoted() -> None:
    assert not decide(_metrics(0.10, 0.10), _metrics(0.09, 0.20))[0]


def test_an_equal_or_better_candidate_is_promoted() -> None:
    assert decide(_metrics(0.10, 0.10), _metrics(0.10, 0.105))[0]


def _train(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "berth", "train", "--members", "1", "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )


@pytest.mark.slow
def test_retraining_refuses_a_worse_model_and_keeps_the_current_one(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text(RECORDS)
    # One epoch cannot match the shipped model: the gate must say no and write nothing.
    done = _train(tmp_path, "--records", "r.csv", "--epochs", "1", "--out", "m.onnx")
    assert done.returncode == 0, done.stderr
    assert "not promoted" in done.stdout
    assert not (tmp_path / "m.onnx").exists()
    report = json.loads((tmp_path / "m.onnx.comparison.json").read_text())
    assert report["promote"] is False
    assert report["candidate"]["throughput_mape"] > report["current"]["throughput_mape"]
    assert report["new_rows"] == 2  # one throughput row and one power row
    assert report["drift_throughput_mape"] > 0


@pytest.mark.slow
def test_retraining_promotes_a_better_model_over_the_current_one(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text(RECORDS)
    assert _train(tmp_path, "--epochs", "1", "--out", "m.onnx").returncode == 0
    weak = (tmp_path / "m.onnx.sha256").read_text()
    done = _train(tmp_path, "--records", "r.csv", "--epochs", "60", "--out", "m.onnx")
    assert done.returncode == 0, done.stderr
    assert "promoted" in done.stdout and "not promoted" not in done.stdout
    assert (tmp_path / "m.onnx.sha256").read_text() != weak
    report = json.loads((tmp_path / "m.onnx.comparison.json").read_text())
    assert report["promote"] is True and report["current_sha256"] == weak.split()[0]
