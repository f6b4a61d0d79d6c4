"""`berth validate DIR` validates every manifest and stops, naming file and field, at the
first invalid one."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from berth.cli import main
from tests.conftest import EXAMPLES


def test_validate_prints_what_each_example_asks_for(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(EXAMPLES)]) == 0
    out = capsys.readouterr().out
    assert "ml-research/resnet50-imagenet" in out and "a100,h100,v100" in out
    assert f"{len(list(EXAMPLES.rglob('*.yaml')))} AcceleratorJob(s) valid" in out


def test_validate_names_file_and_field_of_the_first_invalid_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(EXAMPLES / "bert-inference.yaml", tmp_path / "a-good.yaml")
    bad = (
        (EXAMPLES / "rigid-lammps-hpc.yaml").read_text().replace("min: 8, max: 8", "min: 8, max: 4")
    )
    (tmp_path / "b-bad.yaml").write_text(bad)
    (tmp_path / "c-bad.yaml").write_text(bad)
    assert main(["validate", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "b-bad.yaml" in err and "c-bad.yaml" not in err
    assert "spec.accelerators.count: spec.accelerators.count.min must be less than" in err


def test_validate_reports_broken_yaml_by_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken.yaml").write_text("spec: [unclosed\n")
    assert main(["validate", str(tmp_path)]) == 1
    assert "broken.yaml: not valid YAML" in capsys.readouterr().err


def test_validate_skips_other_kinds_but_needs_one_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pvc.yaml").write_text("apiVersion: v1\nkind: PersistentVolumeClaim\n")
    assert main(["validate", str(tmp_path)]) == 2
    assert "no AcceleratorJob found" in capsys.readouterr().err


def test_validate_refuses_a_missing_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "/nonexistent/manifests"]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_the_installed_berth_command_runs() -> None:
    berth = Path(sys.executable).with_name("berth")
    result = subprocess.run([str(berth), "validate", str(EXAMPLES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
