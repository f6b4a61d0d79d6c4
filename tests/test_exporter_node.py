"""The exporter on the real control plane, as its own RBAC identity: it annotates its node
with the health and idle power it measured."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from berth.core.snapshot import ANNOTATION_HEALTH, ANNOTATION_IDLE_WATTS
from tests.kube import BerthProcess, Cluster, eventually, free_port
from tests.recordings import busy_run, idle, write

RBAC = Path(__file__).resolve().parents[1] / "profiler" / "rbac.yaml"
pytestmark = [pytest.mark.controlplane, pytest.mark.slow]


def test_the_exporter_annotates_its_node_with_health_and_idle_power(
    control_plane: Cluster, tmp_path: Path
) -> None:
    pool = {"name": "a", "accelerator": "a100-sxm4-80gb", "gpusPerNode": 2, "nodes": 1}
    (node,) = control_plane.add_nodes(
        {"name": "exported", "pools": [pool | {"cpuCores": 32, "memory": "256Gi"}]}
    )
    identity = control_plane.service_account(RBAC, "berth-exporter", "berth-exporter")
    run = [idle(s, 55.0) for s in busy_run(3, 300.0, devices=2)]
    sick = replace(run[-1], devices=(run[-1].devices[0], replace(run[-1].devices[1], xid=79)))
    recording = write(tmp_path / "gpu.jsonl", [*run, replace(sick, time=run[-1].time + 1)])
    exporter = BerthProcess(
        [
            "exporter",
            "--replay",
            str(recording),
            "--node",
            node,
            "--kubeconfig",
            str(identity),
            "--port",
            str(free_port()),
            "--interval",
            "0.2",
        ],
        tmp_path / "exporter.log",
    ).start()
    try:

        def annotations() -> dict[str, str] | None:
            got = control_plane.core.read_node(node).metadata.annotations or {}
            return got if got.get(ANNOTATION_HEALTH) == "unhealthy" else None

        got = eventually(annotations, timeout=30, what=f"{node} annotated unhealthy")
        assert got[ANNOTATION_IDLE_WATTS] == "110.0"  # two devices idle at 55 W
        assert got["berth.dev/health-reason"] == "GPU 1: Xid 79"
    finally:
        exporter.stop()
        assert "Traceback" not in exporter.tail(200), exporter.tail(200)
