"""The operator's reconciler cycle in-process, as a burst meets it: 1,000 nodes, 1,000
one-worker jobs arriving `--per-cycle` at a time, each placed job's worker bound.

    .venv/bin/python bench/reconcile.py [--jobs 1000] [--per-cycle 10] [--profile]

The API is tests/fake_kube.py and the recommender an in-process stand-in that answers at once,
so what is measured is berth's own work per cycle: the snapshot, predictions, decide(), the
writes' bookkeeping and the children. Prints the whole burst, the median and p99 cycle, and as
the baseline measured in the same run, build_snapshot() from the API's dicts once per cycle
(what a cycle paid before the snapshot read each object once). `--profile` prints where the
cycles' time goes.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import pstats
import statistics
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from berth.core.cluster import node_objects, parse_cluster  # noqa: E402
from berth.core.snapshot import build_snapshot  # noqa: E402
from berth.operator.events import Events  # noqa: E402
from berth.operator.metrics import Metrics  # noqa: E402
from berth.operator.reconciler import Reconciler, View  # noqa: E402
from tests.fake_kube import FakeKube, Inline  # noqa: E402
from tests.test_reconciler import NOW, Recommender, job  # noqa: E402

HOST = {"cpuCores": 64, "memory": "512Gi"}
POOLS = [
    {"name": "a100", "accelerator": "a100-sxm4-80gb", "gpusPerNode": 8, "nodes": 334, **HOST},
    {"name": "v100", "accelerator": "v100-sxm2-16gb", "gpusPerNode": 4, "nodes": 333, **HOST},
    {"name": "t4", "accelerator": "t4", "gpusPerNode": 4, "nodes": 333, **HOST},
]


def bound(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The worker as the cache shows it once kube-scheduler bound it to its pinned node."""
    out = copy.deepcopy(dict(pod))
    terms = out["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    out["spec"]["nodeName"] = terms["nodeSelectorTerms"][0]["matchFields"][0]["values"][0]
    out["status"] = {"phase": "Running"}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--per-cycle", type=int, default=10)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    nodes = node_objects(parse_cluster({"name": "bench", "pools": POOLS}))
    for n in nodes:
        n["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    jobs = [job(f"j{i:04d}", count=1) for i in range(args.jobs)]
    kube = FakeKube({("ns", j["metadata"]["name"]): j for j in jobs})
    reconciler = Reconciler(kube, Recommender(), Metrics(), clock=lambda: NOW,
                            events=Events(kube, lambda: NOW, Inline()))  # fmt: skip
    pods: dict[str, dict[str, Any]] = {}  # the cache: one object per pod, as an informer's
    cycles: list[float] = []
    rebuilds: list[float] = []
    profile = cProfile.Profile()
    began = time.perf_counter()
    for first in range(0, args.jobs, args.per_cycle):
        for call in kube.calls:
            if call.verb == "create-pod" and call.name not in pods:
                pods[call.name] = bound(call.body)
        arrived = jobs[first : first + args.per_cycle]
        view = View(
            nodes,
            list(pods.values()),
            [kube.jobs[("ns", j["metadata"]["name"])] for j in jobs[: first + args.per_cycle]],
            0,
            frozenset(("ns", j["metadata"]["name"]) for j in arrived),
        )
        start = time.perf_counter()
        if args.profile:
            profile.enable()
        reconciler.cycle(view)
        if args.profile:
            profile.disable()
        cycles.append(time.perf_counter() - start)
        start = time.perf_counter()
        build_snapshot(view.nodes, view.pods)
        rebuilds.append(time.perf_counter() - start)
    total = time.perf_counter() - began - sum(rebuilds)
    placed = sum(1 for j in kube.jobs.values() if (j.get("status") or {}).get("placement"))
    ms = sorted(c * 1000 for c in cycles)
    p50, p99 = statistics.median(ms), ms[int(0.99 * (len(ms) - 1))]
    print(f"{args.jobs} jobs, {args.per_cycle} per cycle, {len(nodes)} nodes: "
          f"{placed} placed in {total:.2f} s ({total / args.jobs * 1000:.2f} ms a job); cycle "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms")  # fmt: skip
    rebuild = statistics.median(rebuilds) * 1000
    print(f"baseline, build_snapshot() from the dicts once per cycle: p50 {rebuild:.1f} ms "
          f"({rebuild / p50:.2f}x the whole cycle's p50)")  # fmt: skip
    if args.profile:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
