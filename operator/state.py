"""The operator's view of the cluster, pure: slim copies of watched objects and the pods a
placement has claimed before kube-scheduler binds them.

A worker exists in three stages: recorded in its job's status, created without a node (until
kube-scheduler binds it) and bound. Capacity must count it from the first, or two jobs decided
a moment apart would both take the same free devices; so the snapshot holds every bound pod
plus one stand-in per recorded worker that is not bound yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

from berth.core.allocation import Allocation
from berth.core.catalog import CPU
from berth.core.snapshot import GPU_RESOURCE, Resources, pod_requests
from berth.operator.workers import LABEL_JOB, worker_name
from berth.profiler.progress import ENV_PORT


class CachedMeta(TypedDict):
    name: str
    uid: str | None
    namespace: str | None
    labels: dict[str, str]
    ownerReferences: list[dict[str, Any]]


class CachedSpec(TypedDict):
    nodeName: str | None
    affinity: dict[str, Any]
    containers: list[dict[str, Any]]
    initContainers: list[dict[str, Any]]
    overhead: dict[str, Any] | None


class CachedStatus(TypedDict):
    phase: str | None
    reason: str | None
    message: str | None
    containerStatuses: list[dict[str, Any]]
    podIP: str | None


class CachedPod(TypedDict):
    """A Pod as the operator's cache holds it (slim_pod): nothing else is there to read."""

    metadata: CachedMeta
    spec: CachedSpec
    status: CachedStatus


def slim_pod(body: Mapping[str, Any]) -> CachedPod:
    """What capacity and job phases need of a pod, and nothing else (the cache holds every pod
    of the cluster)."""
    meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
    return {
        "metadata": {
            "name": meta["name"],
            "uid": meta.get("uid"),
            "namespace": meta.get("namespace"),
            "labels": dict(meta.get("labels") or {}),
            "ownerReferences": [
                {"kind": r.get("kind"), "uid": r.get("uid")}
                for r in meta.get("ownerReferences") or ()
            ],
        },
        "spec": {
            "nodeName": spec.get("nodeName"),
            # Where berth pinned its own worker before it is bound (stale_workers reads it).
            "affinity": {"nodeAffinity": (spec.get("affinity") or {}).get("nodeAffinity")},
            "containers": [
                {"resources": c.get("resources") or {}, "env": _metrics_port(c)}
                for c in spec["containers"]
            ],
            "initContainers": [
                {"resources": c.get("resources") or {}, "restartPolicy": c.get("restartPolicy")}
                for c in spec.get("initContainers") or ()
            ],
            "overhead": spec.get("overhead"),
        },
        "status": {
            "phase": status.get("phase"),
            "reason": status.get("reason"),
            "message": status.get("message"),
            "containerStatuses": [
                {"name": c.get("name"), "state": c.get("state")}
                for c in status.get("containerStatuses") or ()
            ],
            "podIP": status.get("podIP"),  # where its progress counter is scraped (scraping.py)
        },
    }


def _metrics_port(container: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The one variable of a container's env the operator reads: the port its progress counter
    is served on."""
    return [e for e in container.get("env") or () if e.get("name") == ENV_PORT and "value" in e]


def slim_node(body: Mapping[str, Any]) -> dict[str, Any]:
    meta, status = body["metadata"], body.get("status") or {}
    return {
        "metadata": {
            "name": meta["name"],
            "uid": meta.get("uid"),
            "labels": dict(meta.get("labels") or {}),
            "annotations": dict(meta.get("annotations") or {}),
        },
        "spec": dict(body.get("spec") or {}),
        "status": {
            "allocatable": dict(status.get("allocatable") or {}),
            "conditions": [
                {"type": c.get("type"), "status": c.get("status")}
                for c in status.get("conditions") or ()
            ],
        },
    }


def claims(job: Mapping[str, Any], placement: Allocation) -> dict[str, Resources]:
    """What each node of a new placement gives up to its worker."""
    base = pod_requests({"spec": job["spec"]["template"]["spec"]})
    return {
        s.node: base + Resources(gpus=0 if placement.type == CPU else s.devices)
        for s in placement.shares
    }


def stand_ins(job: Mapping[str, Any], placement: Allocation) -> list[dict[str, Any]]:
    """One bound pod per recorded worker, with the requests the real one will have."""
    meta = job["metadata"]
    base = pod_requests({"spec": job["spec"]["template"]["spec"]})
    out = []
    for k, share in enumerate(placement.shares):
        requests: dict[str, Any] = {"cpu": f"{base.cpu_millis}m", "memory": str(base.memory_bytes)}
        if placement.type != CPU:
            requests[GPU_RESOURCE] = str(share.devices)
        out.append(
            {
                "metadata": {
                    "name": worker_name(meta["name"], k),
                    "namespace": meta["namespace"],
                    "labels": {LABEL_JOB: meta["name"]},
                },
                "spec": {
                    "nodeName": share.node,
                    "containers": [{"resources": {"requests": requests}}],
                },
                "status": {"phase": "Pending"},
            }
        )
    return out


def capacity_pods(
    pods: Iterable[Mapping[str, Any]],
    placed: Iterable[tuple[Mapping[str, Any], Allocation]],
) -> list[Mapping[str, Any]]:
    """Bound pods, plus stand-ins for the workers of unfinished placed jobs not bound yet."""
    bound: list[Mapping[str, Any]] = []
    bound_names: set[tuple[str | None, str]] = set()
    for pod in pods:
        if (pod.get("spec") or {}).get("nodeName"):
            bound.append(pod)
            meta = pod["metadata"]
            bound_names.add((meta.get("namespace"), meta["name"]))
    for job, placement in placed:
        ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
        unbound = [
            k for k in range(len(placement.shares)) if (ns, worker_name(name, k)) not in bound_names
        ]
        if unbound:  # built only then: most placed jobs' workers are all bound
            ins = stand_ins(job, placement)
            bound += [ins[k] for k in unbound]
    return bound
