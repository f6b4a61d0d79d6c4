"""Cluster descriptions: node pools in YAML, and the Node objects they stand for.

The same description drives the simulator and the test control plane's simulated nodes:

    name: small
    pools:
      - name: a100              # nodes are named <pool>-<i>
        accelerator: a100-sxm4-80gb   # a catalog variant, or any name the alias map knows
        gpusPerNode: 8
        nodes: 2
        cpuCores: 96
        memory: 1000Gi
        idleWatts: 900          # optional: the node's draw with nothing running (declared)
      - name: cpu
        accelerator: cpu
        cpuClass: epyc-7763
        nodes: 4
        cpuCores: 128
        memory: 512Gi
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from berth.core.catalog import CPU, CPU_CLASSES, VARIANTS, AcceleratorName, resolve
from berth.core.quantity import QuantityError, to_int
from berth.core.snapshot import (
    ANNOTATION_IDLE_WATTS,
    GPU_RESOURCE,
    LABEL_CPU_CLASS,
    LABEL_GPU_COUNT,
    LABEL_GPU_MEMORY,
    LABEL_GPU_PRODUCT,
)
from berth.core.validation import FieldError, InvalidObject, join_path

LABEL_POOL = "berth.dev/pool"


@dataclass(frozen=True)
class NodePool:
    name: str
    accelerator: AcceleratorName  # type cpu for CPU pools; GPU pools name a known variant
    gpus_per_node: int
    nodes: int
    cpu_cores: int
    memory_bytes: int
    cpu_class: str | None
    idle_watts: float | None = None  # declared by the description, not measured


@dataclass(frozen=True)
class ClusterDescription:
    name: str
    pools: tuple[NodePool, ...]


def _text(doc: Mapping[str, Any], key: str, path: str, errors: list[FieldError]) -> str | None:
    value = doc.get(key)
    if isinstance(value, str) and value:
        return value
    errors.append(FieldError(join_path(path, key), value, "required: a non-empty string"))
    return None


def _count(doc: Mapping[str, Any], key: str, path: str, errors: list[FieldError]) -> int | None:
    value = doc.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    errors.append(FieldError(join_path(path, key), value, "required: a whole number >= 0"))
    return None


def _pool(doc: Any, path: str, errors: list[FieldError]) -> NodePool | None:
    if not isinstance(doc, dict):
        errors.append(FieldError(path, doc, "a pool must be a mapping"))
        return None
    before = len(errors)
    name = _text(doc, "name", path, errors)
    raw = _text(doc, "accelerator", path, errors)
    count = _count(doc, "nodes", path, errors)
    cores = _count(doc, "cpuCores", path, errors)
    accelerator = resolve(raw) if raw is not None else AcceleratorName("", None)
    gpus = 0
    if raw is not None and accelerator.type != CPU:
        if accelerator.variant is None:
            known = ", ".join(sorted(VARIANTS))
            errors.append(
                FieldError(f"{path}.accelerator", raw, f"not a GPU variant; known: {known}")
            )
        gpus = _count(doc, "gpusPerNode", path, errors) or 0
    cpu_class = doc.get("cpuClass")
    if cpu_class is not None and cpu_class not in {c.id for c in CPU_CLASSES}:
        errors.append(FieldError(f"{path}.cpuClass", cpu_class, "unknown CPU class"))
    try:
        memory = to_int(doc.get("memory", ""))
    except QuantityError as exc:
        errors.append(FieldError(f"{path}.memory", doc.get("memory"), str(exc)))
        memory = 0
    idle = doc.get("idleWatts")
    if idle is not None and (
        isinstance(idle, bool) or not isinstance(idle, int | float) or not 0 <= idle < 1e5
    ):
        errors.append(FieldError(f"{path}.idleWatts", idle, "must be a number of watts >= 0"))
    if len(errors) > before or name is None or count is None or cores is None:
        return None
    return NodePool(
        name, accelerator, gpus, count, cores, memory, cpu_class, None if idle is None else idle
    )


def parse_cluster(doc: Any) -> ClusterDescription:
    """Validate a cluster description; raises InvalidObject naming every bad field."""
    errors: list[FieldError] = []
    if not isinstance(doc, dict):
        raise InvalidObject([FieldError("", doc, "a cluster description must be a mapping")])
    name = _text(doc, "name", "", errors)
    raw_pools = doc.get("pools")
    if not isinstance(raw_pools, list) or not raw_pools:
        errors.append(FieldError("pools", raw_pools, "required: a non-empty list of node pools"))
        raw_pools = []
    pools = [_pool(p, f"pools[{i}]", errors) for i, p in enumerate(raw_pools)]
    names = [p.name for p in pools if p is not None]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        errors.append(FieldError("pools", dup, "pool names must be unique"))
    if errors or name is None:
        raise InvalidObject(errors)
    return ClusterDescription(name, tuple(p for p in pools if p is not None))


def node_objects(cluster: ClusterDescription) -> list[dict[str, Any]]:
    """Node objects as the GPU operator would label them (product, count, memory in MiB,
    the nominal memory of the variant) with allocatable nvidia.com/gpu, and the declared idle
    power in the annotation berth's exporter writes on real nodes."""
    nodes = []
    for pool in cluster.pools:
        labels = {LABEL_POOL: pool.name}
        capacity = {"cpu": str(pool.cpu_cores), "memory": str(pool.memory_bytes), "pods": "110"}
        if pool.cpu_class:
            labels[LABEL_CPU_CLASS] = pool.cpu_class
        if pool.accelerator.variant is not None:
            variant = VARIANTS[pool.accelerator.variant]
            labels[LABEL_GPU_PRODUCT] = variant.names[0].replace(" ", "-")
            labels[LABEL_GPU_COUNT] = str(pool.gpus_per_node)
            labels[LABEL_GPU_MEMORY] = str(int(variant.memory_gib * 1024))
            capacity[GPU_RESOURCE] = str(pool.gpus_per_node)
        annotations = {}
        if pool.idle_watts is not None:
            annotations[ANNOTATION_IDLE_WATTS] = f"{pool.idle_watts:g}"
        for i in range(pool.nodes):
            name = f"{pool.name}-{i}"
            nodes.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "labels": {**labels, "kubernetes.io/hostname": name},
                        "annotations": annotations,
                    },
                    "status": {"capacity": dict(capacity), "allocatable": dict(capacity)},
                }
            )
    return nodes
