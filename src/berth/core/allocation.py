"""Where a job runs: one accelerator type and one share per worker. The one shape a placement
has from decide() to the worker Pods and through every resize; the job's status holds its
serialised form, read and written only at the status boundary (operator/status.py)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

Shares = tuple[tuple[str, int], ...]  # (node, devices) per worker, as policies build them


class Share(NamedTuple):
    """One worker's part: its node and the devices it holds there (GPUs, or 1 for a whole CPU
    node)."""

    node: str
    devices: int


@dataclass(frozen=True)
class Allocation:
    type: str
    shares: tuple[Share, ...]

    @staticmethod
    def of(type_id: str, shares: Iterable[tuple[str, int]]) -> Allocation:
        return Allocation(type_id, tuple(Share(node, devices) for node, devices in shares))

    @property
    def count(self) -> int:
        return sum(s.devices for s in self.shares)

    @property
    def node_names(self) -> str:
        """The nodes it uses, each once, in order (status.placement.nodeNames)."""
        return ",".join(dict.fromkeys(s.node for s in self.shares))
