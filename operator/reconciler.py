"""One reconciler for all jobs: a cycle reads the watch-fed cache, places what waits (highest
priority first) and brings every placed job's children and phase in line with its status.

Cycles run one at a time, so two decisions never see the same free devices. The order of
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

import json
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from berth.core import tables
from berth.core.job import AcceleratorJob, check_deadline, parse_job
from berth.core.prediction import Prediction
from berth.core.snapshot import (
    LABEL_GPU_PRODUCT,
    ClusterSnapshot,
    build_snapshot,
    with_claims,
)
from berth.core.validation import InvalidObject
from berth.crds import GROUP, VERSION
from berth.operator import predictions, resizing, status
from berth.operator.metrics import Metrics
from berth.operator.state import capacity_pods, claims
from berth.operator.workers import LABEL_JOB, Placement, service, worker_name, worker_pods
from berth.placement.deadline import admission
from berth.placement.elastic import Settings, WaitingJob, rebalance
from berth.placement.fallback import SpecTransfer
from berth.placement.plan import deadline_budget, decide
from berth.placement.roofline import Roofline
from berth.recommender.client import RecommenderUnavailable

log = logging.getLogger("berth.operator")
PLURAL = "acceleratorjobs"
INSTANCE = f"{socket.gethostname()}-{os.getpid()}"  # the pod, for Events' reportingInstance
BREAKER_S = 10.0  # after a failed call, skip the recommender this long (no timeout per job)


@dataclass(frozen=True)
class View:
    """The cache as one cycle reads it (copied from kopf's indices in the event loop)."""

    nodes: Sequence[Mapping[str, Any]]
    pods: Sequence[Mapping[str, Any]]
    jobs: Sequence[Mapping[str, Any]]
    capacity_epoch: int  # grows whenever capacity may have been freed or added


def _now() -> datetime:
    return datetime.now(UTC)


def _key(job: Mapping[str, Any]) -> tuple[str, str]:
    return job["metadata"]["namespace"], job["metadata"]["name"]


def _stamp(now: datetime) -> str:
    return now.isoformat().replace("+00:00", "Z")


class Reconciler:
    def __init__(
        self,
        api: client.ApiClient,
        ask: predictions.Ask | None,
        metrics: Metrics,
        clock: Callable[[], datetime] = _now,
        elastic: Settings | None = None,
        idle_watts: Mapping[str, float] | None = None,
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.ask = ask
        self.metrics = metrics
        self.clock = clock
        self.elastic = elastic
        self.idle_watts = dict(idle_watts or {})  # the cluster's energy facts (--energy-facts)
        self.rebalanced_at = -math.inf  # monotonic
        self.found: dict[str, dict[tuple[str, int], Prediction]] = {}  # uid -> (type, count) ->
        self.spec_transfer = SpecTransfer(tables.read()[0])
        self.roofline = Roofline()
        self.breaker_until = 0.0
        self.breaker_reason = ""
        # Per job uid: (resourceVersion a status write was based on, the one it produced, the
        # status it left), until the watch shows a newer version than the first.
        self.wrote: dict[str, tuple[str, str, dict[str, Any]]] = {}
        self.waiting: dict[str, tuple[int, int | None, str]] = {}  # epoch, generation, message
        self.created: set[tuple[str, str]] = set()
        self.services: set[str] = set()
        self.parsed: dict[tuple[str, int | None], AcceleratorJob | InvalidObject] = {}
        self.node_problems: set[tuple[str, str]] = set()
        self.poster = ThreadPoolExecutor(max_workers=2, thread_name_prefix="berth-events")

    # --- the cycle -----------------------------------------------------------------------

    def cycle(self, view: View) -> bool:
        """One pass over every job; True when something must be tried again soon."""
        retry = False
        uids = {j["metadata"]["uid"] for j in view.jobs}
        self._forget_except(uids)
        placed: list[tuple[Mapping[str, Any], Placement]] = []
        waiting: list[Mapping[str, Any]] = []
        for job in view.jobs:
            if self._phase(job) in status.FINISHED:
                continue
            recorded = self._placement(job)
            if recorded is None:
                waiting.append(job)
            else:
                placed.append((job, Placement.from_status(recorded)))
        self.metrics.queue.set(len(waiting))

        products = {
            n["metadata"]["name"]: n["metadata"]["labels"].get(LABEL_GPU_PRODUCT, "")
            for n in view.nodes
        }
        waiting.sort(
            key=lambda j: (
                -int(j["spec"].get("priority", 0)),
                j["metadata"].get("creationTimestamp", ""),
                _key(j),
            )
        )
        snapshot = None  # built once per cycle, and only when some job is due a try
        for job in waiting:
            if not self._due(job, view.capacity_epoch):
                continue
            if snapshot is None:
                snapshot = build_snapshot(
                    view.nodes, capacity_pods(view.pods, placed), self.idle_watts
                )
            try:
                placement = self._place(job, snapshot, view.capacity_epoch)
            except Conflict as exc:
                log.info("%s; retrying", exc)
                retry = True
                continue
            except ApiException as exc:
                log.warning("placing %s/%s: %s; retrying", *_key(job), exc.reason)
                retry = True
                continue
            if placement is not None:
                placed.append((job, placement))
                snapshot = with_claims(snapshot, claims(job, placement))

        if self.elastic is not None and self._rebalance_due():
            try:
                placed = self._rebalance(view, placed, waiting)
            except Conflict as exc:
                log.info("%s; resizing again next period", exc)
            except ApiException as exc:
                log.warning("resizing: %s; again next period", exc.reason)

        by_job: dict[tuple[str, str], dict[str, Mapping[str, Any]]] = {}
        for pod in view.pods:
            meta = pod["metadata"]
            owner = meta["labels"].get(LABEL_JOB)
            if owner is not None:
                by_job.setdefault((meta["namespace"], owner), {})[meta["name"]] = pod
        for job, placement in placed:
            own = by_job.get(_key(job), {})
            try:
                # A stale worker keeps its name until it is gone; then it is made again on its
                # recorded node (a moved job's workers are re-placed one name at a time).
                self._ensure_children(job, placement, own, products)
                stale = resizing.stale_workers(_key(job)[1], placement, own)
                self._remove(job, stale)
                current = {n: p for n, p in own.items() if n not in stale}
                self._follow_workers(job, placement, current)
            except Conflict as exc:
                log.info("%s; retrying", exc)
                retry = True
            except ApiException as exc:
                if exc.status in (400, 422):  # the user's template makes an invalid Pod
                    self._reject_template(job, exc)
                    continue
                log.warning("children of %s/%s: %s; retrying", *_key(job), exc.reason)
                retry = True
        return retry

    def _forget_except(self, uids: set[str]) -> None:
        for table in (self.wrote, self.waiting):
            for uid in [u for u in table if u not in uids]:
                del table[uid]
        self.services &= uids
        self.found = {k: v for k, v in self.found.items() if k in uids}
        self.parsed = {k: v for k, v in self.parsed.items() if k[0] in uids}

    def _current(self, job: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """The job's latest resourceVersion and status known here: the cache's, unless it has
        not caught up with this process's own last write yet."""
        meta = job["metadata"]
        wrote = self.wrote.get(meta["uid"])
        if wrote is not None and wrote[0] == meta["resourceVersion"]:
            return wrote[1], wrote[2]
        return meta["resourceVersion"], dict(job.get("status") or {})

    def _phase(self, job: Mapping[str, Any]) -> str | None:
        phase: str | None = self._current(job)[1].get("phase")
        return phase

    def _placement(self, job: Mapping[str, Any]) -> dict[str, Any] | None:
        found = self._current(job)[1].get("placement")
        return dict(found) if found else None

    # --- placing -------------------------------------------------------------------------

    def _parse(self, job: Mapping[str, Any]) -> AcceleratorJob | InvalidObject:
        meta = job["metadata"]
        key = (meta["uid"], meta.get("generation"))
        if key not in self.parsed:
            try:
                self.parsed[key] = parse_job(job, admitted=True)
            except InvalidObject as exc:
                self.parsed[key] = exc
        return self.parsed[key]

    def _ask(self) -> tuple[predictions.Ask | None, str]:
        """The recommender call, breaker-guarded, or None and the reason it is not asked."""
        if self.ask is None:
            return None, "no recommender configured"
        if time.monotonic() < self.breaker_until:
            return None, f"recommender skipped for {BREAKER_S:g} s after: {self.breaker_reason}"
        ask = self.ask

        def guarded(job: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
            try:
                return ask(job, rows)
            except RecommenderUnavailable as exc:
                self.breaker_until = time.monotonic() + BREAKER_S
                self.breaker_reason = str(exc)
                raise

        return guarded, ""

    def _due(self, job: Mapping[str, Any], epoch: int) -> bool:
        """False while nothing has freed capacity or changed the spec since it last did not
        fit: a waiting job is retried on events, never by busy polling."""
        meta = job["metadata"]
        seen = self.waiting.get(meta["uid"])
        return seen is None or seen[0] != epoch or seen[1] != meta.get("generation")

    def _place(
        self, job: Mapping[str, Any], snapshot: ClusterSnapshot, epoch: int
    ) -> Placement | None:
        meta = job["metadata"]
        uid = meta["uid"]
        began = time.perf_counter()
        now = self.clock()
        parsed = self._parse(job)
        if isinstance(parsed, InvalidObject):
            self._refuse(job, "Invalid", str(parsed), now)
            return None
        late = check_deadline(parsed, now)
        if late is not None:
            self._refuse(job, "DeadlinePassed", f"{late.path}: {late.message}", now)
            return None

        rows = predictions.candidates(parsed, snapshot)
        ask, skipped = self._ask()
        got = predictions.predict(parsed, rows, ask, self.spec_transfer, self.roofline, skipped)
        degraded = got.degraded
        capacity = {t: total for t, (_, total) in predictions.devices(snapshot).items()}
        admitted = admission(parsed, got.predictions, capacity, deadline_budget(parsed, now))
        deadline = []
        if admitted is not None:
            reason = "MinimumShare" if admitted.reachable else "Unreachable"
            deadline.append(
                status.Condition("DeadlineReachable", admitted.reachable, reason, admitted.message)
            )
        plan = decide(snapshot, parsed, got.predictions, now)
        chosen = plan.chosen
        if chosen is None:
            message = plan.note or "no placement"
            if plan.alternatives:
                message += ": " + "; ".join(
                    f"{r.type} x{r.count}: {r.reason}" for r in plan.alternatives[:3]
                )
            self._wait(job, message, epoch, now, deadline)
            self.metrics.decisions.labels("pending").inc()
            return None

        source = got.sources[(chosen.type, chosen.count)]
        placement = status.placement_status(chosen, plan, source)
        updates = [
            status.Condition("Validated", True, "Valid", "spec accepted"),
            status.Condition(
                "Placed",
                True,
                "Placed",
                f"{chosen.type} x{chosen.count} on {placement['nodeNames']}"
                + (f" ({plan.note})" if plan.note else ""),
            ),
        ]
        if degraded is not None:
            updates.append(status.Condition("RecommenderUnavailable", True, "Fallback", degraded))
        updates += deadline
        # The resourceVersion precondition makes this the only placement ever recorded: a
        # job placed meanwhile (by a restarted or peer operator) answers 409.
        if not self._write(job, status.PLACED, updates, now, placement):
            return None
        self.waiting.pop(uid, None)
        self.found[uid] = dict(got.predictions)
        self.metrics.decisions.labels("placed").inc()
        self.metrics.decision_seconds.observe(time.perf_counter() - began)
        if degraded is not None:
            self.metrics.fallbacks.labels(source).inc()
        energy = chosen.estimate.energy_kwh
        if energy is not None:
            self.metrics.predicted_energy.labels(chosen.type).inc(energy.value * 3.6e6)
        predicted = placement["predicted"]
        self._event(
            job,
            "Normal",
            "Placed",
            f"{chosen.type} x{chosen.count} on {placement['nodeNames']}: "
            f"{predicted['joulesPerSample']:.4g} J/sample predicted by {source}"
            + (f"; {degraded}" if degraded else ""),
        )
        if admitted is not None and not admitted.reachable:
            self._event(job, "Warning", "DeadlineUnreachable", admitted.message)
        return Placement.from_status(placement)

    def _refuse(self, job: Mapping[str, Any], reason: str, message: str, now: datetime) -> None:
        self._write(
            job, status.FAILED, [status.Condition("Validated", False, reason, message)], now
        )
        self.metrics.decisions.labels("invalid").inc()
        self._event(job, "Warning", reason, message)

    def _reject_template(self, job: Mapping[str, Any], exc: ApiException) -> None:
        message = f"the API server refused a worker Pod: {_api_message(exc)}"
        updates = [status.Condition("Running", False, "WorkerRejected", message)]
        self._write(job, status.FAILED, updates, self.clock())
        self._event(job, "Warning", "WorkerRejected", message)

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
        current = self._current(job)[1]
        old = next((c for c in current.get("conditions") or () if c.get("type") == "Placed"), None)
        if before is not None and before[2] == message:
            return
        if current.get("phase") == status.PENDING and old and old.get("message") == message:
            return
        self._write(
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
            self._event(job, "Warning", "Unschedulable", message)

    # --- resizing ------------------------------------------------------------------------

    def _rebalance_due(self) -> bool:
        assert self.elastic is not None
        if time.monotonic() - self.rebalanced_at < self.elastic.period_s:
            return False
        self.rebalanced_at = time.monotonic()
        return True

    def _rebalance(
        self,
        view: View,
        placed: list[tuple[Mapping[str, Any], Placement]],
        waiting: Sequence[Mapping[str, Any]],
    ) -> list[tuple[Mapping[str, Any], Placement]]:
        """One period of the elastic policy; the placements after the resizes it applied."""
        assert self.elastic is not None
        now = self.clock()
        snapshot = build_snapshot(view.nodes, capacity_pods(view.pods, placed), self.idle_watts)
        running, by_uid = [], {}
        for job, _ in placed:
            parsed = self._parse(job)
            current = self._current(job)[1]
            if isinstance(parsed, InvalidObject):
                continue
            if not parsed.elastic and parsed.restart_s is None:
                continue  # rigid without the checkpoint contract: never moved
            if current.get("phase") != status.RUNNING:
                continue  # resized only once its workers run, never mid-start
            uid = job["metadata"]["uid"]
            found = self._predictions(uid, parsed, snapshot)
            running.append(resizing.running_job(uid, parsed, current, found, now))
            by_uid[uid] = job
        if not running:
            return placed
        types = sorted({n.accelerator.type for n in snapshot.nodes if n.accelerator.type})
        queue = []
        for job in waiting:
            parsed = self._parse(job)
            if not isinstance(parsed, InvalidObject) and self._placement(job) is None:
                allowed = tuple(t for t in types if parsed.accelerators.allows(t))
                queue.append(WaitingJob(job["metadata"]["name"], parsed, allowed))
        changed: dict[str, Placement] = {}
        for r in rebalance(snapshot, running, queue, now.timestamp(), self.elastic):
            job = by_uid[r.id]
            current = self._current(job)[1]
            placement, history = resizing.resized(current, r, now)
            was = current["placement"]["type"]
            to = f"x{r.to_count}" if r.type == was else f"{r.type} x{r.to_count}"
            message = (
                f"{was} x{r.from_count} -> {to} on {placement['nodeNames']}: "
                f"{r.reason} ({r.predicted_gain} predicted)"
            )
            update = status.Condition("Running", True, "Resized", message)
            if not self._write(job, status.RESIZING, [update], now, placement, history):
                continue
            changed[r.id] = Placement.from_status(placement)
            self.metrics.resizes.inc()
            self._event(job, "Normal", "Resized", message)
        return [(j, changed.get(j["metadata"]["uid"], p)) for j, p in placed]

    def _predictions(
        self, uid: str, job: AcceleratorJob, snapshot: ClusterSnapshot
    ) -> dict[tuple[str, int], Prediction]:
        """The job's predictions on every allowed (type, count): kept from placement, asked
        again after a restart."""
        if uid not in self.found:
            rows = predictions.candidates(job, snapshot)
            ask, skipped = self._ask()
            got = predictions.predict(job, rows, ask, self.spec_transfer, self.roofline, skipped)
            self.found[uid] = dict(got.predictions)
        return self.found[uid]

    # --- children and phase --------------------------------------------------------------

    def _ensure_children(
        self,
        job: Mapping[str, Any],
        placement: Placement,
        own: Mapping[str, Mapping[str, Any]],
        products: Mapping[str, str],
    ) -> None:
        uid = job["metadata"]["uid"]
        ns = job["metadata"]["namespace"]
        if uid not in self.services:
            self._create(lambda: self.core.create_namespaced_service(ns, service(job)))
            self.services.add(uid)
        missing = []
        for k in range(len(placement.shares)):
            name = worker_name(job["metadata"]["name"], k)
            if name in own:
                self.created.discard((ns, name))
            elif (ns, name) not in self.created:  # else created; the watch has not shown it
                missing.append(k)
        if not missing:
            return
        pods = worker_pods(job, placement, products)  # built only when one is missing
        for k in missing:
            self._create(partial(self.core.create_namespaced_pod, ns, pods[k]))
            self.created.add((ns, pods[k]["metadata"]["name"]))

    def _remove(self, job: Mapping[str, Any], stale: Sequence[str]) -> None:
        ns = _key(job)[0]
        for pod in stale:
            try:
                self.core.delete_namespaced_pod(pod, ns)
            except ApiException as exc:
                if exc.status != 404:  # already gone
                    raise

    @staticmethod
    def _create(call: Callable[[], Any]) -> None:
        try:
            call()
        except ApiException as exc:
            if exc.status != 409:  # AlreadyExists: made before a restart
                raise

    def _follow_workers(
        self, job: Mapping[str, Any], placement: Placement, own: Mapping[str, Mapping[str, Any]]
    ) -> None:
        found = status.workers_phase(job["metadata"]["name"], placement, own)
        if found.phase == status.PLACED and self._current(job)[1].get("resizes"):
            found = status.WorkersPhase(status.RESIZING, found.reason, found.message)
        if found.phase == self._phase(job):
            return
        now = self.clock()
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
        self._write(job, found.phase, updates, now)
        if found.phase not in (status.PLACED, status.RESIZING):
            kind = "Warning" if found.phase == status.FAILED else "Normal"
            self._event(job, kind, found.phase, found.message)

    # --- writes --------------------------------------------------------------------------

    def _write(
        self,
        job: Mapping[str, Any],
        phase: str,
        updates: Sequence[status.Condition],
        now: datetime,
        placement: dict[str, Any] | None = None,
        resizes: list[dict[str, Any]] | None = None,
    ) -> bool:
        """Patch the status on the latest version known here, never on top of a newer one: a
        write from stale state (a peer that has just been paused, a cache behind) answers 409
        and the cycle is retried on fresh state. False when the job is gone."""
        ns, name = _key(job)
        uid, generation = job["metadata"]["uid"], job["metadata"].get("generation")
        rv, current = self._current(job)
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
            fields["resizes"] = resizes
        body = {"metadata": {"resourceVersion": rv}, "status": fields}
        try:
            got = self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, ns, PLURAL, name, body
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            if exc.status == 409:
                self.metrics.api_conflicts.inc()
                raise Conflict(f"{ns}/{name} changed since it was read") from None
            raise
        self.wrote[uid] = (rv, got["metadata"]["resourceVersion"], got.get("status") or {})
        return True

    def node_changed(self, node: Mapping[str, Any]) -> None:
        """Say on the node, once per problem, why placement will not use (part of) it."""
        state = build_snapshot([node], [], self.idle_watts).nodes[0]
        name = state.name
        for problem in state.problems:
            if (name, problem) not in self.node_problems:
                self.node_problems.add((name, problem))
                reason = "UnknownAccelerator" if "unknown accelerator" in problem else "NodeFacts"
                message = f"berth does not place on this node: {problem}"
                self._event(node, "Warning", reason, message, kind_name="Node")

    def _event(
        self,
        obj: Mapping[str, Any],
        kind: str,
        reason: str,
        message: str,
        kind_name: str = "AcceleratorJob",
    ) -> None:
        meta = obj["metadata"]
        namespace = meta.get("namespace") or "default"  # Events about Nodes live in default
        now = self.clock()
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{meta['name']}.", namespace=namespace),
            involved_object=client.V1ObjectReference(
                api_version=f"{GROUP}/{VERSION}" if kind_name == "AcceleratorJob" else "v1",
                kind=kind_name,
                name=meta["name"],
                namespace=meta.get("namespace"),
                uid=meta.get("uid"),
            ),
            type=kind,
            reason=reason,
            message=message[:1024],
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=client.V1EventSource(component="berth-operator"),
            reporting_component="berth.dev/operator",
            reporting_instance=INSTANCE,
        )
        self.poster.submit(self._post, event, reason)

    def _post(self, event: client.CoreV1Event, reason: str) -> None:
        # An Event is an explanation, not state: it is posted off the decision path, and
        # losing one must not stop a decision.
        obj = event.involved_object
        try:
            self.core.create_namespaced_event(event.metadata.namespace, event)
        except ApiException as exc:
            log.warning("event %s on %s/%s not posted: %s", reason, obj.namespace, obj.name, exc)


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body)["message"])
    except (TypeError, ValueError, KeyError):
        return str(exc.reason)


class Conflict(Exception):
    """A write met a newer version of the object; the cycle is retried on fresh state."""
