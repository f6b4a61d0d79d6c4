"""One period of the elastic policy as the operator runs it: 1,000 nodes, 500 running jobs.

    .venv/bin/python bench/rebalance.py [--repeat N] [--profile]

Each period the operator conditions every running job's predictions on what was measured of
it (core/posterior.py), then runs rebalance() (placement/elastic.py) once. Prints the median
and p99 of both over a cluster of 1,000 nodes (a100, v100 and t4 pools, 8 devices each) with
500 running elastic jobs of 1-4 devices, half of them late, and 100 waiting; and, as the
baseline measured in the same run, building the snapshot from the API's dicts, which a period
needs anyway. Target (issue 21): one period over 1,000 nodes and 500 jobs in at most 100 ms.
`--profile` prints where rebalance()'s time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from berth.core.allocation import Share
from berth.core.cluster import node_objects, parse_cluster
from berth.core.job import parse_job
from berth.core.posterior import Measured, Prior
from berth.core.prediction import Key, Prediction
from berth.core.provenance import measured, predicted
from berth.core.snapshot import ClusterSnapshot, build_snapshot
from berth.placement.elastic import RunningJob, Settings, WaitingJob, by_type, rebalance

TYPES = (("a100", "a100-sxm4-80gb", 3.0, 300.0), ("v100", "v100-sxm2-16gb", 1.5, 250.0),
         ("t4", "t4", 0.5, 70.0))  # fmt: skip
HOURS = 3600.0


def cluster(nodes: int) -> list[dict[str, Any]]:
    per = nodes // len(TYPES)
    pools = [{"name": t, "accelerator": v, "gpusPerNode": 8, "nodes": per, "cpuCores": 64,
              "memory": "512Gi"} for t, v, _, _ in TYPES]  # fmt: skip
    objs = node_objects(parse_cluster({"name": "bench", "pools": pools}))
    for o in objs:
        o["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    return objs


def job(name: str) -> Any:
    return parse_job({
        "apiVersion": "berth.dev/v1alpha1", "kind": "AcceleratorJob",
        "metadata": {"name": name, "namespace": "bench"},
        "spec": {
            "workload": {"kind": "training", "model": "resnet50", "batchSize": 64,
                         "totalWork": {"samples": 10**9}},
            "accelerators": {"count": {"min": 1, "max": 8}}, "elastic": True,
            "template": {"spec": {"containers": [{"name": "w", "image": "x"}]}},
        },
    })  # fmt: skip


def prior() -> dict[Key, Prediction]:
    return {
        (t, n): Prediction(
            predicted(100.0 * n**0.9 * speed, "samples/s", "bench", 0.3),
            measured(watts, "W", "bench"),
        )
        for t, _, speed, watts in TYPES
        for n in range(1, 9)
    }


def world(rng: random.Random) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[Any]]:
    """Nodes, the running jobs' pods, and (id, job, type, shares, measured) per running job."""
    nodes = cluster(1000)
    names = {t: [o["metadata"]["name"] for o in nodes if t in o["metadata"]["name"]]
             for t, _, _, _ in TYPES}  # fmt: skip
    pods, running = [], []
    free = {n["metadata"]["name"]: 8 for n in nodes}
    template = job("j")
    for i in range(500):
        t = TYPES[i % 3][0]
        count = rng.randint(1, 4)
        node = next(n for n in names[t][i // 3 % len(names[t]) :] + names[t] if free[n] >= count)
        free[node] -= count
        limits = {"nvidia.com/gpu": str(count)}
        pods.append({"spec": {"nodeName": node, "containers": [{"name": "w", "resources": {
            "limits": limits}}]}, "status": {"phase": "Running"}})  # fmt: skip
        windows = (Measured(t, count, tuple(rng.uniform(40, 400) for _ in range(4))),)
        running.append((f"r{i}", template, t, (Share(node, count),), windows))
    return nodes, pods, running


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return sorted(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    rng = random.Random(0)
    nodes, pods, running = world(rng)
    base = Prior(prior())
    settings = Settings(min_interval_s=0)
    waiting = [WaitingJob(f"w{i}", job(f"w{i}"), ("a100", "v100", "t4")) for i in range(100)]

    def conditioned() -> list[RunningJob]:
        out = []
        for k, (uid, j, t, shares, windows) in enumerate(running):
            here, elsewhere = by_type(base.condition(windows), t)
            late = 0.5 * HOURS if k % 2 else 100 * HOURS  # half of them late
            out.append(RunningJob(uid, j, t, shares, 10.0**8, late, -1e9, here, 60.0, elsewhere))
        return out

    snapshot: ClusterSnapshot = build_snapshot(nodes, pods)
    views = conditioned()

    def period() -> object:
        return rebalance(snapshot, views, waiting, 0.0, settings)

    resizes = period()
    assert isinstance(resizes, list)
    cond = timed(conditioned, max(3, args.repeat // 4))
    reb = timed(period, args.repeat)
    snap = timed(lambda: build_snapshot(nodes, pods), max(3, args.repeat // 4))

    def row(name: str, t: list[float]) -> str:
        p50, p99 = statistics.median(t), t[min(len(t) - 1, int(len(t) * 0.99))]
        ratio = p50 / statistics.median(snap)
        return f"{name:<28} {p50 * 1e3:>9.1f} ms {p99 * 1e3:>9.1f} ms {ratio:>8.2f}x"

    print(f"1,000 nodes, {len(views)} running jobs, {len(waiting)} waiting; "
          f"{len(resizes)} resizes per period (at most {settings.max_resizes})")  # fmt: skip
    print(f"{'':<28} {'p50':>12} {'p99':>12} {'vs snapshot':>9}")
    print(row("condition 500 jobs", cond))
    print(row("rebalance()", reb))
    print(row("one period (both)", [a + b for a, b in zip(cond, reb, strict=False)]))
    print(row("snapshot (baseline)", snap))
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(period)
        pstats.Stats(profile).sort_stats("cumulative").print_stats(12)
    return 0


if __name__ == "__main__":
    sys.exit(main())
