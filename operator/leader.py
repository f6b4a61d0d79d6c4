"""One acting replica: leader election on a coordination.k8s.io Lease, as kube-scheduler and
controller-runtime do it.

kopf's peering could not be trusted with this: every replica acts from its start until it has
seen the others' keep-alives, and a paused replica's own reconciler loop kept running, so two
replicas placed jobs from two snapshots onto one node (the chaos test caught it). Here a
replica decides only while it holds the Lease; a standby keeps its watch-fed cache warm and
takes over once it has seen no renewal for `duration_s` on its own clock (no clock skew
between replicas matters). The holder stops acting `duration_s - renew_deadline_s` before a
standby could take over, counted from the moment it sent its last successful renewal.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

# The kubernetes client is imported where used: `berth operator` must set KUBECONFIG first.

log = logging.getLogger("berth.operator")
LEASE_NAME = "berth-operator"


@dataclass(frozen=True)
class Timing:
    duration_s: float = 15.0  # a standby takes over after seeing no renewal for this long
    renew_deadline_s: float = 10.0  # the holder stops acting when it has not renewed for this
    retry_s: float = 2.0  # how often each replica reads (and the holder renews) the Lease


@dataclass(frozen=True)
class Record:
    """The Lease as read: who holds it, and the version a write must be conditional on."""

    holder: str | None
    renewed: str | None  # renewTime as written; compared for change only, never to our clock
    acquired: str | None
    version: str


def may_take(record: Record | None, me: str, unchanged_for_s: float, timing: Timing) -> bool:
    """Free, already mine, or its holder silent for a whole lease duration on my clock."""
    if record is None or record.holder in (None, "", me):
        return True
    return unchanged_for_s >= timing.duration_s


class Leases(Protocol):
    def read(self) -> Record | None: ...

    def write(self, holder: str, previous: Record | None, timing: Timing) -> bool:
        """Create or replace conditional on `previous`; False when another replica won."""
        ...


class Elector:
    """Reads and renews the Lease every `retry_s`; `leading()` says whether to act now."""

    def __init__(
        self,
        leases: Leases,
        me: str,
        timing: Timing = Timing(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.leases, self.me, self.timing, self.clock = leases, me, timing, clock
        self.renewed_at: float | None = None  # when the last successful renewal was sent
        self.seen: tuple[str | None, str | None] | None = None
        self.seen_at = 0.0

    def leading(self) -> bool:
        at = self.renewed_at
        return at is not None and self.clock() - at < self.timing.renew_deadline_s

    def step(self) -> bool:
        """One read and, where the Lease may be taken, one write; True when this replica
        began to lead with it."""
        was = self.leading()
        now = self.clock()
        record = self.leases.read()
        key = None if record is None else (record.holder, record.renewed)
        if key != self.seen:
            self.seen, self.seen_at = key, now
        if not may_take(record, self.me, now - self.seen_at, self.timing):
            if self.renewed_at is not None:
                log.warning("lost the lease to %s; standing by", record and record.holder)
            self.renewed_at = None
            return False
        if self.leases.write(self.me, record, self.timing):
            self.renewed_at = now  # sent no earlier than this: a conservative deadline
            if not was:
                log.info("acquired the lease %s as %s", LEASE_NAME, self.me)
            return not was
        return False


class KubeLeases:
    """The Lease `LEASE_NAME` in one namespace, through the kubernetes client."""

    def __init__(self, api: Any, namespace: str) -> None:
        from kubernetes import client

        self.api = client.CoordinationV1Api(api)
        self.namespace = namespace

    def read(self) -> Record | None:
        from kubernetes.client.rest import ApiException

        try:
            lease = self.api.read_namespaced_lease(LEASE_NAME, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        spec = lease.spec
        renewed, acquired = (
            None if t is None else _rfc3339(t) for t in (spec.renew_time, spec.acquire_time)
        )
        return Record(spec.holder_identity, renewed, acquired, lease.metadata.resource_version)

    def write(self, holder: str, previous: Record | None, timing: Timing) -> bool:
        from kubernetes.client.rest import ApiException

        now = _rfc3339(datetime.datetime.now(datetime.UTC))
        renewing = previous is not None and previous.holder == holder
        spec: dict[str, Any] = {
            "holderIdentity": holder,
            "leaseDurationSeconds": int(timing.duration_s),
            "acquireTime": previous.acquired if renewing and previous else now,
            "renewTime": now,
        }
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE_NAME, "namespace": self.namespace},
            "spec": spec,
        }
        try:
            if previous is None:
                self.api.create_namespaced_lease(self.namespace, body)
            else:
                body["metadata"]["resourceVersion"] = previous.version
                self.api.replace_namespaced_lease(LEASE_NAME, self.namespace, body)
        except ApiException as exc:
            if exc.status == 409:  # another replica wrote first
                return False
            raise
        return True


def _rfc3339(t: datetime.datetime) -> str:
    """MicroTime as the API server writes it."""
    return t.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
