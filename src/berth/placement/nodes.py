"""Which nodes may host a job's workers, and which of them a gang of N devices goes to."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from berth.core.catalog import CPU
from berth.core.snapshot import NodeState, Taint

_BLOCKING_EFFECTS = ("NoSchedule", "NoExecute")


def tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Taint) -> bool:
    """Kubernetes' matching: an empty effect matches any effect; operator Exists with an empty
    key matches every taint; Equal (the default) also compares the value."""
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.effect:
            continue
        operator = t.get("operator", "Equal")
        key = t.get("key", "")
        if operator == "Exists" and not key:
            return True
        if key != taint.key:
            continue
        if operator == "Exists" or t.get("value", "") == taint.value:
            return True
    return False


@dataclass(frozen=True)
class WorkerNeed:
    """What one worker pod asks of a node besides its accelerators (from the job's template)."""

    cpu_millis: int = 0
    memory_bytes: int = 0
    tolerations: tuple[Mapping[str, Any], ...] = ()


def why_not(
    node: NodeState, type_id: str, need: WorkerNeed, min_memory_mib: int | None
) -> str | None:
    """None when the node may host a worker of this type, else the reason it may not."""
    if node.accelerator.type != type_id:
        return "other type"
    if not node.accelerator.known:
        return "unknown accelerator"
    if not node.ready:
        return "not ready"
    if node.cordoned:
        return "cordoned"
    if not node.usable:
        return "unhealthy"
    for taint in node.taints:
        if taint.effect in _BLOCKING_EFFECTS and not tolerates(need.tolerations, taint):
            return f"taint {taint.key}={taint.value}:{taint.effect} not tolerated"
    if (
        min_memory_mib is not None
        and type_id != CPU
        and (node.gpu_memory_mib is None or node.gpu_memory_mib < min_memory_mib)
    ):
        return f"device memory {node.gpu_memory_mib} MiB < {min_memory_mib} MiB"
    free = node.free
    if free.cpu_millis < need.cpu_millis or free.memory_bytes < need.memory_bytes:
        return "not enough CPU or memory for a worker"
    if devices_free(node) <= 0:
        return "busy" if node.cpu_only else "no free device"
    return None


def devices_free(node: NodeState) -> int:
    """Devices a placement may take: GPUs, or the whole node for CPU placements (one worker
    per CPU node, and only on a node running no other workload)."""
    if node.cpu_only:
        return 0 if node.awake else 1
    return node.free.gpus


def pick_nodes(nodes: Sequence[NodeState], count: int) -> tuple[tuple[NodeState, int], ...] | None:
    """A gang of `count` devices on the fewest nodes, preferring nodes already awake, or None
    when the nodes cannot hold them all (never a partial gang).

    Greedy: if one node can take the whole remainder, take the tightest such node (best fit);
    otherwise take the node with the most free devices and go on. Awake nodes come first in
    both, then names, so the same inputs always give the same gang."""
    free = {n.name: devices_free(n) for n in nodes}
    if sum(free.values()) < count:
        return None
    chosen: list[tuple[NodeState, int]] = []
    remaining = count
    pool = [n for n in nodes if free[n.name] > 0]
    while remaining:
        fitting = [n for n in pool if free[n.name] >= remaining]
        if fitting:
            node = min(fitting, key=lambda n: (not n.awake, free[n.name], n.name))
        else:
            node = min(pool, key=lambda n: (not n.awake, -free[n.name], n.name))
        take = min(free[node.name], remaining)
        chosen.append((node, take))
        remaining -= take
        pool.remove(node)
    return tuple(chosen)
