"""A recording fake of the operator's API port (berth.operator.kube.Kube): what was written,
in which order, with which precondition; errors to answer can be queued per call."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from berth.operator.kube import AlreadyExists, ApiError, Conflict, NotFound

T = TypeVar("T")


@dataclass
class Call:
    verb: str  # patch-status, create-service, create-pod, delete-pod, create-event
    namespace: str
    name: str
    body: Mapping[str, Any] = field(default_factory=dict)

    @property
    def precondition(self) -> str | None:
        rv: str | None = (self.body.get("metadata") or {}).get("resourceVersion")
        return rv


class FakeKube:
    def __init__(self, jobs: Mapping[tuple[str, str], dict[str, Any]] = {}) -> None:
        self.calls: list[Call] = []
        self.jobs = {k: copy.deepcopy(v) for k, v in jobs.items()}  # (ns, name) -> job
        self.objects: set[tuple[str, str, str]] = set()  # (kind, ns, name)
        self.fail: dict[str, list[ApiError]] = {}  # verb -> errors to raise, in turn

    def _record(self, call: Call) -> None:
        self.calls.append(call)
        queued = self.fail.get(call.verb)
        if queued:
            raise queued.pop(0)

    def verbs(self) -> list[str]:
        return [c.verb for c in self.calls]

    def patch_job_status(
        self, namespace: str, name: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        self._record(Call("patch-status", namespace, name, copy.deepcopy(dict(body))))
        job = self.jobs.get((namespace, name))
        if job is None:
            raise NotFound(f"{name} not found", 404)
        if body["metadata"]["resourceVersion"] != job["metadata"]["resourceVersion"]:
            raise Conflict("the object has been modified", 409)
        job["metadata"]["resourceVersion"] = str(int(job["metadata"]["resourceVersion"]) + 1)
        job["status"] = merge_patch(job.get("status") or {}, body["status"])
        return copy.deepcopy(job)

    def _create(self, kind: str, namespace: str, body: Mapping[str, Any]) -> None:
        name = body["metadata"].get("name") or body["metadata"].get("generateName", "")
        self._record(Call(f"create-{kind}", namespace, name, copy.deepcopy(dict(body))))
        if kind != "event" and (kind, namespace, name) in self.objects:
            raise AlreadyExists(f"{name} already exists", 409)
        self.objects.add((kind, namespace, name))

    def create_service(self, namespace: str, body: Mapping[str, Any]) -> None:
        self._create("service", namespace, body)

    def create_pod(self, namespace: str, body: Mapping[str, Any]) -> None:
        self._create("pod", namespace, body)

    def delete_pod(self, namespace: str, name: str) -> None:
        self._record(Call("delete-pod", namespace, name))
        if ("pod", namespace, name) not in self.objects:
            raise NotFound(f"{name} not found", 404)
        self.objects.discard(("pod", namespace, name))

    def create_event(self, namespace: str, body: Mapping[str, Any]) -> None:
        self._create("event", namespace, body)


class Inline(Executor):
    """Runs what it is given at once, so Events are recorded in order."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        done: Future[T] = Future()
        done.set_result(fn(*args, **kwargs))
        return done


def merge_patch(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """RFC 7386, as the API server applies a merge patch: maps merge, null deletes, lists and
    other values replace."""
    out = copy.deepcopy(dict(target))
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge_patch(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out
