"""Kubernetes Events: an explanation, not state. Posted off the decision path, so a slow or
refused Event never delays or stops a decision."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import datetime
from typing import Any

from berth.crds import GROUP, VERSION
from berth.operator.kube import ApiError, Kube
from berth.operator.status import stamp

log = logging.getLogger("berth.operator")
INSTANCE = f"{socket.gethostname()}-{os.getpid()}"  # the pod, for Events' reportingInstance


def event(
    obj: Mapping[str, Any], kind: str, reason: str, message: str, now: datetime,
    kind_name: str = "AcceleratorJob",
) -> dict[str, Any]:  # fmt: skip
    """The Event about `obj` (an AcceleratorJob, or a Node: those live in `default`)."""
    meta = obj["metadata"]
    at = stamp(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.",
                     "namespace": meta.get("namespace") or "default"},
        "involvedObject": {
            "apiVersion": f"{GROUP}/{VERSION}" if kind_name == "AcceleratorJob" else "v1",
            "kind": kind_name,
            "name": meta["name"],
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        },
        "type": kind,
        "reason": reason,
        "message": message[:1024],
        "firstTimestamp": at,
        "lastTimestamp": at,
        "count": 1,
        "source": {"component": "berth-operator"},
        "reportingComponent": "berth.dev/operator",
        "reportingInstance": INSTANCE,
    }  # fmt: skip


class Events:
    def __init__(
        self, kube: Kube, clock: Callable[[], datetime], executor: Executor | None = None
    ) -> None:
        self.kube, self.clock = kube, clock
        self.executor = executor or ThreadPoolExecutor(2, thread_name_prefix="berth-events")
        self.node_problems: set[tuple[str, str]] = set()

    def post(
        self, obj: Mapping[str, Any], kind: str, reason: str, message: str,
        kind_name: str = "AcceleratorJob",
    ) -> None:  # fmt: skip
        self.executor.submit(self._post, event(obj, kind, reason, message, self.clock(), kind_name))

    def _post(self, body: dict[str, Any]) -> None:
        obj = body["involvedObject"]
        try:
            self.kube.create_event(body["metadata"]["namespace"], body)
        except ApiError as exc:
            log.warning("event %s on %s/%s not posted: %s", body["reason"], obj["namespace"],
                        obj["name"], exc.message)  # fmt: skip
