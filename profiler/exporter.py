"""`berth exporter`: samples a backend (NVML, or a replay file) every interval, serves the last
sample on /metrics, and keeps its node's berth.dev/health and berth.dev/idle-watts annotations
up to date when told its node name (the chart's DaemonSet passes spec.nodeName)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from berth.core.snapshot import ANNOTATION_HEALTH, ANNOTATION_IDLE_WATTS, Health
from berth.profiler.exposition import render
from berth.profiler.health import idle_watts, node_health
from berth.profiler.samples import ProcessUse, Sample

log = logging.getLogger("berth.exporter")
ANNOTATION_HEALTH_REASON = "berth.dev/health-reason"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Backend(Protocol):
    def sample(self) -> Sample: ...
    def close(self) -> None: ...


PodIndex = Callable[[], Mapping[str, Mapping[str, Any]]]  # pod UID -> Pod dict


def name_processes(sample: Sample, pods: Mapping[str, Mapping[str, Any]]) -> Sample:
    """Pod namespace, name and container for processes whose cgroup named a pod UID."""

    def named(p: ProcessUse) -> ProcessUse:
        pod = pods.get(p.pod_uid or "")
        if pod is None:
            return p
        container = None
        for status in pod.get("status", {}).get("containerStatuses") or []:
            if p.container_id and str(status.get("containerID", "")).endswith(p.container_id):
                container = status.get("name")
        meta = pod["metadata"]
        return replace(p, namespace=meta["namespace"], pod=meta["name"], container=container)

    devices = tuple(
        replace(d, processes=tuple(named(p) for p in d.processes)) for d in sample.devices
    )
    return replace(sample, devices=devices)


def node_annotations(sample_window: list[Sample]) -> dict[str, str]:
    """What the node should say of itself after these samples."""
    health, reasons = node_health(sample_window[-1])
    out = {ANNOTATION_HEALTH: health.value, ANNOTATION_HEALTH_REASON: "; ".join(reasons)}
    watts = idle_watts(sample_window)
    if watts is not None:
        out[ANNOTATION_IDLE_WATTS] = f"{watts:.1f}"
    return out


class Exporter:
    def __init__(
        self,
        backend: Backend,
        interval_s: float = 5.0,
        window_s: float = 600.0,
        hostname: str | None = None,
        pods: PodIndex | None = None,
        annotate: Callable[[dict[str, str]], None] | None = None,
    ) -> None:
        self.backend = backend
        self.interval_s = interval_s
        self.hostname = hostname or socket.gethostname()
        self.pods = pods
        self.annotate = annotate
        self.window: deque[Sample] = deque(maxlen=max(int(window_s / interval_s), 1))
        self.counters = {"berth_exporter_samples_total": 0, "berth_exporter_sample_errors_total": 0}
        self.annotated: dict[str, str] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def take(self) -> None:
        """One sample, and the node's annotations where they changed."""
        try:
            sample = self.backend.sample()
            if self.pods is not None and any(d.processes for d in sample.devices):
                sample = name_processes(sample, self.pods())
        except Exception:  # the exporter keeps serving the last good sample
            log.exception("sampling failed")
            self.counters["berth_exporter_sample_errors_total"] += 1
            return
        with self.lock:
            self.window.append(sample)
            self.counters["berth_exporter_samples_total"] += 1
            wanted = node_annotations(list(self.window))
        if self.annotate is not None and wanted != self.annotated:
            try:
                self.annotate(wanted)
                self.annotated = wanted
            except Exception:  # retried at the next sample
                log.exception("annotating the node failed")

    def text(self) -> str:
        with self.lock:
            window = list(self.window)
            counters = dict(self.counters)
        if not window:
            return render(None, self.hostname, Health.UNKNOWN, None, counters)
        health, _ = node_health(window[-1])
        return render(window[-1], self.hostname, health, idle_watts(window), counters)

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stop.is_set():
            self.take()
            next_at += self.interval_s
            self.stop.wait(max(next_at - time.monotonic(), 0.0))


IDLE_S = 10.0  # a scrape takes milliseconds: a connection quiet this long is let go


def make_server(exporter: Exporter, host: str, port: int) -> ThreadingHTTPServer:
    """GET /metrics and /healthz. HTTP/1.0: one request per connection, so a body is never
    read as a request; a wrong method is a 405 with Allow; a silent client is dropped."""

    class Handler(BaseHTTPRequestHandler):
        timeout = IDLE_S

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

        def _answer(self, status: int, body: bytes, kind: str, head: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            if status == HTTPStatus.METHOD_NOT_ALLOWED:
                self.send_header("Allow", "GET, HEAD")
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def do_GET(self, head: bool = False) -> None:
            path = self.path.split("?")[0]
            if path == "/metrics":
                self._answer(HTTPStatus.OK, exporter.text().encode(), CONTENT_TYPE, head)
            elif path == "/healthz":
                self._answer(HTTPStatus.OK, b"ok\n", "text/plain", head)
            else:
                self._answer(HTTPStatus.NOT_FOUND, b"not found: try /metrics\n", "text/plain", head)

        def do_HEAD(self) -> None:
            self.do_GET(head=True)

        def _wrong_method(self) -> None:
            message = f"{self.command} is not allowed; allowed: GET, HEAD\n".encode()
            self._answer(HTTPStatus.METHOD_NOT_ALLOWED, message, "text/plain")

        do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _wrong_method

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
