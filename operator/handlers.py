"""kopf wiring, and nothing else: kopf's index of AcceleratorJobs and the informers of Nodes
and Pods (operator/informer.py) are the watch-fed cache; their events wake the reconciler.

kopf starts no handler before its index holds its initial listing, and the runner starts no
cycle before each informer holds its first List, so the first cycle after a (re)start already
sees every Node, Pod and AcceleratorJob: a restarted operator cannot mistake a busy cluster for
an empty one.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from typing import Any

import kopf

from berth.crds import GROUP, VERSION
from berth.operator.informer import Changed, Informer, Slim
from berth.operator.leader import Elector
from berth.operator.reconciler import Reconciler, View
from berth.operator.workers import LABEL_JOB

log = logging.getLogger("berth.operator")
JOBS = (GROUP, VERSION, "acceleratorjobs")
MAX_BACKOFF_S = 30.0


class Runner:
    """Runs reconciler cycles one at a time, in a thread, whenever something was woken, and
    only while this replica leads (when there is an `elector`)."""

    def __init__(self, reconciler: Reconciler, elector: Elector | None = None) -> None:
        self.reconciler, self.elector = reconciler, elector
        self.wanted = asyncio.Event()
        self.capacity_epoch = 0
        self.nodes: Informer | None = None
        self.pods: Informer | None = None
        self.jobs: kopf.Index[Any, Any] | None = None
        self.task: asyncio.Task[None] | None = None
        self.electing: asyncio.Task[None] | None = None
        # jobs whose job or Pods changed since the last cycle; None: every job
        self.changed: set[tuple[str, str]] | None = None

    def watch(self, nodes: Informer, pods: Informer) -> None:
        """Start the informers, their changes delivered to this (the running) event loop, and
        the lease's elections."""
        loop = asyncio.get_running_loop()
        self.nodes = nodes
        self.pods = pods
        for informer, changed in ((nodes, self._node_changed), (pods, self._pod_changed)):
            informer.start(_in_loop(loop, changed))
        if self.elector is not None:
            self.electing = asyncio.create_task(self._elect(self.elector), name="berth-lease")

    def attach(self, jobs: kopf.Index[Any, Any]) -> None:
        """Start the cycles, on kopf's index of jobs (handlers are given it, nothing else)."""
        if self.task is None:
            self.jobs = jobs
            self.task = asyncio.create_task(self._run(), name="berth-reconciler")

    def acting(self) -> bool:
        return self.elector is None or self.elector.leading()

    def wake(self, capacity: bool, job: tuple[str, str] | None = None) -> None:
        if capacity:
            self.capacity_epoch += 1
        if job is not None and self.changed is not None:
            self.changed.add(job)
        self.wanted.set()

    def _node_changed(self, old: Slim | None, new: Slim | None) -> None:
        # The informer keeps only what placement reads, so kubelets' (and kwok's) status
        # heartbeats never get here: every change is a reason to retry waiting jobs.
        listed = old is None and new is None  # a List replaced the cache
        if listed:
            self.changed = None
        if self.acting():
            if new is not None:
                self.reconciler.node_changed(new)
            elif listed and self.nodes is not None:
                for node in self.nodes.values():
                    self.reconciler.node_changed(node)
        self.wake(capacity=True)

    def _pod_changed(self, old: Slim | None, new: Slim | None) -> None:
        if old is None and new is None:  # a List replaced the cache
            self.changed = None
            self.wake(capacity=True)
            return
        phase = None if new is None else new["status"]["phase"]
        freed = new is None or phase in ("Succeeded", "Failed")
        meta = (new or old or {})["metadata"]
        owner = meta["labels"].get(LABEL_JOB)
        if owner is None and not freed:
            return  # another workload's pod took capacity: nothing waiting can fit better
        self.wake(capacity=freed, job=None if owner is None else (meta["namespace"] or "", owner))

    def _view(self) -> View:
        assert self.nodes is not None and self.pods is not None and self.jobs is not None
        jobs = [v for store in self.jobs.values() for v in store]
        changed = None if self.changed is None else frozenset(self.changed)
        self.changed = set()
        return View(self.nodes.values(), self.pods.values(), jobs, self.capacity_epoch, changed)

    async def _run(self) -> None:
        assert self.nodes is not None and self.pods is not None
        for informer in (self.nodes, self.pods):
            await asyncio.to_thread(informer.listed.wait)
        backoff = 0.25
        elastic = self.reconciler.elastic
        period = None if elastic is None else elastic.period_s  # resizing needs a clock too
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wanted.wait(), timeout=period)
            self.wanted.clear()
            if not self.acting():
                continue  # a standby: the lease's holder decides; _elect wakes us on taking it
            try:
                again = await asyncio.to_thread(self.reconciler.cycle, self._view())
            except Exception:
                log.exception("reconcile cycle failed; retrying in %.1f s", backoff)
                self.changed = None  # what it was to look at is not known to be done
                again = True
            if again:
                asyncio.get_running_loop().call_later(backoff, self.wanted.set)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            else:
                backoff = 0.25

    async def _elect(self, elector: Elector) -> None:
        while True:
            try:
                if await asyncio.to_thread(elector.step):
                    self.changed = None  # a new leader acts on the whole cache at once
                    self.wake(capacity=True)
            except Exception:
                log.exception("reading or renewing the lease failed; retrying")
            await asyncio.sleep(elector.timing.retry_s)

    async def stop(self) -> None:
        for informer in (self.nodes, self.pods):
            if informer is not None:
                informer.stop()
        tasks = [t for t in (self.task, self.electing) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# --- the cache and wake-ups --------------------------------------------------------------


@kopf.index(*JOBS)
def job_index(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, Any]:
    return {(namespace, name): copy.deepcopy(dict(body))}


@kopf.on.event(*JOBS)
async def job_event(memo: kopf.Memo, namespace: str | None, name: str, **kwargs: Any) -> None:
    runner: Runner = memo.runner
    runner.attach(kwargs["job_index"])
    runner.wake(capacity=False, job=(namespace or "", name))


def _in_loop(loop: asyncio.AbstractEventLoop, changed: Changed) -> Changed:
    """`changed`, called in `loop` (the informers call it from their threads)."""

    def deliver(old: Slim | None, new: Slim | None) -> None:
        loop.call_soon_threadsafe(changed, old, new)

    return deliver


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    await memo.runner.stop()
