"""The recommender's HTTP endpoint against hostile clients, on raw sockets: nothing hidden in a
refused body is answered, a wrong method is a JSON 405 with Allow, answers are strict JSON,
bad shapes are 4xx, idle connections are let go and health probes still answered."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from berth.recommender import requests, schemas
from berth.recommender.features import NAMES
from berth.recommender.server import Limits
from berth.recommender.service import MODEL_NAME
from tests.test_recommender_server import call, model_file, serving  # noqa: F401 - a fixture

SMUGGLED = b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n"
GET_ROUTES = ["/v1/model", "/v2/health/live", "/v2/health/ready", "/metrics",
              f"/v2/models/{MODEL_NAME}", f"/v2/models/{MODEL_NAME}/ready"]  # fmt: skip
POST_ROUTES = ["/v1/recommend", "/v1/predict", f"/v2/models/{MODEL_NAME}/infer"]
IDLE_S = 0.5


@pytest.fixture
def server(model_file: Path) -> Iterator[tuple[str, int, Any]]:  # noqa: F811
    with serving(model_file, Limits(idle_s=IDLE_S, request_s=IDLE_S)) as running:
        yield running


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


def headers_of(head: bytes) -> dict[str, str]:
    """The header fields of a raw answer, by lower-case name (field names are case-blind)."""
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}


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


def test_a_chunked_body_is_read_whole_and_the_next_request_answered_in_step(
    server: tuple[str, int, Any],
) -> None:
    body = json.dumps({"instances": [[0.0] * len(NAMES)]}).encode()
    chunks = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (5, body[:5], len(body) - 5, body[5:])
    raw = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
    answers = exchange(server, raw + SMUGGLED).split(b"HTTP/1.1 ")[1:]
    assert [a[:3] for a in answers] == [b"200", b"200"]
    assert b'"mean"' in answers[0] and b'"ready"' in answers[1]


def test_a_chunked_body_over_the_limit_is_a_413_on_a_closed_connection(
    server: tuple[str, int, Any],
) -> None:
    chunk = b"x" * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(17))
    raw = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
    got = exchange(server, raw + b"0\r\n\r\n" + SMUGGLED)
    assert got.startswith(b"HTTP/1.1 413 ") and got.count(b"HTTP/1.1 ") == 1, got[:200]


def test_a_body_framed_two_ways_is_refused_and_nothing_after_it_answered(
    server: tuple[str, int, Any],
) -> None:
    """Content-Length and chunked together: the classic smuggling request (CL.TE)."""
    raw = (b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED)  # fmt: skip
    got = exchange(server, raw)
    assert got.startswith(b"HTTP/1.1 400 ") and got.count(b"HTTP/1.1 ") == 1, got[:200]
    assert headers_of(got.partition(b"\r\n\r\n")[0])["content-type"] == "application/json"


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
    allow = "GET, HEAD" if path in GET_ROUTES else "POST"
    assert headers_of(head)["allow"] == allow
    assert method in strict(body)["error"]


def test_a_post_to_a_read_only_route_is_a_405_not_a_404(server: tuple[str, int, Any]) -> None:
    status, body = call(server, "POST", "/v1/model", {})
    assert status == 405 and "allowed: GET, HEAD" in body["error"]


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
        head, _, body = s.recv(65536).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 ") and "in time" in strict(body)["error"]
        assert s.recv(65536) == b""  # and closed
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
    assert headers_of(head)["content-type"] == "application/json"
    assert "header" in strict(body)["error"]


def test_a_head_request_gets_the_headers_of_a_get_and_no_body(
    server: tuple[str, int, Any],
) -> None:
    _, body = call(server, "GET", "/v1/model")
    raw = b"HEAD /v1/model HTTP/1.1\r\nHost: x\r\n\r\n" + SMUGGLED
    got = exchange(server, raw)
    first, _, rest = got.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 ")
    assert int(headers_of(first)["content-length"]) == len(json.dumps(body).encode())
    assert rest.startswith(b"HTTP/1.1 200 ")  # the next request on the connection, in step


SCHEMAS = {"/v1/recommend": schemas.RECOMMEND, "/v1/predict": schemas.PREDICT,
           f"/v2/models/{MODEL_NAME}/infer": schemas.INFER}  # fmt: skip


@settings(max_examples=3000, deadline=None)
@given(st.data())
def test_the_fast_check_and_jsonschema_agree_on_every_body(data: st.DataObject) -> None:
    """The compiled check lets a body through only where jsonschema, the reference, would (and
    leaves the body as it was: no defaults filled in)."""
    route = data.draw(st.sampled_from(sorted(VALID)))
    body = mutated(VALID[route], data) if data.draw(st.booleans()) else data.draw(JSON)
    fast, full = requests._validators[id(SCHEMAS[route])]
    try:
        fast(body)
        passed = True
    except fastjsonschema.JsonSchemaException:
        passed = False
    assert passed == full.is_valid(body), body


def test_past_the_connection_limit_the_longest_idle_connection_makes_room(
    model_file: Path,  # noqa: F811
) -> None:
    with serving(model_file, Limits(max_connections=50)) as server:
        idle = [socket.create_connection(server[:2]) for _ in range(100)]
        try:
            began = time.perf_counter()
            status, body = call(server, "GET", "/v2/health/ready")
            assert (status, body) == (200, {"ready": True})
            assert time.perf_counter() - began < 0.1
            idle[0].settimeout(1.0)
            assert idle[0].recv(1) == b""  # the first opened was closed to make room
            idle[-1].sendall(SMUGGLED)  # the newest still served
            idle[-1].settimeout(1.0)
            assert idle[-1].recv(65536).startswith(b"HTTP/1.1 200 ")
        finally:
            for s in idle:
                s.close()


def test_past_the_connection_limit_with_none_idle_a_newcomer_gets_a_json_503(
    model_file: Path,  # noqa: F811
) -> None:
    with serving(model_file, Limits(max_connections=20)) as server:
        busy = [socket.create_connection(server[:2]) for _ in range(20)]
        try:
            for s in busy:
                s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n")  # mid-request
            time.sleep(0.2)
            got = exchange(server, SMUGGLED)
            head, _, body = got.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503 ") and "connections" in strict(body)["error"]
        finally:
            for s in busy:
                s.close()
