"""One reconciler for all jobs: a cycle reads the watch-fed cache, places what waits (highest
priority first) and brings every placed job's children and phase in line with its status.

Cycles run one at a time, and within one the decisions are made one after another on one
snapshot, each placement's claims applied before the next, so two decisions never see the same
free devices; what surrounds them runs concurrently (the predictions of every job due, the
writes of different jobs, the children of the jobs already placed, up to API_WORKERS at once),
and a cycle brings in line only the jobs whose job or Pods changed since the last. The order of
writes makes a restart at any moment safe:

1. status.placement is written first, with the job's resourceVersion as a precondition, so a
   placement is recorded at most once and never replaced;
2. the Service and worker Pods follow from the recorded placement under deterministic names,
   so creating them again after a restart answers 409 AlreadyExists and changes nothing.

A job is therefore either unplaced (no children) or placed exactly once; a restarted operator
finds the recorded placement and only completes the children. A resize (every elastic period)
follows the same order: the new placement and its status.resizes entry are written first, under
the same precondition; from it, added workers are created and stale ones (beyond a shrink, or
on the nodes a moved job left) deleted, each made again on its recorded node once gone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from berth.core.allocation import Allocation
from berth.core.job import AcceleratorJob, parse_job
from berth.core.snapshot import (
    LABEL_GPU_PRODUCT,
    ClusterSnapshot,
    SnapshotBuilder,
    build_snapshot,
    with_claims,
)
from berth.core.validation import InvalidObject
from berth.operator import decision, predictions, status
from berth.operator.children import Children
from berth.operator.events import Events
from berth.operator.forecasts import Forecasts
from berth.operator.kube import ApiError, Conflict, Invalid, Kube
from berth.operator.measurements import Measurements
from berth.operator.metrics import Metrics
from berth.operator.rebalancer import Placed, Rebalancer
from berth.operator.state import capacity_pods, claims
from berth.operator.workers import LABEL_JOB
from berth.operator.writer import StatusWriter, key
from berth.placement.elastic import Settings

log = logging.getLogger("berth.operator")
API_WORKERS = 8  # API calls in flight at once: the API server's share of a burst, bounded


@dataclass(frozen=True)
class View:
    """The cache as one cycle reads it (copied from kopf's indices in the event loop)."""

    nodes: Sequence[Mapping[str, Any]]
    pods: Sequence[Mapping[str, Any]]
    jobs: Sequence[Mapping[str, Any]]
    capacity_epoch: int  # grows whenever capacity may have been freed or added
    # (namespace, job name) whose job or worker Pods changed since the last cycle; None:
    # every job (the first cycle, a new leader's)
    changed: frozenset[tuple[str, str]] | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def _queue_order(job: Mapping[str, Any]) -> tuple[int, str, tuple[str, str]]:
    """Highest priority first, then the oldest."""
    return (
        -int(job["spec"].get("priority", 0)),
        job["metadata"].get("creationTimestamp", ""),
        key(job),
    )


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        ask: predictions.Ask | None,
        metrics: Metrics,
        clock: Callable[[], datetime] = _now,
        elastic: Settings | None = None,
        idle_watts: Mapping[str, float] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        events: Events | None = None,
        measurements: Measurements | None = None,
        workers: int = API_WORKERS,
    ) -> None:
        self.metrics, self.clock, self.elastic = metrics, clock, elastic
        self.idle_watts = dict(idle_watts or {})  # the cluster's energy facts (--energy-facts)
        self.snapshots = SnapshotBuilder(self.idle_watts)
        self.writer = StatusWriter(kube, metrics)
        self.events = events or Events(kube, clock)
        self.forecasts = Forecasts(ask, monotonic)
        self.children = Children(kube, self.writer, self.events, clock)
        self.rebalancer = (
            None
            if elastic is None
            else Rebalancer(
                elastic,
                self.writer,
                self.events,
                self.forecasts,
                metrics,
                clock,
                monotonic,
                measurements,
            )
        )
        self.waiting: dict[str, tuple[int, int | None, str]] = {}  # epoch, generation, message
        self.parsed: dict[tuple[str, int | None], AcceleratorJob | InvalidObject] = {}
        self.revisit: set[tuple[str, str]] = set()  # jobs whose children a cycle left undone
        # API calls of different jobs in flight together (the decisions stay serial)
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="berth-api")

    # --- the cycle -----------------------------------------------------------------------

    def cycle(self, view: View) -> bool:
        """One pass over every job; True when something must be tried again soon."""
        retry = False
        # 1. Forget what belonged to jobs that are gone.
        self._forget_except({j["metadata"]["uid"] for j in view.jobs})
        # 2. Split the unfinished jobs into placed (their recorded placement) and waiting.
        placed: Placed = []
        waiting: list[Mapping[str, Any]] = []
        for job in view.jobs:
            if self.writer.phase(job) in status.FINISHED:
                continue
            recorded = self.writer.allocation(job)
            if recorded is None:
                waiting.append(job)
            else:
                placed.append((job, recorded))
        self.metrics.queue.set(len(waiting))
        waiting.sort(key=_queue_order)
        products = {
            n["metadata"]["name"]: n["metadata"]["labels"].get(LABEL_GPU_PRODUCT, "")
            for n in view.nodes
        }
        by_job: dict[tuple[str, str], dict[str, Mapping[str, Any]]] = {}
        for pod in view.pods:
            meta = pod["metadata"]
            owner = meta["labels"].get(LABEL_JOB)
            if owner is not None:
                by_job.setdefault((meta["namespace"], owner), {})[meta["name"]] = pod

        def children(job: Mapping[str, Any], placement: Allocation) -> bool:
            return self._children(job, placement, by_job.get(key(job), {}), products)

        # 3. Bring the placed jobs whose job or Pods changed, or that the last cycle left
        # undone, in line with their placement (children and phase), beside the placing: a
        # job's phase does not wait for the placements of the jobs that came after it.
        following = [
            (job, placement)
            for job, placement in placed
            if view.changed is None or key(job) in view.changed or key(job) in self.revisit
        ]
        followed = [self.pool.submit(children, job, placement) for job, placement in following]
        self.revisit = set()
        # 4. Place what is due a try, on one snapshot that each placement's claims update;
        # each placement's children follow its write at once.
        due = [job for job in waiting if self._due(job, view.capacity_epoch)]
        snapshot: ClusterSnapshot | None = None  # built only when some job is due a try
        if due:
            built = self.snapshots.build(view.nodes, capacity_pods(view.pods, placed))
            decided, snapshot = self._place_all(due, built, view.capacity_epoch, children)
            if any(placement is None for _, placement, _ in decided):
                retry = True
                snapshot = built  # without the claims of the writes that failed
                for job, placement, _ in decided:
                    if placement is not None:
                        snapshot = with_claims(snapshot, claims(job, placement))
            for job, placement, done in decided:
                if placement is not None:
                    placed.append((job, placement))
                    if not done:
                        self.revisit.add(key(job))
        for (job, _), future in zip(following, followed, strict=True):
            if not future.result():
                self.revisit.add(key(job))
        # 5. Resize running elastic jobs, once per period (once the jobs followed in step 3
        # are done with), then bring the resized ones in line.
        if self.rebalancer is not None and self.rebalancer.due():
            if snapshot is None:  # else step 4's, its claims applied: the same as a rebuild
                snapshot = self.snapshots.build(view.nodes, capacity_pods(view.pods, placed))
            try:
                before = {key(j): p for j, p in placed}
                placed = self.rebalancer.apply(snapshot, placed, waiting, self._parse)
            except Conflict as exc:
                log.info("%s; resizing again next period", exc.message)
            except ApiError as exc:
                log.warning("resizing: %s; again next period", exc.message)
            resized = [(j, p) for j, p in placed if before.get(key(j)) != p]
            outcomes = self.pool.map(lambda jp: children(*jp), resized)
            for (job, _), done in zip(resized, outcomes, strict=True):
                if not done:
                    self.revisit.add(key(job))
        return retry or bool(self.revisit)

    def _children(
        self,
        job: Mapping[str, Any],
        placement: Allocation,
        own: Mapping[str, Mapping[str, Any]],
        products: Mapping[str, str],
    ) -> bool:
        """One job's children and phase; False when it must be tried again."""
        try:
            self.children.reconcile(job, placement, own, products)
        except Conflict as exc:
            log.info("%s; retrying", exc.message)
            return False
        except Invalid as exc:  # the user's template makes an invalid Pod
            self._reject_template(job, exc)
        except ApiError as exc:
            log.warning("children of %s/%s: %s; retrying", *key(job), exc.message)
            return False
        return True

    def _forget_except(self, uids: set[str]) -> None:
        self.writer.forget_except(uids)
        self.children.forget_except(uids)
        self.forecasts.forget_except(uids)
        if self.rebalancer is not None:
            self.rebalancer.forget_except(uids)
        self.waiting = {u: w for u, w in self.waiting.items() if u in uids}
        self.parsed = {k: v for k, v in self.parsed.items() if k[0] in uids}

    # --- placing -------------------------------------------------------------------------

    def _parse(self, job: Mapping[str, Any]) -> AcceleratorJob | InvalidObject:
        meta = job["metadata"]
        parsed = (meta["uid"], meta.get("generation"))
        if parsed not in self.parsed:
            try:
                self.parsed[parsed] = parse_job(job, admitted=True)
            except InvalidObject as exc:
                self.parsed[parsed] = exc
        return self.parsed[parsed]

    def _due(self, job: Mapping[str, Any], epoch: int) -> bool:
        """False while nothing has freed capacity or changed the spec since it last did not
        fit: a waiting job is retried on events, never by busy polling."""
        meta = job["metadata"]
        seen = self.waiting.get(meta["uid"])
        return seen is None or seen[0] != epoch or seen[1] != meta.get("generation")

    def _place_all(
        self,
        due: Sequence[Mapping[str, Any]],
        snapshot: ClusterSnapshot,
        epoch: int,
        children: Callable[[Mapping[str, Any], Allocation], bool],
    ) -> tuple[list[tuple[Mapping[str, Any], Allocation | None, bool]], ClusterSnapshot]:
        """Each due job placed, waiting or refused, and the children of each one placed made
        right after its write; (job, its allocation or None to retry it, whether its children
        were made) for those a placement was decided for, in order, and the snapshot with the
        claims of every one decided."""
        now, began = self.clock(), time.perf_counter()
        admitted: list[tuple[Mapping[str, Any], AcceleratorJob]] = []
        for job in due:
            parsed = self._parse(job)
            refused = decision.refusal(parsed, now)
            if refused is not None:
                self._guarded(job, partial(self._refuse, job, refused.reason, refused.message, now))
            else:
                assert isinstance(parsed, AcceleratorJob)
                admitted.append((job, parsed))
        # 4a. Predictions for all, concurrently, one recommender call per distinct question:
        # they depend on which types and counts the cluster has, not on what is free.
        jobs = [parsed for _, parsed in admitted]
        devices = predictions.devices(snapshot)
        found = self.forecasts.predict_all(jobs, devices, self.pool)
        capacity = {t: total for t, (_, total) in devices.items()}
        # 4b. The decisions, one after another on one snapshot, each one's claims applied
        # before the next: no device is promised twice.
        chosen: list[tuple[Mapping[str, Any], decision.Placed]] = []
        waits: list[tuple[Mapping[str, Any], decision.Waiting]] = []
        for (job, parsed), predicted in zip(admitted, found, strict=True):
            decided = decision.admit(parsed, predicted, snapshot, capacity, now)
            if isinstance(decided, decision.Waiting):
                waits.append((job, decided))
                continue
            snapshot = with_claims(snapshot, claims(job, decided.allocation))
            chosen.append((job, decided))

        # 4c. The writes, concurrently, each conditional on its job's resourceVersion, each
        # followed by its job's children.
        def record(
            job: Mapping[str, Any], decided: decision.Placed
        ) -> tuple[Allocation | None, bool]:
            placement = self._record(job, decided, now, began)
            return placement, placement is not None and children(job, placement)

        outcomes = list(self.pool.map(lambda jd: record(*jd), chosen))
        placed = [p for p, _ in outcomes]
        for job, waiting in waits:
            self.metrics.decisions.labels("pending").inc()
            if any(p is None for p in placed):
                continue  # claims of a write that failed held it back: try it again soon
            self._guarded(
                job, partial(self._wait, job, waiting.message, epoch, now, waiting.conditions)
            )
        out = [(job, p, done) for (job, _), (p, done) in zip(chosen, outcomes, strict=True)]
        return out, snapshot

    def _record(
        self, job: Mapping[str, Any], decided: decision.Placed, now: datetime, began: float
    ) -> Allocation | None:
        """Write the placement; None when it must be decided again (the job changed, the API
        failed, or it is gone)."""
        uid = job["metadata"]["uid"]
        try:
            # The resourceVersion precondition makes this the only placement ever recorded:
            # a job placed meanwhile (by a restarted operator or an old leader) is a Conflict.
            if not self.writer.write(job, status.PLACED, decided.conditions, now,
                                     decided.placement):  # fmt: skip
                return None
        except Conflict as exc:
            log.info("%s; retrying", exc.message)
            return None
        except ApiError as exc:
            log.warning("placing %s/%s: %s; retrying", *key(job), exc.message)
            return None
        self.waiting.pop(uid, None)
        self.forecasts.kept[uid] = dict(decided.predictions)
        self.metrics.decisions.labels("placed").inc()
        self.metrics.decision_seconds.observe(time.perf_counter() - began)
        if decided.degraded is not None:
            self.metrics.fallbacks.labels(decided.source).inc()
        if decided.energy_j is not None:
            self.metrics.predicted_energy.labels(decided.allocation.type).inc(decided.energy_j)
        for note in decided.notes:
            self.events.post(job, note.kind, note.reason, note.message)
        return decided.allocation

    def _guarded(self, job: Mapping[str, Any], write: Callable[[], None]) -> None:
        try:
            write()
        except ApiError as exc:  # a Conflict included: the job is tried again on its event
            log.info("%s/%s: %s; again on its next change", *key(job), exc.message)

    def _refuse(self, job: Mapping[str, Any], reason: str, message: str, now: datetime) -> None:
        self.writer.write(
            job, status.FAILED, [status.Condition("Validated", False, reason, message)], now
        )
        self.metrics.decisions.labels("invalid").inc()
        self.events.post(job, "Warning", reason, message)

    def _reject_template(self, job: Mapping[str, Any], exc: Invalid) -> None:
        message = f"the API server refused a worker Pod: {exc.message}"
        updates = [status.Condition("Running", False, "WorkerRejected", message)]
        self.writer.write(job, status.FAILED, updates, self.clock())
        self.events.post(job, "Warning", "WorkerRejected", message)

    def _wait(
        self,
        job: Mapping[str, Any],
        message: str,
        epoch: int,
        now: datetime,
        deadline: Sequence[status.Condition] = (),
    ) -> None:
        meta = job["metadata"]
        uid, generation = meta["uid"], meta.get("generation")
        before = self.waiting.get(uid)
        self.waiting[uid] = (epoch, generation, message)
        current = self.writer.current(job)[1]
        old = next((c for c in current.get("conditions") or () if c.get("type") == "Placed"), None)
        if before is not None and before[2] == message:
            return
        if current.get("phase") == status.PENDING and old and old.get("message") == message:
            return
        self.writer.write(
            job,
            status.PENDING,
            [
                status.Condition("Validated", True, "Valid", "spec accepted"),
                status.Condition("Placed", False, "Unschedulable", message),
                *deadline,
            ],
            now,
        )
        if before is None and not (old and old.get("reason") == "Unschedulable"):
            self.events.post(job, "Warning", "Unschedulable", message)

    # --- nodes ---------------------------------------------------------------------------

    def node_changed(self, node: Mapping[str, Any]) -> None:
        """Say on the node, once per problem, why placement will not use (part of) it."""
        state = build_snapshot([node], [], self.idle_watts).nodes[0]
        for problem in state.problems:
            if (state.name, problem.message) not in self.events.node_problems:
                self.events.node_problems.add((state.name, problem.message))
                message = f"berth does not place on this node: {problem.message}"
                self.events.post(node, "Warning", problem.reason, message, kind_name="Node")
