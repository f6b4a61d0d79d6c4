"""Energy per unit of work: the GPU generalisation of energy per MIPS.

    watts           = device watts x devices + idle watts the placement keeps awake
    joules/sample   = watts / throughput (samples/s)
    runtime         = total samples / throughput
    energy          = watts x runtime

A node's idle power (fans, CPUs, memory, idle GPUs) is paid while the node is on. A placement
on a node that runs nothing else keeps all of it awake; on a node already awake it is charged
its share, the devices it takes over the node's devices. Each result is a modelled Figure
whose inputs keep their own provenance (measured, predicted or modelled).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from berth.core.provenance import Figure, measured, modelled
from berth.core.snapshot import ANNOTATION_IDLE_WATTS, NodeState

JOULES_PER_KWH = 3.6e6


@dataclass(frozen=True)
class NodeShare:
    """One node a placement uses."""

    idle_watts: Figure
    awake: bool  # already running other work
    used: int  # devices (or CPU nodes: 1) the placement takes
    total: int  # devices on the node


@dataclass(frozen=True)
class EnergyEstimate:
    watts: Figure
    joules_per_sample: Figure
    runtime_s: Figure | None  # None when the job states no total work (e.g. a service)
    energy_kwh: Figure | None


def node_idle_watts(node: NodeState) -> Figure:
    if node.idle_watts is None:
        return modelled(0.0, "W", "idle power unknown: counted as 0 W")
    return measured(node.idle_watts, "W", f"{ANNOTATION_IDLE_WATTS} of node {node.name}")


def idle_share(share: NodeShare) -> Figure:
    if not share.awake:
        return modelled(
            share.idle_watts.value, "W", "node woken: all its idle power", share.idle_watts
        )
    fraction = share.used / share.total
    return modelled(
        share.idle_watts.value * fraction,
        "W",
        f"awake node: idle power x {share.used}/{share.total} devices",
        share.idle_watts,
    )


def estimate(
    device_watts: Figure,
    devices: int,
    throughput: Figure,
    nodes: Sequence[NodeShare],
    total_samples: int | None,
) -> EnergyEstimate:
    if throughput.value <= 0:
        raise ValueError(f"throughput must be positive, got {throughput.value}")
    idle = [idle_share(n) for n in nodes]
    total_idle = sum(f.value for f in idle)
    watts = modelled(
        device_watts.value * devices + total_idle,
        "W",
        f"device W x {devices} + idle W kept awake",
        device_watts,
        *idle,
    )
    per_sample = modelled(
        watts.value / throughput.value, "J/sample", "W / samples/s", watts, throughput
    )
    if total_samples is None:
        return EnergyEstimate(watts, per_sample, None, None)
    runtime = modelled(total_samples / throughput.value, "s", "samples / samples/s", throughput)
    energy = modelled(
        watts.value * runtime.value / JOULES_PER_KWH, "kWh", "W x s / 3.6e6", watts, runtime
    )
    return EnergyEstimate(watts, per_sample, runtime, energy)
