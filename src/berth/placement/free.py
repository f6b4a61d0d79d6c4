"""The devices still free on each node during one period of the elastic policy, kept current
as its resizes are decided (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from berth.core.allocation import Share, Shares
from berth.core.job import AcceleratorJob
from berth.core.snapshot import ClusterSnapshot
from berth.placement.nodes import WorkerNeed, devices_free, why_not
from berth.placement.plan import min_memory_mib, worker_need


class FreeDevices:
    """Free devices per node of each type, kept current as resizes are decided."""

    def __init__(self, snapshot: ClusterSnapshot) -> None:
        self.type = {n.name: n.accelerator.type for n in snapshot.nodes}
        self.nodes = {n.name: n for n in snapshot.nodes}
        self.free = {n.name: devices_free(n) for n in snapshot.nodes if n.usable}
        self.needs: dict[int, tuple[WorkerNeed, int | None]] = {}  # by id(job), this call
        # (what a worker needs, device memory, type) -> the nodes it may use; jobs alike share
        self.usable: dict[tuple[int, int, str, int | None, str], list[str]] = {}
        self.of_type: dict[str | None, list[str]] = {}
        for name in self.free:
            self.of_type.setdefault(self.type[name], []).append(name)
        # Per type, kept current: what total() and most_taken() would sum over every node.
        self.type_free = {t: sum(self.free[n] for n in ns) for t, ns in self.of_type.items()}
        self.pool = {
            t: sum(self.nodes[n].allocatable.gpus for n in ns) for t, ns in self.of_type.items()
        }
        self.whole = {id(ns): t for t, ns in self.of_type.items()}  # lists that are a type's all

    def eligible(self, job: AcceleratorJob, type_id: str) -> list[str]:
        """The nodes of `type_id` a worker of `job` may use (not to be mutated: shared)."""
        need, mib = self._need(job)
        key = (need.cpu_millis, need.memory_bytes, repr(need.tolerations), mib, type_id)
        if key not in self.usable:
            # A full node still counts: devices freed on it by a shrink are usable there.
            fits = (None, "no free device", "busy")
            every = self.of_type.get(type_id, [])
            names = [n for n in every if why_not(self.nodes[n], type_id, need, mib) in fits]
            self.usable[key] = every if len(names) == len(every) else names
        return self.usable[key]

    def _need(self, job: AcceleratorJob) -> tuple[WorkerNeed, int | None]:
        if id(job) not in self.needs:
            self.needs[id(job)] = (worker_need(job), min_memory_mib(job))
        return self.needs[id(job)]

    def total(self, names: Sequence[str]) -> int:
        whole = self.whole.get(id(names))
        if whole is not None:
            return self.type_free[whole]
        return sum(self.free[n] for n in names)

    def most_taken(self, headroom: float) -> dict[str | None, float]:
        """Per type, the most devices that may be taken while at least `headroom` of the
        type's devices stay free (negative: none)."""
        return {
            t: self.type_free.get(t, 0) - headroom * pool for t, pool in self.pool.items() if pool
        }

    def take(self, names: Sequence[str], count: int) -> Shares | None:
        """Fewest nodes first: the fullest that still has room."""
        out: list[tuple[str, int]] = []
        for name in sorted(names, key=lambda n: (-self.free[n], n)):
            if count == 0:
                break
            got = min(self.free[name], count)
            if got > 0:
                out.append(Share(name, got))
                count -= got
        if count:
            return None
        for name, got in out:
            self.free[name] -= got
            self.type_free[self.type[name]] -= got
        return tuple(out)

    def give(self, shares: Shares) -> None:
        for name, got in shares:
            if name in self.free:
                self.free[name] += got
                self.type_free[self.type[name]] += got
