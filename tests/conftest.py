from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from berth.core.manifest import load_documents
from e2e.cluster.controlplane import ControlPlane, build
from tests.kube import Cluster

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


# --- the real control plane (marker: controlplane) ------------------------------------------


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """etcd, kube-apiserver, controller-manager, scheduler and kwok on 127.0.0.1, built on
    first use (minutes) and cached; every process is stopped by PID when the session ends."""
    plane = ControlPlane(tmp_path_factory.mktemp("controlplane"), build())
    try:
        plane.start()
        yield Cluster(plane)
    finally:
        plane.stop()


def own_control_plane(tmp: Path) -> Iterator[Cluster]:
    """A control plane of its own, for tests whose nodes and load must not meet others'."""
    plane = ControlPlane(tmp, build())
    try:
        plane.start()
        yield Cluster(plane)
    finally:
        plane.stop()
