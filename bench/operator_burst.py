"""The operator end to end against kube-scheduler alone, on one real local control plane
(e2e/cluster): bursts of plain one-GPU pods, create -> Running, and bursts of one-worker
AcceleratorJobs, create -> phase Running (placed, worker created, bound by kube-scheduler and
run by kwok), in both orders.

    .venv/bin/python bench/operator_burst.py [--nodes 1000] [--pods 10000] [--jobs 1000]

Starts a control plane of its own, `--nodes` kwok nodes (a100 x8, v100 x4 and t4 x4 in equal
numbers) and `--pods` pods already bound across them (CPU only: the cluster's other work, for
the operator's start-up to index), the recommender and the operator as processes. Prints:
- the operator's start: from its process start to its first placement, every Node, Pod and
  AcceleratorJob indexed (issue 22's target: <= 10 s with 1,000 nodes and 10,000 pods);
- per burst, created as fast as one client can while watches note when each object reaches
  each stage: p50/p99 create -> Running and the throughput to Running; for berth's jobs the
  p50 of each stage (created -> placement recorded -> worker Pod created -> bound -> Running
  -> job Running), which says where a job's time goes;
- berth's throughput and p50 over kube-scheduler's, per pair run (targets: >= 1.0x, p50 <= 2 s).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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
ROLES = ("kube-apiserver", "etcd", "kube-scheduler", "kube-controller-manager", "kwok",
         "operator", "serve-recommender")  # fmt: skip
STAGES = ("placed", "pod created", "bound", "pod running", "running")


def cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) used so far by each process this bench runs, by role."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        words = [Path(a.decode(errors="replace")).name for a in argv[:3]]
        role = next((r for w in words for r in ROLES if w == r), None)
        if role is not None:
            out[role] = out.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def cpu_used(before: dict[str, float]) -> str:
    after = cpu_seconds()
    used = {r: after.get(r, 0.0) - before.get(r, 0.0) for r in after}
    return ", ".join(f"{r} {s:.0f}" for r, s in sorted(used.items(), key=lambda e: -e[1]))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=10000)
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
        began = time.monotonic()
        background(cluster, args.pods)
        print(f"{args.pods} background pods bound in {time.monotonic() - began:.1f} s", flush=True)
        jobs_api = cluster.install_crd()
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
                f"operator start: {args.nodes} nodes and {args.pods} pods indexed and a first "
                f"job placed {time.monotonic() - began:.1f} s after its process started",
                flush=True,
            )
            # Both orders: whichever runs second meets a cluster the first left more loaded.
            pair(cluster, jobs_api, args.jobs, "1", berth_first=False)
            pair(cluster, jobs_api, args.jobs, "2", berth_first=True)
        finally:
            op.stop()
            rec.stop()
        print(f"logs in {work}")
    finally:
        plane.stop()


def background(cluster: Cluster, n: int) -> None:
    """`n` small CPU pods bound round-robin to the nodes (nodeName set: the scheduler's part is
    not what is measured here), Running."""
    if n == 0:
        return
    core = cluster.core
    ns = cluster.namespace("background")
    names = [node.metadata.name for node in core.list_node().items]

    def make(i: int) -> None:
        core.create_namespaced_pod(ns, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"bg-{i:05d}"},
            "spec": {"nodeName": names[i % len(names)], "containers": [{
                "name": "c", "image": "x", "resources": {"requests": {"cpu": "10m"}}}]},
        })  # fmt: skip

    with ThreadPoolExecutor(8) as pool:
        for done, _ in enumerate(pool.map(make, range(n)), 1):
            if done % 2500 == 0:
                print(f"  background pods created {done}/{n}", flush=True)


def pair(
    cluster: Cluster, jobs_api: client.CustomObjectsApi, n: int, run: str, berth_first: bool
) -> None:
    core = cluster.core
    plain_ns = cluster.namespace(f"plain{run}")
    berth_ns = cluster.namespace(f"berth{run}")

    def plain() -> tuple[list[float], float]:
        # kube-scheduler alone: plain one-GPU pods, create -> Running.
        cpu = cpu_seconds()
        seen = burst(
            n,
            lambda name: core.create_namespaced_pod(plain_ns, plain_pod(name)),
            {"pod": lambda **kw: core.list_namespaced_pod(plain_ns, **kw)},
            lambda kind, obj: ["running"] if _phase(obj) == "Running" else [],
        )
        latency = [t["running"] - t["created"] for t in seen.values() if "running" in t]
        report("kube-scheduler, plain pods", latency, rate(seen))
        print(f"  CPU seconds: {cpu_used(cpu)}", flush=True)
        core.delete_collection_namespaced_pod(plain_ns, grace_period_seconds=0)
        eventually(lambda: not core.list_namespaced_pod(plain_ns).items, timeout=300,
                   what="the plain pods gone")  # fmt: skip
        return latency, rate(seen)

    def berth() -> tuple[list[float], float]:
        # berth: one-worker AcceleratorJobs, create -> phase Running (its worker bound, run).
        cpu = cpu_seconds()
        seen = burst(
            n,
            lambda name: jobs_api.create_namespaced_custom_object(
                GROUP, VERSION, berth_ns, PLURAL, training_job(name, 1)
            ),
            {
                "job": lambda **kw: jobs_api.list_namespaced_custom_object(
                    GROUP, VERSION, berth_ns, PLURAL, **kw
                ),
                "pod": lambda **kw: core.list_namespaced_pod(berth_ns, **kw),
            },
            job_stages,
        )
        latency = [t["running"] - t["created"] for t in seen.values() if "running" in t]
        report("berth, AcceleratorJobs", latency, rate(seen))
        print(f"  CPU seconds: {cpu_used(cpu)}", flush=True)
        stages = []
        before = "created"
        for stage in STAGES:
            steps = [t[stage] - t[before] for t in seen.values() if stage in t and before in t]
            if steps:
                stages.append(f"{before} -> {stage} {statistics.median(steps) * 1000:.0f} ms")
            before = stage
        print("  p50 per stage: " + "; ".join(stages), flush=True)
        jobs_api.delete_collection_namespaced_custom_object(GROUP, VERSION, berth_ns, PLURAL)
        eventually(lambda: not core.list_namespaced_pod(berth_ns).items, timeout=600,
                   what="berth's workers gone")  # fmt: skip
        return latency, rate(seen)

    if berth_first:
        b_latency, b_rate = berth()
        latency, p_rate = plain()
    else:
        latency, p_rate = plain()
        b_latency, b_rate = berth()
    print(
        f"run {run} ({'berth' if berth_first else 'kube-scheduler'} first): berth / "
        f"kube-scheduler: throughput {b_rate / p_rate:.2f}x, p50 "
        f"{statistics.median(b_latency) / statistics.median(latency):.1f}x",
        flush=True,
    )


def _phase(obj: dict[str, Any]) -> str | None:
    phase: str | None = (obj.get("status") or {}).get("phase")
    return phase


def job_stages(kind: str, obj: dict[str, Any]) -> list[str]:
    """The stages an AcceleratorJob (kind "job") or its worker (kind "pod") shows it reached."""
    if kind == "job":
        status = obj.get("status") or {}
        return (["placed"] if status.get("placement") else []) + (
            ["running"] if status.get("phase") == "Running" else []
        )
    return (
        ["pod created"]
        + (["bound"] if (obj.get("spec") or {}).get("nodeName") else [])
        + (["pod running"] if _phase(obj) == "Running" else [])
    )


def burst(
    n: int,
    create: Callable[[str], Any],
    streams: dict[str, Callable[..., Any]],
    stages: Callable[[str, dict[str, Any]], list[str]],
) -> dict[str, dict[str, float]]:
    """Create `n` objects named job-NNNN as fast as one client can while a watch per stream
    notes when each object first shows each stage (`stages`: those a watched object, as a
    dict, shows; a worker Pod counts for its job); per name: stage -> monotonic time, with
    "created" and, once it ran, "running"."""
    seen: dict[str, dict[str, float]] = {f"job-{i:04d}": {} for i in range(n)}
    running: set[str] = set()
    done = threading.Event()

    def watcher(kind: str, stream: Callable[..., Any]) -> None:
        w = watch.Watch()
        for event in w.stream(stream, timeout_seconds=900):
            obj = event["object"]
            obj = (
                obj if isinstance(obj, dict) else client.ApiClient().sanitize_for_serialization(obj)
            )
            meta = obj["metadata"]
            name = (meta.get("labels") or {}).get("berth.dev/job", meta["name"])
            times = seen.get(name)
            if times is None:
                continue
            now = time.monotonic()
            for stage in stages(kind, obj):
                times.setdefault(stage, now)
            if "running" in times and name not in running:
                running.add(name)
                if len(running) == n:
                    done.set()
            if done.is_set():
                w.stop()

    threads = [
        threading.Thread(target=watcher, args=(kind, stream), daemon=True)
        for kind, stream in streams.items()
    ]
    for thread in threads:
        thread.start()
    time.sleep(1)  # the watches are open
    for i, name in enumerate(seen):
        seen[name]["created"] = time.monotonic()
        create(name)
        if (i + 1) % 250 == 0:
            print(f"  created {i + 1}/{n}, running {len(running)}", flush=True)
    done.wait(timeout=900)
    return seen


def rate(seen: dict[str, dict[str, float]]) -> float:
    """Objects Running per second, from the first created to the last Running."""
    ran = [t["running"] for t in seen.values() if "running" in t]
    return len(ran) / (max(ran) - min(t["created"] for t in seen.values()))


def report(what: str, latency: list[float], per_s: float) -> None:
    print(
        f"{what}: {len(latency)} Running, {per_s:.1f}/s; create -> Running p50 "
        f"{statistics.median(latency) * 1000:.0f} ms, p99 {percentile(latency, 99) * 1000:.0f} ms",
        flush=True,
    )


def plain_pod(name: str) -> dict[str, Any]:
    limits = {"nvidia.com/gpu": "1"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "x", "resources": {
                "requests": {"cpu": "1", "memory": "4Gi"}, "limits": limits}}]}}  # fmt: skip


if __name__ == "__main__":
    main()
