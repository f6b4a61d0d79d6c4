"""The cluster's Nodes and Pods as the operator's cache: a List, then a Watch from the list's
resourceVersion, again and again, as client-go's reflector does; each object kept as the slim
copy placement reads.

Not kopf's indices: kopf makes every listed object wait for every other's index handler, each
arrival waking all the waiting ones (a start with 1,000 nodes and 10,000 pods took minutes).
Here a start costs one paginated List per kind. kopf still watches the AcceleratorJobs.

`changed(old, new)`, given to start, is called from the informer's thread for each object whose
slim copy changed (None: absent), and with (None, None) after a List that replaced the cache
(the first, or one after the watch fell too far behind): anything may have changed.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import Any

from kubernetes.client.rest import ApiException

log = logging.getLogger("berth.operator")
PAGE = 500  # objects per List page
WATCH_S = 300  # the server ends each watch after this long; it is opened again from there
BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)  # after failures in a row

Slim = Mapping[str, Any]
Changed = Callable[[Slim | None, Slim | None], None]


class Expired(Exception):
    """410 Gone: the resourceVersion watched from is compacted away; List again."""


class Informer:
    def __init__(
        self,
        kind: str,
        call: Callable[..., Any],
        slim: Callable[[Mapping[str, Any]], Slim],
        key: Callable[[Mapping[str, Any]], Hashable],
    ) -> None:
        """`call`: the client's list call for the kind (e.g. list_pod_for_all_namespaces)."""
        self.kind, self.call, self.slim, self.key = kind, call, slim, key
        self.changed: Changed = lambda old, new: None
        self.store: dict[Hashable, Slim] = {}
        self.lock = threading.Lock()
        self.listed = threading.Event()  # set once the first List is in the store
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"berth-{kind}", daemon=True)

    def start(self, changed: Changed) -> None:
        self.changed = changed
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def values(self) -> list[Slim]:
        with self.lock:
            return list(self.store.values())

    # --- the loop --------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        version: str | None = None
        while not self.stopping.is_set():
            try:
                if version is None:
                    version = self._list()
                version = self._watch(version)
                failures = 0
            except Expired:
                log.info("%s: watch expired; listing again", self.kind)
                version = None
            except Exception as exc:  # the API server restarting, the network: try again
                wait = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
                failures += 1
                log.warning("%s: %s; again in %.1f s", self.kind, _said(exc), wait)
                self.stopping.wait(wait)

    def _list(self) -> str:
        store: dict[Hashable, Slim] = {}
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": PAGE, "_preload_content": False}
            if token:
                kwargs["_continue"] = token
            try:
                page = json.loads(_checked(self.call(**kwargs)).data)
            except Expired:  # the continue token expired: from the start
                store, token = {}, None
                continue
            for obj in page.get("items") or ():
                store[self.key(obj)] = self.slim(obj)
            token = page["metadata"].get("continue")
            if not token:
                break
        with self.lock:
            # An unchanged object keeps its old copy: the snapshot's memo goes by identity.
            old = self.store
            self.store = {k: old[k] if old.get(k) == v else v for k, v in store.items()}
        self.listed.set()
        self.changed(None, None)
        version: str = page["metadata"]["resourceVersion"]
        return version

    def _watch(self, version: str) -> str:
        response = _checked(
            self.call(
                watch=True,
                resource_version=version,
                allow_watch_bookmarks=True,
                timeout_seconds=WATCH_S,
                _preload_content=False,
                _request_timeout=WATCH_S + 30,
            )
        )
        try:
            for line in _lines(response):
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Expired()
                    raise RuntimeError(f"watch error: {obj.get('message')}")
                version = obj["metadata"]["resourceVersion"]
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._apply(kind, obj)
                if self.stopping.is_set():
                    break
        finally:
            response.close()
            response.release_conn()
        return version

    def _apply(self, kind: str, obj: Mapping[str, Any]) -> None:
        key = self.key(obj)
        new = None if kind == "DELETED" else self.slim(obj)
        with self.lock:
            old = self.store.get(key)
            if old == new:  # a heartbeat of nothing placement reads
                return
            if new is None:
                del self.store[key]
            else:
                self.store[key] = new
        self.changed(old, new)


def _checked(response: Any) -> Any:
    """The raw response (the client checks no status without _preload_content), if 2xx."""
    if 200 <= response.status <= 299:
        return response
    body = response.data
    response.release_conn()
    if response.status == 410:
        raise Expired()
    try:
        message = json.loads(body)["message"]
    except (ValueError, KeyError, TypeError):
        message = body[:200]
    raise RuntimeError(f"{response.status}: {message}")


def _lines(response: Any) -> Iterator[str]:
    """The watch's newline-delimited JSON events, however its chunks split them."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=False):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                yield line.decode()
    if pending.strip():
        yield pending.decode()


def _said(exc: Exception) -> str:
    if isinstance(exc, ApiException):
        return f"{exc.status} {exc.reason}"
    return f"{type(exc).__name__}: {exc}"
