"""The recommender's HTTP endpoint against hostile clients, on raw sockets: nothing hidden in a
refused body is answered, a wrong method is a JSON 405 with Allow, answers are strict JSON,
bad shapes are 4xx, idle connections are let go and health probes still answered."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from berth.recommender.features import NAMES
from berth.recommender.server import MODEL_NAME, Handler, make_server
from tests.test_recommender_server import call, model_file  # noqa: F401 - a fixture

SMUGGLED = b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n"
GET_ROUTES = ["/v1/model", "/v2/health/live", "/v2/health/ready", "/metrics",
              f"/v2/models/{MODEL_NAME}", f"/v2/models/{MODEL_NAME}/ready"]  # fmt: skip
POST_ROUTES = ["/v1/recommend", "/v1/predict", f"/v2/models/{MODEL_NAME}/infer"]
IDLE_S = 0.5


@pytest.fixture
def server(model_file: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, int, Any]]:  # noqa: F811
    monkeypatch.setattr(Handler, "timeout", IDLE_S)
    httpd = make_server(model_file, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield str(httpd.server_address[0]), int(httpd.server_address[1]), None
    httpd.shutdown()
    httpd.server_close()


def exchange(server: tuple[str, int, Any], raw: bytes) -> bytes:
    """Send `raw` on one connection; everything the server says until it closes or goes
    quiet for a second."""
    with socket.create_connection(server[:2], timeout=1.0) as s:
        s.sendall(raw)
        got = b""
        while True:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                return got
            if not chunk:
                return got
            got += chunk


def strict(payload: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in an answer")

    return json.loads(payload, parse_constant=refuse)


@pytest.mark.parametrize(
    "head",
    [
        b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
        b"DELETE /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
        b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n",
    ],
    ids=["unknown-route", "get-with-body", "wrong-method", "oversized"],
)
def test_a_request_hidden_in_a_refused_body_is_never_answered(
    server: tuple[str, int, Any], head: bytes
) -> None:
    raw = (head % len(SMUGGLED)) if b"%d" in head else head
    got = exchange(server, raw + SMUGGLED)
    assert got.count(b"HTTP/1.1 ") == 1, got


def test_a_chunked_body_is_refused_and_the_connection_closed(server: tuple[str, int, Any]) -> None:
    body = json.dumps({"instances": [[0.0] * len(NAMES)]}).encode()
    chunk = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    raw = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk
    got = exchange(server, raw + SMUGGLED)
    assert got.startswith(b"HTTP/1.1 411 ") and got.count(b"HTTP/1.1 ") == 1


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", GET_ROUTES + POST_ROUTES)
def test_a_wrong_method_is_a_json_405_with_allow(
    server: tuple[str, int, Any], method: str, path: str
) -> None:
    got = exchange(
        server, f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405 ")
    allow = "GET" if path in GET_ROUTES else "POST"
    assert f"Allow: {allow}".encode() in head
    assert method in strict(body)["error"]


def test_a_post_to_a_read_only_route_is_a_405_not_a_404(server: tuple[str, int, Any]) -> None:
    status, body = call(server, "POST", "/v1/model", {})
    assert status == 405 and "allowed: GET" in body["error"]


def test_json_nested_past_the_parsers_depth_is_a_400(server: tuple[str, int, Any]) -> None:
    status, body = call(server, "POST", "/v1/predict", raw=b"[" * 100_000 + b"]" * 100_000)
    assert status == 400 and "nested too deeply" in body["error"]


def test_an_output_named_by_something_else_than_a_string_is_a_400(
    server: tuple[str, int, Any],
) -> None:
    tensor = {"name": "features", "datatype": "FP32", "shape": [1, len(NAMES)],
              "data": [0.0] * len(NAMES)}  # fmt: skip
    request = {"inputs": [tensor], "outputs": [{"name": {"x": 1}}]}
    status, body = call(server, "POST", f"/v2/models/{MODEL_NAME}/infer", request)
    assert status == 400 and "outputs" in body["error"]


@pytest.mark.parametrize("route", ["/v1/predict", f"/v2/models/{MODEL_NAME}/infer"])
def test_a_huge_finite_input_gets_a_strict_json_4xx_naming_the_row(
    server: tuple[str, int, Any], route: str
) -> None:
    row = [1.7976931348623157e308] * len(NAMES)
    request: dict[str, Any] = {"instances": [[0.0] * len(NAMES), row]}
    if route != "/v1/predict":
        request = {"inputs": [{"name": "features", "datatype": "FP64", "shape": [2, len(NAMES)],
                               "data": [0.0] * len(NAMES) + row}]}  # fmt: skip
    got = exchange(server, b"POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (route.encode(), len(json.dumps(request)),
                                                      json.dumps(request).encode()))  # fmt: skip
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), head
    assert "rows 1: " in strict(body)["error"]


def test_idle_connections_are_let_go_and_probes_still_answered(
    server: tuple[str, int, Any],
) -> None:
    idle = [socket.create_connection(server[:2]) for _ in range(400)]
    try:
        began = time.perf_counter()
        status, body = call(server, "GET", "/v2/health/ready")
        assert (status, body) == (200, {"ready": True})
        assert time.perf_counter() - began < 0.1
        time.sleep(IDLE_S + 1.0)
        closed = 0
        for s in idle:
            s.settimeout(1.0)
            with contextlib.suppress(TimeoutError, ConnectionError):
                closed += s.recv(1) == b""
        assert closed == len(idle)
    finally:
        for s in idle:
            s.close()


# --- fuzzing: generated bodies, no 5xx and strict JSON whatever comes -----------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
VALID = {
    "/v1/recommend": {"job": {"model": "resnet50", "batchSize": 64,
                              "totalWork": {"samples": 10**6}, "deadlineSeconds": 3600,
                              "objective": {"type": "balanced", "weight": 0.5}},
                      "candidates": [{"accelerator": "a100", "count": 2},
                                     {"accelerator": "t4", "count": 1}]},
    "/v1/predict": {"instances": [[0.5] * len(NAMES)]},
    f"/v2/models/{MODEL_NAME}/infer": {"inputs": [{"name": "features", "datatype": "FP32",
                                                   "shape": [1, len(NAMES)],
                                                   "data": [0.5] * len(NAMES)}]},
}  # fmt: skip


def mutated(body: Any, data: st.DataObject) -> Any:
    """A valid body with one value somewhere replaced by generated JSON."""
    if isinstance(body, dict) and body and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(body)))
        return {**body, key: mutated(body[key], data)}
    if isinstance(body, list) and body and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(body) - 1))
        return [*body[:i], mutated(body[i], data), *body[i + 1 :]]
    return data.draw(JSON)


@settings(
    max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_no_generated_body_gets_a_5xx_or_a_non_strict_answer(
    server: tuple[str, int, Any], data: st.DataObject
) -> None:
    route = data.draw(st.sampled_from(sorted(VALID)))
    body = mutated(VALID[route], data)
    status, answer = call(server, "POST", route, raw=json.dumps(body).encode())
    assert status < 500, (route, body, answer)
    assert isinstance(answer, dict) and ("error" in answer) == (status >= 400)
    json.dumps(answer, allow_nan=False)  # what came back parsed as strict JSON, too


def test_a_client_that_stalls_mid_request_is_let_go(server: tuple[str, int, Any]) -> None:
    with socket.create_connection(server[:2], timeout=IDLE_S + 2) as s:
        s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Le")  # and no more
        began = time.perf_counter()
        assert s.recv(65536) == b""  # closed, without an answer to half a request
        assert time.perf_counter() - began < IDLE_S + 1.5


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (b"X-Big: " + b"a" * 70_000 + b"\r\n", b"431"),
        (b"".join(b"X-%d: 1\r\n" % i for i in range(120)), b"431"),
    ],
    ids=["one-huge-header", "too-many-headers"],
)
def test_oversized_headers_are_refused_before_any_body(
    server: tuple[str, int, Any], headers: bytes, status: bytes
) -> None:
    got = exchange(server, b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == status and got.count(b"HTTP/1.1 ") == 1, got[:200]
    assert b"Content-Type: application/json" in head and "header" in strict(body)["error"]


def test_a_head_request_gets_headers_and_no_body(server: tuple[str, int, Any]) -> None:
    raw = b"HEAD /v1/model HTTP/1.1\r\nHost: x\r\n\r\n" + SMUGGLED
    got = exchange(server, raw)
    first, _, rest = got.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 405 ") and b"Allow: GET" in first
    assert rest.startswith(b"HTTP/1.1 200 ")  # the next request on the connection, in step
