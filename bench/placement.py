"""Placement latency: one decide() over snapshots of 100, 1,000 and 5,000 nodes.

    .venv/bin/python bench/placement.py [--repeat N]

Prints the median and p99 of decide() for a job that may take a100, v100 or t4 at 1..8
devices (24 candidates), and, as the baseline measured in the same run, the time to build the
snapshot from the API's Node and Pod dicts, which a decision needs anyway. Target (issue 4):
one placement over 1,000 nodes in at most 5 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

from berth.core.cluster import node_objects, parse_cluster
from berth.core.job import parse_job
from berth.core.manifest import load_documents
from berth.core.prediction import Prediction
from berth.core.provenance import measured, predicted
from berth.core.snapshot import build_snapshot
from berth.placement.plan import decide

NOW = datetime(2026, 11, 24, tzinfo=UTC)
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gpt2-finetune-deadline.yaml"


def cluster(nodes: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The bundled small cluster's pools scaled to `nodes`, every third node half busy."""
    doc = load_documents(files("berth").joinpath("clusters/small.yaml").read_text())[0]
    per_pool = max(1, nodes // len(doc["pools"]))
    for pool in doc["pools"]:
        pool["nodes"] = per_pool
    objs = node_objects(parse_cluster(doc))
    for obj in objs:
        obj["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    pods = [
        {
            "spec": {
                "nodeName": o["metadata"]["name"],
                "containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "2"}}}],
            },
            "status": {"phase": "Running"},
        }
        for o in objs[::3]
        if "nvidia.com/gpu" in o["status"]["allocatable"]
    ]
    return objs, pods


def timed(fn: Any, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    doc = load_documents(EXAMPLE.read_text())[0]
    doc["spec"]["accelerators"] = {"types": ["a100", "v100", "t4"], "count": {"min": 1, "max": 8}}
    doc["spec"].pop("deadline")
    doc["spec"]["workload"].pop("memoryPerReplica")
    job = parse_job(doc)
    predictions = {
        (t, n): Prediction(
            predicted(100.0 * n * s, "samples/s", "bench", 0.1), measured(w, "W", "bench")
        )
        for t, s, w in (("a100", 3.0, 300.0), ("v100", 1.5, 250.0), ("t4", 0.5, 70.0))
        for n in range(1, 9)
    }
    print(f"{'nodes':>6}  {'decide p50':>11}  {'decide p99':>11}  {'snapshot p50':>13}  ratio")
    for size in (100, 1000, 5000):
        nodes, pods = cluster(size)
        snapshot = build_snapshot(nodes, pods)
        plan = decide(snapshot, job, predictions, NOW)
        assert plan.chosen is not None
        d = sorted(timed(lambda s=snapshot: decide(s, job, predictions, NOW), args.repeat))
        b = sorted(timed(lambda n=nodes, p=pods: build_snapshot(n, p), max(5, args.repeat // 5)))
        p50, p99 = statistics.median(d), d[min(len(d) - 1, int(len(d) * 0.99))]
        base = statistics.median(b)
        print(
            f"{len(snapshot.nodes):>6}  {p50 * 1e3:>8.2f} ms  {p99 * 1e3:>8.2f} ms  "
            f"{base * 1e3:>10.2f} ms  {p50 / base:5.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
