"""The chart's images and the Dockerfile that builds them agree (pure: files only)."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _targets() -> dict[str, str]:
    text = (ROOT / "docker" / "Dockerfile").read_text()
    parts = re.split(r"^FROM \S+ AS (\S+)\n", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_every_image_the_chart_names_is_a_dockerfile_target() -> None:
    values = yaml.safe_load((ROOT / "charts" / "berth" / "values.yaml").read_text())
    assert set(values["image"]["names"]) <= set(_targets())


def test_only_the_training_image_installs_torch() -> None:
    for target, body in _targets().items():
        installs_train = "[train]" in body
        assert installs_train == (target == "train"), target
        if target != "wheel" and "pip install" in body:
            assert "USER 65532:65532" in body, target
