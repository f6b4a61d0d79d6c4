"""kopf wiring, and nothing else: indices are the watch-fed cache, events wake the reconciler.

kopf starts no handler before every index holds its initial listing, so the first cycle after
a (re)start already sees every Node, Pod and AcceleratorJob: a restarted operator cannot
mistake a busy cluster for an empty one.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from typing import Any

import kopf

from berth.crds import GROUP, VERSION
from berth.operator.leader import Elector
from berth.operator.reconciler import Reconciler, View
from berth.operator.state import slim_node, slim_pod
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
        self.indices: tuple[kopf.Index[Any, Any], ...] | None = None
        self.task: asyncio.Task[None] | None = None
        self.nodes_seen: dict[str, dict[str, Any] | None] = {}
        self.electing: asyncio.Task[None] | None = None
        # jobs whose job or Pods changed since the last cycle; None: every job
        self.changed: set[tuple[str, str]] | None = None

    def attach(self, nodes: kopf.Index[Any, Any], pods: kopf.Index[Any, Any], jobs: Any) -> None:
        if self.task is None:
            self.indices = (nodes, pods, jobs)
            self.task = asyncio.create_task(self._run(), name="berth-reconciler")
            if self.elector is not None:
                self.electing = asyncio.create_task(self._elect(self.elector), name="berth-lease")

    def acting(self) -> bool:
        return self.elector is None or self.elector.leading()

    def wake(self, capacity: bool, job: tuple[str, str] | None = None) -> None:
        if capacity:
            self.capacity_epoch += 1
        if job is not None and self.changed is not None:
            self.changed.add(job)
        self.wanted.set()

    def _view(self) -> View:
        assert self.indices is not None
        nodes, pods, jobs = ([v for store in i.values() for v in store] for i in self.indices)
        changed = None if self.changed is None else frozenset(self.changed)
        self.changed = set()
        return View(nodes, pods, jobs, self.capacity_epoch, changed)

    async def _run(self) -> None:
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
        tasks = [t for t in (self.task, self.electing) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# --- the cache ---------------------------------------------------------------------------


@kopf.index("nodes")
def node_index(body: kopf.Body, name: str, **_: Any) -> dict[str, Any]:
    return {name: slim_node(body)}


@kopf.index("pods")
def pod_index(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, Any]:
    return {(namespace, name): slim_pod(body)}


@kopf.index(*JOBS)
def job_index(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Any, Any]:
    return {(namespace, name): copy.deepcopy(dict(body))}


# --- wake-ups ----------------------------------------------------------------------------


def _runner(memo: Any, kwargs: dict[str, Any]) -> Runner:
    runner: Runner = memo.runner
    runner.attach(kwargs["node_index"], kwargs["pod_index"], kwargs["job_index"])
    return runner


@kopf.on.event(*JOBS)
async def job_event(memo: kopf.Memo, namespace: str | None, name: str, **kwargs: Any) -> None:
    _runner(memo, kwargs).wake(capacity=False, job=(namespace or "", name))


@kopf.on.event("nodes")
async def node_event(
    memo: kopf.Memo, type: str | None, body: kopf.Body, name: str, **kwargs: Any
) -> None:
    runner = _runner(memo, kwargs)
    # Kubelets (and kwok) rewrite node status every few seconds; only a change placement
    # can see (capacity, labels, taints, readiness) is a reason to retry waiting jobs.
    seen = None if type == "DELETED" else slim_node(body)
    if runner.nodes_seen.get(name) != seen:
        runner.nodes_seen[name] = seen
        if seen is not None and runner.acting():
            runner.reconciler.node_changed(seen)
        runner.wake(capacity=True)


@kopf.on.event("pods")
async def pod_event(memo: kopf.Memo, type: str | None, body: kopf.Body, **kwargs: Any) -> None:
    phase = (body.get("status") or {}).get("phase")
    freed = type == "DELETED" or phase in ("Succeeded", "Failed")
    owner = (body.get("metadata") or {}).get("labels", {}).get(LABEL_JOB)
    job = None if owner is None else (body["metadata"].get("namespace") or "", owner)
    _runner(memo, kwargs).wake(capacity=freed, job=job)


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    await memo.runner.stop()
