"""Simulator throughput: 10,000 ITP jobs through every policy.

    .venv/bin/python bench/simulator.py [--jobs N] [--scale K] [--shared ../shared/data]

The ITP clusters' traces are laid end to end (each shifted to start when the previous one's
submissions end) until N jobs, on mixed-64 with every pool K times larger. Prints, per policy,
the simulated jobs per second of wall time and decisions per second, against kube-default in
the same run; and, once, the cost of turning the trace into validated AcceleratorJobs, which
all policies share. Target (issue 4): 10,000 jobs in at most 60 s.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import yaml

from berth.core import tables
from berth.core.cluster import node_objects, parse_cluster
from berth.core.snapshot import build_snapshot
from berth.simulate import CLUSTERS, predictions
from berth.simulator.run import (
    BASELINE,
    POLICIES,
    cluster_variants,
    prepare,
    run_policy,
)
from berth.simulator.traces import TraceJob, load_itp
from berth.simulator.truth import GroundTruth

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def end_to_end(folder: Path, jobs: int) -> list[TraceJob]:
    out: list[TraceJob] = []
    offset = 0.0
    for path in sorted(folder.glob("cluster*.csv")):
        trace = load_itp(path)
        start = trace[0].submitted_s
        for j in trace:
            shift = offset - start
            deadline = None if j.deadline_s is None else j.deadline_s + shift
            out.append(replace(j, submitted_s=j.submitted_s + shift, deadline_s=deadline))
        offset = out[-1].submitted_s + 1
        if len(out) >= jobs:
            break
    return out[:jobs]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--policies", default=",".join(POLICIES))
    args = parser.parse_args()

    doc = yaml.safe_load((CLUSTERS / "mixed-64.yaml").read_text())
    for pool in doc["pools"]:
        pool["nodes"] *= args.scale
    cluster = parse_cluster(doc)
    nodes = [replace(n, ready=True) for n in build_snapshot(node_objects(cluster), []).nodes]
    records, power = tables.read()
    truth = GroundTruth(records, power)
    trace = end_to_end(args.shared / "elasticflow/traces", args.jobs)

    began = time.perf_counter()
    work = prepare(trace, nodes, truth)
    prepare_s = time.perf_counter() - began
    variants = cluster_variants(nodes)
    told, _ = predictions(work, truth, variants, args.policies.split(","))
    print(
        f"{len(work.jobs)} jobs ({len(trace) - len(work.jobs)} left out) on {len(nodes)} nodes; "
        f"trace -> validated AcceleratorJobs: {prepare_s:.1f} s "
        f"({len(trace) / prepare_s:.0f} jobs/s, shared by all policies)"
    )
    print(f"{'policy':<13} {'wall s':>7} {'jobs/s':>8} {'decisions/s':>12}  vs {BASELINE}")
    walls: dict[str, float] = {}
    names = args.policies.split(",")
    for name in sorted(names, key=lambda n: n != BASELINE):  # the baseline first, for ratios
        began = time.perf_counter()
        run = run_policy(name, work, nodes, told)
        walls[name] = time.perf_counter() - began
        ratio = f"{walls[name] / walls[BASELINE]:.2f}x" if BASELINE in walls else "-"
        per_decision = run.decisions / run.decision_seconds if run.decision_seconds else 0
        print(
            f"{name:<13} {walls[name]:>7.1f} {len(run.ran) / walls[name]:>8.0f} "
            f"{per_decision:>12.0f}  {ratio}"
        )
    worst = max(walls.values()) + prepare_s
    print(f"slowest policy incl. preparing the jobs: {worst:.1f} s for {len(work.jobs)} jobs "
          f"(target: 10,000 jobs <= 60 s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
