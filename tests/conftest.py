from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

from berth.core.manifest import load_documents

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout (BERTH_SHARED_DATA overrides)."""
    path = Path(os.environ.get("BERTH_SHARED_DATA", ROOT.parent / "shared" / "data"))
    if not (path / "README.md").exists():
        pytest.fail(f"shared data not found at {path}: set BERTH_SHARED_DATA")
    return path


def load_example(name: str) -> dict[str, Any]:
    doc = load_documents((EXAMPLES / name).read_text())[0]
    assert isinstance(doc, dict)
    return doc


@pytest.fixture
def elastic_job() -> dict[str, Any]:
    return copy.deepcopy(load_example("elastic-resnet50-training.yaml"))
