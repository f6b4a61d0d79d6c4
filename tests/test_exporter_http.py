"""The exporter's HTTP endpoint against clients that are not Prometheus: a wrong method is a
405 with Allow, a body is never read as a request, a silent connection is let go."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.profiler import exporter as exporter_module
from berth.profiler.exporter import Exporter, make_server
from berth.profiler.replay import ReplayBackend
from tests.recordings import busy_run, write

SMUGGLED = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture
def address(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, int]]:
    monkeypatch.setattr(exporter_module, "IDLE_S", 0.5)
    exporter = Exporter(ReplayBackend(write(tmp_path / "gpu.jsonl", busy_run(3, 200.0))))
    exporter.take()
    server = make_server(exporter, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield "127.0.0.1", int(server.server_address[1])
    server.shutdown()
    server.server_close()


def exchange(address: tuple[str, int], raw: bytes) -> bytes:
    with socket.create_connection(address, timeout=2.0) as s:
        s.sendall(raw)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
        return got


def test_metrics_are_served(address: tuple[str, int]) -> None:
    got = exchange(address, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert got.startswith(b"HTTP/1.0 200 ") and b"DCGM_FI_DEV_POWER_USAGE" in got


@pytest.mark.parametrize("method", [b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"])
def test_a_wrong_method_is_a_405_with_allow_and_its_body_is_never_a_request(
    address: tuple[str, int], method: bytes
) -> None:
    head = b"%s /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
    got = exchange(address, head % (method, len(SMUGGLED)) + SMUGGLED)
    assert got.startswith(b"HTTP/1.0 405 ") and b"Allow: GET, HEAD" in got
    assert got.count(b"HTTP/1.") == 1  # the connection closed: nothing after it answered


def test_a_silent_connection_is_let_go(address: tuple[str, int]) -> None:
    with socket.create_connection(address, timeout=3.0) as s:
        began = time.perf_counter()
        assert s.recv(1) == b""
        assert time.perf_counter() - began < 2.0
