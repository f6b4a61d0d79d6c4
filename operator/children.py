"""A placed job's children follow its recorded placement: the headless Service and one worker
Pod per share, created under deterministic names (so again after a restart is AlreadyExists,
never a second copy); stale workers deleted; the job's phase follows its workers."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from berth.core.allocation import Allocation
from berth.operator import resizing, status
from berth.operator.events import Events
from berth.operator.kube import AlreadyExists, Kube, NotFound
from berth.operator.workers import needs_service, service, worker_name, worker_pods
from berth.operator.writer import StatusWriter, key


class Children:
    def __init__(
        self, kube: Kube, writer: StatusWriter, events: Events, clock: Callable[[], datetime]
    ) -> None:
        self.kube, self.writer, self.events, self.clock = kube, writer, events, clock
        self.created: set[tuple[str, str]] = set()  # made here; the watch has not shown them
        self.services: set[str] = set()  # job uids whose Service exists

    def forget_except(self, uids: set[str]) -> None:
        self.services &= uids

    def reconcile(
        self,
        job: Mapping[str, Any],
        placement: Allocation,
        own: Mapping[str, Mapping[str, Any]],
        products: Mapping[str, str],
    ) -> None:
        """`own`: the job's Pods by name; `products`: node name -> GPU product label. A stale
        worker keeps its name until it is gone; then it is made again on its recorded node (a
        moved job's workers are re-placed one name at a time)."""
        self._ensure(job, placement, own, products)
        stale = resizing.stale_workers(key(job)[1], placement, own)
        for pod in stale:
            with contextlib.suppress(NotFound):  # already gone
                self.kube.delete_pod(key(job)[0], pod)
        self._follow(job, placement, {n: p for n, p in own.items() if n not in stale})

    def _ensure(
        self,
        job: Mapping[str, Any],
        placement: Allocation,
        own: Mapping[str, Mapping[str, Any]],
        products: Mapping[str, str],
    ) -> None:
        uid = job["metadata"]["uid"]
        ns = job["metadata"]["namespace"]
        if uid not in self.services and needs_service(job, placement):
            with contextlib.suppress(AlreadyExists):
                self.kube.create_service(ns, service(job))
            self.services.add(uid)
        missing = []
        for k in range(len(placement.shares)):
            name = worker_name(job["metadata"]["name"], k)
            if name in own:
                self.created.discard((ns, name))
            elif (ns, name) not in self.created:
                missing.append(k)
        if not missing:
            return
        pods = worker_pods(job, placement, products)  # built only when one is missing
        for k in missing:
            with contextlib.suppress(AlreadyExists):  # made before a restart
                self.kube.create_pod(ns, pods[k])
            self.created.add((ns, pods[k]["metadata"]["name"]))

    def _follow(
        self, job: Mapping[str, Any], placement: Allocation, own: Mapping[str, Mapping[str, Any]]
    ) -> None:
        found = status.workers_phase(job["metadata"]["name"], placement, own)
        if found.phase == status.PLACED and self.writer.current(job)[1].get("resizes"):
            found = status.WorkersPhase(status.RESIZING, found.reason, found.message)
        if found.phase == self.writer.phase(job):
            return
        updates = []
        if found.phase in (status.RUNNING, status.SUCCEEDED, status.FAILED):
            updates.append(
                status.Condition(
                    "Running", found.phase == status.RUNNING, found.reason, found.message
                )
            )
        if found.phase in status.FINISHED:
            updates.append(
                status.Condition(
                    "Complete", found.phase == status.SUCCEEDED, found.reason, found.message
                )
            )
        self.writer.write(job, found.phase, updates, self.clock())
        if found.phase not in (status.PLACED, status.RESIZING):
            kind = "Warning" if found.phase == status.FAILED else "Normal"
            self.events.post(job, kind, found.phase, found.message)
