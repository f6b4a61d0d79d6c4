"""The recommender's HTTP server: the Starlette app (app.py) on uvicorn with httptools, plus the
connection limits uvicorn leaves out, in `Guarded`:

- a connection that sends nothing is closed after `idle_s` (uvicorn times out only the wait
  between requests, never the wait for the first one);
- a request must arrive whole within `request_s` of its first byte (a slow client trickling a
  byte at a time is let go, 408);
- a request's line and headers over `max_header_bytes`, or more than `max_headers` of them: 431;
- at most `max_connections` at once: past it the connection idle longest is closed to make room
  (as nginx drains keep-alive connections), so a health probe is still answered; if none is
  idle the newcomer gets 503.
Everything it refuses is JSON and closes the connection. Bodies are framed by httptools
(Content-Length and chunked), so an unread body is skipped, never parsed as a request.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from berth.recommender.app import make_app, strict
from berth.recommender.service import Service

log = logging.getLogger("berth.recommender")


class _Refused(Exception):
    """Stops httptools mid-parse once a request has been refused."""


@dataclass(frozen=True)
class Limits:
    idle_s: float = 30.0  # nothing sent on a connection (first request or between requests)
    request_s: float = 30.0  # first byte of a request to its last
    max_header_bytes: int = 64 << 10
    max_headers: int = 100
    max_connections: int = 1024
    backlog: int = 2048  # connections the kernel queues before accept


DEFAULT = Limits()
LINGER_S = 2.0  # a refused connection is read and dropped this long before it is closed


class Guarded(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above (`limits` is set per server)."""

    limits = DEFAULT
    refused = False  # answered with a refusal; lingering until closed
    idle_since: float | None = None  # when it last had no request in flight

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Headers and body are two writes: without this, a 40 ms delayed-ACK stall each.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._headers = 0
        self._in_request = False
        if len(self.connections) > self.limits.max_connections and not _drain(self.connections):
            self._refuse(HTTPStatus.SERVICE_UNAVAILABLE, "too many connections; try again")
            return
        self.idle_since = time.monotonic()
        self._arm(self.limits.idle_s, None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused or self.transport.is_closing():  # refused: what comes is dropped
            return
        if self._header_bytes >= 0:  # still in a request line or headers
            end = data.find(b"\r\n\r\n")  # where they end, if in this chunk
            self._header_bytes += len(data) if end < 0 else end
            if self._header_bytes > self.limits.max_header_bytes:
                self._refuse(
                    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                    f"request line and headers exceed {self.limits.max_header_bytes} bytes",
                )
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_request, self.idle_since, self._headers = True, None, 0
        self._arm(self.limits.request_s, "the request did not arrive in time")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers += 1
        if self._headers > self.limits.max_headers:
            self._refuse(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                f"more than {self.limits.max_headers} headers",
            )
        if self.refused:
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self.refused:
            raise _Refused
        self._header_bytes = -1  # the body's bytes are the app's to bound
        super().on_headers_complete()
        if self.cycle is not None and self.scope["method"] != "HEAD":
            self.cycle.transport = _Corked(self.cycle.transport)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        self._in_request, self._header_bytes = False, 0
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self._in_request and not self.transport.is_closing():
            self.idle_since = time.monotonic()
            self._arm(self.limits.idle_s, None)

    def send_400_response(self, msg: str) -> None:
        self._refuse(HTTPStatus.BAD_REQUEST, f"not a valid HTTP request: {msg}")

    # --- helpers -------------------------------------------------------------------------

    def _arm(self, seconds: float, why: str | None) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._expire, why)

    def _disarm(self) -> None:
        if getattr(self, "_timer", None) is not None:
            assert self._timer is not None
            self._timer.cancel()
            self._timer = None

    def _expire(self, why: str | None) -> None:
        self._timer = None
        busy = self.cycle is not None and not self.cycle.response_complete
        if why is not None and not busy:
            self._refuse(HTTPStatus.REQUEST_TIMEOUT, why)
        elif not busy and not self.transport.is_closing():
            self.transport.close()

    def _refuse(self, status: HTTPStatus, message: str) -> None:
        """Answer, stop sending, and read (and drop) what the client still sends for a moment
        before closing: closed at once, the kernel would reset the connection on the client's
        next bytes, and a reset can destroy the answer before the client reads it."""
        if self.refused or self.transport.is_closing():
            return
        self.refused, self.idle_since = True, None
        body = strict({"error": message})
        head = (
            f"HTTP/1.1 {status.value} {status.phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._disarm()
        self._timer = self.loop.call_later(LINGER_S, self.transport.close)


class _Corked:
    """A response's transport that holds its status line and headers back until the body is
    written, and sends both at once: one send() and one wake-up of the client, not two (the
    second send was a quarter of the server's time). HEAD answers, which have no body, are not
    held; a close sends what is held."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held = b""

    def write(self, data: bytes) -> None:
        if not self._held and data.startswith(b"HTTP/1.1 ") and not data.startswith(b"HTTP/1.1 1"):
            self._held = data
            return
        data, self._held = self._held + data, b""
        self._transport.write(data)

    def close(self) -> None:
        if self._held:
            self._transport.write(self._held)
            self._held = b""
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _drain(connections: set[Any]) -> bool:
    """Close the connection idle longest; False if every one is busy."""
    idle = [c for c in connections if c.idle_since is not None]
    if not idle:
        return False
    oldest = min(idle, key=lambda c: c.idle_since)
    oldest.idle_since = None
    oldest.transport.close()
    return True


class Server:
    """A bound socket and the uvicorn server that will serve the app on it."""

    def __init__(self, path: Path, host: str, port: int, limits: Limits = DEFAULT) -> None:
        self.service = Service(path)  # refuses a model file whose sha256 does not match
        self.socket = socket.create_server((host, port), backlog=limits.backlog, reuse_port=False)
        protocol = type("BoundGuarded", (Guarded,), {"limits": limits})
        config = uvicorn.Config(
            make_app(self.service),
            http=protocol,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            date_header=False,
            timeout_keep_alive=int(max(1, limits.idle_s)),
            backlog=limits.backlog,
            timeout_graceful_shutdown=5,
        )
        self.uvicorn = uvicorn.Server(config)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.socket.getsockname()[:2]
        return str(host), int(port)

    def serve_forever(self) -> None:
        """Until SIGINT/SIGTERM (in the main thread) or `shutdown()`."""
        # What start-up built (model, tables, schemas) lives as long as the process: kept out
        # of the collector's full passes, which then walk only what requests left behind (the
        # longest pause over 5,000 new questions: 30 against 70 ms).
        gc.freeze()
        self.uvicorn.run(sockets=[self.socket])

    def shutdown(self) -> None:
        self.uvicorn.should_exit = True

    def close(self) -> None:
        self.socket.close()


def watch(service: Service, every_s: float = 2.0) -> threading.Thread:
    """Checks the model file every few seconds and swaps in a new one that passes its check."""

    def loop() -> None:
        while True:
            time.sleep(every_s)
            service.reload_if_changed()

    thread = threading.Thread(target=loop, name="model-watch", daemon=True)
    thread.start()
    return thread


def watch_drift(
    service: Service, collector: Any, every_s: float, window_s: float
) -> threading.Thread:
    """Every `every_s`, the served model's error on the job runs measured in the last window."""

    def loop() -> None:
        while True:
            try:
                now = time.time()
                mape = service.measure_drift(collector.runs(now - window_s, now))
                log.info("drift: throughput MAPE %s", "-" if mape is None else f"{mape:.1%}")
            except Exception:  # Prometheus down: keep serving, try again next time
                log.exception("measuring drift failed")
            time.sleep(every_s)

    thread = threading.Thread(target=loop, name="drift", daemon=True)
    thread.start()
    return thread
