"""kube-default: what kube-scheduler does with a GPU job, FIFO, with gang admission (as Kueue
or the coscheduling plugin give it). The user's count; any type with room; workers spread by
NodeResourcesFit's LeastAllocated score, so the emptiest nodes fill first."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from berth.core.job import AcceleratorJob
from berth.core.prediction import Prediction
from berth.core.snapshot import ClusterSnapshot, NodeState
from berth.placement.nodes import Gang, devices_free
from berth.placement.plan import Option, Plan
from berth.placement.rigid import rigid_plan


def _allocated(node: NodeState) -> float:
    total = max(node.allocatable.gpus, 1)
    return 1 - devices_free(node) / total


def spread(nodes: list[NodeState], count: int) -> Gang | None:
    """Least allocated first: each node gives what it has free until the gang is complete."""
    chosen = []
    for node in sorted(nodes, key=lambda n: (_allocated(n), n.name)):
        take = min(devices_free(node), count)
        if take > 0:
            chosen.append((node, take))
            count -= take
        if count == 0:
            return tuple(chosen)
    return None


def _least_allocated(option: Option, nodes: Mapping[str, NodeState]) -> tuple[float, ...]:
    return (sum(_allocated(nodes[name]) for name, _ in option.nodes) / len(option.nodes),)


def kube_default(
    snapshot: ClusterSnapshot,
    job: AcceleratorJob,
    predictions: Mapping[tuple[str, int], Prediction],
    now: datetime,
) -> Plan:
    nodes = {n.name: n for n in snapshot.nodes}
    return rigid_plan(snapshot, job, predictions, now, spread, lambda o: _least_allocated(o, nodes))
