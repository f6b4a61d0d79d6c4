"""Status writes, each conditional on the latest resourceVersion known here, and the cache of
this process's own writes that makes "latest" true before the watch shows them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from berth.core.allocation import Allocation
from berth.operator import status
from berth.operator.kube import Conflict, Kube, NotFound
from berth.operator.metrics import Metrics


def key(job: Mapping[str, Any]) -> tuple[str, str]:
    return job["metadata"]["namespace"], job["metadata"]["name"]


class StatusWriter:
    def __init__(self, kube: Kube, metrics: Metrics) -> None:
        self.kube, self.metrics = kube, metrics
        # Per job uid: (resourceVersion a status write was based on, the one it produced, the
        # status it left), until the watch shows a newer version than the first.
        self.wrote: dict[str, tuple[str, str, dict[str, Any]]] = {}
        # Per job uid: (resourceVersion, the placement it records), read once per version.
        self.allocations: dict[str, tuple[str, Allocation | None]] = {}

    def forget_except(self, uids: set[str]) -> None:
        for uid in [u for u in self.wrote if u not in uids]:
            del self.wrote[uid]
        self.allocations = {u: a for u, a in self.allocations.items() if u in uids}

    def current(self, job: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """The job's latest resourceVersion and status known here: the cache's, unless it has
        not caught up with this process's own last write yet."""
        meta = job["metadata"]
        wrote = self.wrote.get(meta["uid"])
        if wrote is not None and wrote[0] == meta["resourceVersion"]:
            return wrote[1], wrote[2]
        return meta["resourceVersion"], dict(job.get("status") or {})

    def phase(self, job: Mapping[str, Any]) -> str | None:
        phase: str | None = self.current(job)[1].get("phase")
        return phase

    def allocation(self, job: Mapping[str, Any]) -> Allocation | None:
        """The recorded placement as an Allocation (every cycle asks it of every job)."""
        rv, current = self.current(job)
        uid = job["metadata"]["uid"]
        known = self.allocations.get(uid)
        if known is None or known[0] != rv:
            found = current.get("placement")
            known = self.allocations[uid] = (rv, status.allocation_of(found) if found else None)
        return known[1]

    def write(
        self,
        job: Mapping[str, Any],
        phase: str,
        updates: Sequence[status.Condition],
        now: datetime,
        placement: Mapping[str, Any] | None = None,
        resizes: Sequence[Mapping[str, Any]] | None = None,
        progress: Mapping[str, Any] | None = None,
    ) -> bool:
        """Patch the status on the latest version known here, never on top of a newer one: a
        write from stale state (a peer that has just been paused, a cache behind) raises
        Conflict and the cycle is retried on fresh state. False when the job is gone."""
        ns, name = key(job)
        uid, generation = job["metadata"]["uid"], job["metadata"].get("generation")
        rv, current = self.current(job)
        fields: dict[str, Any] = {
            "phase": phase,
            "observedGeneration": generation,
            "conditions": status.conditions(
                current.get("conditions") or (), updates, now, generation
            ),
        }
        if placement is not None:
            fields["placement"] = placement
        if resizes is not None:
            fields["resizes"] = list(resizes)
        if progress is not None:
            fields["progress"] = replacing(current.get("progress") or {}, progress)
        body = {"metadata": {"resourceVersion": rv}, "status": fields}
        try:
            got = self.kube.patch_job_status(ns, name, body)
        except NotFound:
            return False
        except Conflict:
            self.metrics.api_conflicts.inc()
            raise Conflict(f"{ns}/{name} changed since it was read", 409) from None
        self.wrote[uid] = (rv, got["metadata"]["resourceVersion"], got.get("status") or {})
        return True


def replacing(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch that leaves `new`, not `new` merged into `old`: what new lacks is deleted
    (null), or a figure no longer measured would stay beside the ones that are."""
    out: dict[str, Any] = {k: None for k in old if k not in new}
    for k, v in new.items():
        was = old.get(k)
        out[k] = replacing(was, v) if isinstance(was, Mapping) and isinstance(v, Mapping) else v
    return out
