"""Which nodes may host a job's workers, and which of them a gang of N devices goes to."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from berth.core.catalog import CPU
from berth.core.snapshot import Health, NodeState, Taint

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
        return "other type"  # also every node whose accelerator is unknown
    if not node.ready:
        return "not ready"
    if node.cordoned:
        return "cordoned"
    if node.health is Health.UNHEALTHY:
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


Gang = tuple[tuple[NodeState, int], ...]


def gang_picker(nodes: Sequence[NodeState]) -> Callable[[int], Gang | None]:
    """pick(count): a gang of `count` devices on the fewest nodes, preferring nodes already
    awake, or None when the nodes cannot hold them all (never a partial gang).

    Greedy: if one node can take the whole remainder, take the tightest such node (best fit);
    otherwise take the node with the most free devices and go on. Awake nodes come first in
    both, then names, so the same inputs always give the same gang. Both orders are sorted
    once, so asking for every count of a range costs little more than asking for one."""
    # Free counts are few small integers: group by (asleep, free), each group by name, and
    # lay the groups out in both orders (no sort key called per node: decide asks this of
    # every node of every allowed type, for every job).
    groups: dict[tuple[bool, int], list[tuple[str, NodeState, int]]] = {}
    for n in nodes:
        f = devices_free(n)
        if f > 0:
            groups.setdefault((not n.awake, f), []).append((n.name, n, f))
    for group in groups.values():
        group.sort()  # by name: names are unique, so nodes are never compared
    total = sum(f * len(group) for (_, f), group in groups.items())
    best_fit = [(n, f) for k in sorted(groups) for _, n, f in groups[k]]
    most_free = [
        (n, f) for k in sorted(groups, key=lambda k: (k[0], -k[1])) for _, n, f in groups[k]
    ]

    def pick(count: int) -> Gang | None:
        if count > total:
            return None
        chosen: list[tuple[NodeState, int]] = []
        taken: set[str] = set()
        remaining = count
        while remaining:
            fit = next((n for n, f in best_fit if f >= remaining and n.name not in taken), None)
            if fit is not None:
                chosen.append((fit, remaining))
                break
            node, f = next((n, f) for n, f in most_free if n.name not in taken)
            chosen.append((node, f))
            taken.add(node.name)
            remaining -= f
        return tuple(chosen)

    return pick
