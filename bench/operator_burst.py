"""The operator end to end against kube-scheduler alone, on one real local control plane
(e2e/cluster): a burst of plain one-GPU pods, create -> Running, then a burst of one-worker
AcceleratorJobs, create -> phase Running (placed, worker created, bound by kube-scheduler and
run by kwok).

    .venv/bin/python bench/operator_burst.py [--nodes 1000] [--jobs 1000]

Starts a control plane of its own, `--nodes` kwok nodes (a100 x8, v100 x4 and t4 x4 in equal
numbers), the recommender and the operator as processes; each burst is created as fast as one
client can while a watch notes when each object runs. Prints p50/p99 of create -> Running and
the throughput to Running of both, and their ratio (issue 22's target: berth >= 1.0x).
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


def burst(n: int, create: Any, stream: Any, running: Any) -> tuple[list[float], float]:
    """Create `n` objects as fast as one client can while a watch notes when each runs
    (`running`: whether an object, as a dict, runs); (create -> Running latencies, throughput
    to Running per second)."""
    created: dict[str, float] = {}
    ran: dict[str, float] = {}
    done = threading.Event()

    def watcher() -> None:
        w = watch.Watch()
        for event in w.stream(stream, timeout_seconds=900):
            obj = event["object"]
            obj = (
                obj if isinstance(obj, dict) else client.ApiClient().sanitize_for_serialization(obj)
            )
            name = obj["metadata"]["name"]
            if name not in ran and running(obj):
                ran[name] = time.monotonic()
                if len(ran) == n:
                    w.stop()
        done.set()

    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()
    time.sleep(1)  # the watch is open
    start = time.monotonic()
    for i in range(n):
        name = f"job-{i:04d}"
        created[name] = time.monotonic()
        create(name)
        if (i + 1) % 250 == 0:
            print(f"  created {i + 1}/{n}, running {len(ran)}", flush=True)
    done.wait(timeout=900)
    latency = [ran[k] - created[k] for k in ran]
    span = max(ran.values()) - start
    return latency, len(ran) / span


def report(what: str, latency: list[float], rate: float) -> None:
    print(
        f"{what}: {len(latency)} Running, {rate:.1f}/s; create -> Running p50 "
        f"{statistics.median(latency) * 1000:.0f} ms, p99 {percentile(latency, 99) * 1000:.0f} ms",
        flush=True,
    )


def plain_pod(name: str) -> dict[str, Any]:
    limits = {"nvidia.com/gpu": "1"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "x", "resources": {
                "requests": {"cpu": "1", "memory": "4Gi"}, "limits": limits}}]}}  # fmt: skip


def run(cluster: Cluster, jobs_api: client.CustomObjectsApi, ns: str, n: int) -> None:
    core = cluster.core
    plain = cluster.namespace("plain")
    # 1. kube-scheduler alone: plain one-GPU pods, create -> Running.
    latency, rate = burst(
        n,
        lambda name: core.create_namespaced_pod(plain, plain_pod(name)),
        lambda **kw: core.list_namespaced_pod(plain, **kw),
        lambda pod: (pod.get("status") or {}).get("phase") == "Running",
    )
    report("kube-scheduler, plain pods", latency, rate)
    core.delete_collection_namespaced_pod(plain, grace_period_seconds=0)
    eventually(lambda: not core.list_namespaced_pod(plain).items, timeout=300,
               what="the plain pods gone")  # fmt: skip
    # 2. berth: one-worker AcceleratorJobs, create -> phase Running (its worker bound, run).
    b_latency, b_rate = burst(
        n,
        lambda name: jobs_api.create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, training_job(name, 1)
        ),
        lambda **kw: jobs_api.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, **kw),
        lambda job: (job.get("status") or {}).get("phase") == "Running",
    )
    report("berth, AcceleratorJobs", b_latency, b_rate)
    print(
        f"berth / kube-scheduler: throughput {b_rate / rate:.2f}x, p50 "
        f"{statistics.median(b_latency) / statistics.median(latency):.1f}x"
    )


if __name__ == "__main__":
    main()
