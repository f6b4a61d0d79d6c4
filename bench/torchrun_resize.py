"""Seconds from berth's resize decision to training at the new world size, with real torchrun
(gloo, CPU) under the process harness (e2e/cluster/kubelet.py; needs root).

    sudo .venv/bin/python bench/torchrun_resize.py [--runs 3]

Each run starts a control plane of its own with three one-GPU nodes that the harness runs, the
operator resizing every 2 s, and an elastic job of 2..3 workers running
examples/torchrun/elastic_train.py: it forms at 2 (one node is held by another job), grows to 3 when
that job ends, and shrinks to 2 for a higher-priority job. The decision's time is the
`status.resizes` entry berth wrote; training at the new size is the last rank of the new group
reporting in. As the baseline measured in the same run: the first formation, from the job's
creation (Pods created, scheduled, torch imported, first rendezvous).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from e2e.cluster.kubelet import missing_capabilities  # noqa: E402
from tests.torchrun import A100S, grow_and_shrink, start  # noqa: E402


def one_run(tmp: Path) -> dict[str, float]:
    plane = start(tmp, [A100S])
    try:
        return grow_and_shrink(next(plane)).seconds
    finally:
        plane.close()  # operator, harness and control plane stopped, by PID


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    problem = missing_capabilities()
    if problem:
        sys.exit(f"bench/torchrun_resize.py: {problem}")
    runs = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="berth-torchrun-") as tmp:
            runs.append(one_run(Path(tmp)))
        print(f"run {i + 1}: " + ", ".join(f"{k} {v:.1f} s" for k, v in runs[-1].items()),
              flush=True)  # fmt: skip
    print(f"\nseconds from berth's decision to training at the new world size, {len(runs)} runs")
    print(f"{'':8} {'median':>7} {'min':>6} {'max':>6}")
    for key in ("form", "grow", "shrink"):
        values = [r[key] for r in runs]
        print(f"{key:8} {statistics.median(values):7.1f} {min(values):6.1f} {max(values):6.1f}")
    print("form: from the job's creation (baseline: Pods, scheduling, imports, first rendezvous)")


if __name__ == "__main__":
    main()
