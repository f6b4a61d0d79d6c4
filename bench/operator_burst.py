"""The operator end to end: time from `create` to `status.placement` for a burst of jobs on a
simulated cluster, on the real local control plane (e2e/cluster).

    .venv/bin/python bench/operator_burst.py [--nodes 1000] [--jobs 1000]

Starts a control plane of its own, `--nodes` kwok nodes (a100 x8, v100 x4 and t4 x4 in equal
numbers), the recommender and the operator as processes; creates the jobs as fast as one
client can; a watch notes when each job's placement appears. Prints p50/p99 of that latency
and placements per second, and, as the baseline measured in the same run, the API server's own
round trip for a status write (what one placement costs at least).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client, watch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from berth.crds import GROUP, VERSION  # noqa: E402
from e2e.cluster.controlplane import ControlPlane, build  # noqa: E402
from tests.kube import Cluster, eventually, operator, recommender, training_job  # noqa: E402

PLURAL = "acceleratorjobs"
HOST = {"cpuCores": 64, "memory": "512Gi"}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=1000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="berth-bench-operator-"))
    plane = ControlPlane(work / "plane", build())
    (work / "plane").mkdir()
    try:
        plane.start()
        cluster = Cluster(plane)
        per_pool = args.nodes // 3
        pools = [
            {"name": "a100", "accelerator": "a100-sxm4-80gb", "gpusPerNode": 8, **HOST},
            {"name": "v100", "accelerator": "v100-sxm2-16gb", "gpusPerNode": 4, **HOST},
            {"name": "t4", "accelerator": "t4", "gpusPerNode": 4, **HOST},
        ]
        for i, pool in enumerate(pools):
            pool["nodes"] = per_pool + (1 if i < args.nodes - 3 * per_pool else 0)
        began = time.monotonic()
        cluster.add_nodes({"name": "bench", "pools": pools})
        print(f"{args.nodes} nodes Ready in {time.monotonic() - began:.1f} s", flush=True)
        jobs_api = cluster.install_crd()
        ns = cluster.namespace("bench")
        rec, url = recommender(work / "recommender.log")
        jobs_api.create_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, training_job("probe", 1, 2)
        )
        began = time.monotonic()
        op = operator(plane.kubeconfig, work / "operator.log", url).start()
        try:

            def probe() -> Any:
                got = jobs_api.get_namespaced_custom_object(
                    GROUP, VERSION, "default", PLURAL, "probe"
                )
                return got.get("status", {}).get("placement")

            eventually(probe, timeout=600, what="the operator's first placement")
            print(
                f"operator started, indexed {args.nodes} nodes and placed a first job in "
                f"{time.monotonic() - began:.1f} s",
                flush=True,
            )
            run(cluster, jobs_api, ns, args.jobs)
        finally:
            op.stop()
            rec.stop()
        print(f"logs in {work}")
    finally:
        plane.stop()


def run(cluster: Cluster, jobs_api: client.CustomObjectsApi, ns: str, n: int) -> None:
    # Baseline: the API server's round trip for one status write, same job shape.
    rtts = []
    for _ in range(50):
        t = time.perf_counter()
        jobs_api.patch_namespaced_custom_object_status(
            GROUP, VERSION, "default", PLURAL, "probe", {"status": {"observedGeneration": 1}}
        )
        rtts.append(time.perf_counter() - t)

    created: dict[str, float] = {}
    placed: dict[str, float] = {}
    done = threading.Event()

    def watcher() -> None:
        w = watch.Watch()
        for event in w.stream(
            jobs_api.list_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, timeout_seconds=600
        ):
            obj = event["object"]
            name = obj["metadata"]["name"]
            if name not in placed and (obj.get("status") or {}).get("placement"):
                placed[name] = time.monotonic()
                if len(placed) == n:
                    w.stop()
        done.set()

    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()
    time.sleep(1)  # the watch is open
    start = time.monotonic()
    for i in range(n):
        name = f"job-{i:04d}"
        created[name] = time.monotonic()
        jobs_api.create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, training_job(name, 1, 2)
        )
        if (i + 1) % 100 == 0:
            print(f"  created {i + 1}/{n}, placed {len(placed)}", flush=True)
    created_s = time.monotonic() - start
    done.wait(timeout=900)
    latency = [placed[k] - created[k] for k in placed]
    span = max(placed.values()) - start
    print(f"\n{n} jobs created in {created_s:.1f} s; {len(placed)} placed in {span:.1f} s")
    print(
        f"create -> status.placement: p50 {statistics.median(latency) * 1000:.0f} ms, "
        f"p99 {percentile(latency, 99) * 1000:.0f} ms, max {max(latency) * 1000:.0f} ms"
    )
    print(f"throughput: {len(placed) / span:.1f} placements/s")
    print(
        f"baseline, one status write round trip: p50 {statistics.median(rtts) * 1000:.1f} ms "
        f"(at most {1 / statistics.median(rtts):.0f} writes/s from one client)"
    )


if __name__ == "__main__":
    main()
