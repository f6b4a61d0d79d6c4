"""The recommender's HTTP routes as a Starlette app: each one reads and checks its body, calls
the Service, and answers strict JSON; refusals are JSON too, naming the problem.

Routes: POST /v1/recommend, POST /v1/predict, GET /v1/model, GET /openapi.json (every route,
its request and answer schemas, from schemas.py); the Open Inference Protocol v2
(/v2/health/live, /v2/health/ready, /v2/models/<name>[/ready], POST /v2/models/<name>/infer);
GET /metrics. Connection-level limits (idle and slow clients, header size, how many
connections) are the server's: server.py.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from berth.recommender import requests, schemas
from berth.recommender.service import MODEL_NAME, Service

MAX_BODY = 1 << 20  # bytes
TOO_LARGE = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
log = logging.getLogger("berth.recommender")
Answer = dict[str, Any] | bytes


class BadRequest(Exception):
    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = status


def strict(payload: Any) -> bytes:
    return json.dumps(payload, allow_nan=False).encode()


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def refusal(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(strict({"error": message}), status, headers, "application/json")


async def read_json(request: Request) -> Any:
    """The body as strict JSON, at most MAX_BODY bytes; a body over the limit is not read, and
    the connection it came on is closed (so nothing of it is ever taken for a request)."""
    declared = request.headers.get("content-length")
    chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
    if declared is None and not chunked:
        raise BadRequest("a body with a Content-Length is required", HTTPStatus.LENGTH_REQUIRED)
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise BadRequest(f"body of {declared} bytes exceeds {MAX_BODY}", TOO_LARGE)
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise BadRequest(f"body exceeds {MAX_BODY} bytes", TOO_LARGE)
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("body is not valid JSON: nested too deeply") from None


Handler = Callable[[Request], Awaitable[Answer]]


def make_app(service: Service) -> Starlette:
    def route(path: str, method: str, name: str, handler: Handler) -> Route:
        """One route: its answer as strict JSON (or Prometheus text), its refusals as JSON,
        counted and timed under `name`."""

        async def endpoint(request: Request) -> Response:
            began = time.perf_counter()
            try:
                answer = await handler(request)
                if isinstance(answer, bytes):
                    response = Response(answer, 200, media_type=CONTENT_TYPE_LATEST)
                else:
                    response = _json_answer(answer)
            except BadRequest as exc:
                response = refusal(exc.status, str(exc), _closing(exc.status))
            except (requests.RequestError, ValueError) as exc:
                response = refusal(HTTPStatus.BAD_REQUEST, str(exc))
            except Exception:  # a bug, not the caller's fault: say so, keep serving
                log.exception("internal error on %s %s", request.method, request.url.path)
                response = refusal(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; see the log")
            service.requests.labels(name, str(response.status_code)).inc()
            service.latency.labels(name).observe(time.perf_counter() - began)
            return response

        return Route(path, endpoint, methods=[method])

    def answer(value: Callable[[], Answer]) -> Handler:
        async def handler(_: Request) -> Answer:
            return value()

        return handler

    def posted(call: Callable[[Any], Answer]) -> Handler:
        async def handler(request: Request) -> Answer:
            return call(await read_json(request))

        return handler

    document = schemas.openapi(MODEL_NAME)
    v2 = f"/v2/models/{MODEL_NAME}"
    routes = [
        route("/v1/model", "GET", "/v1/model", answer(service.describe)),
        route("/openapi.json", "GET", "/openapi.json", answer(lambda: document)),
        route("/v2/health/live", "GET", "/v2/health/live", answer(lambda: {"live": True})),
        route("/v2/health/ready", "GET", "/v2/health/ready", answer(lambda: {"ready": True})),
        route("/metrics", "GET", "/metrics", answer(lambda: generate_latest(service.registry))),
        route(v2, "GET", "/v2/models/<name>", answer(service.v2_metadata)),
        route(f"{v2}/ready", "GET", "/v2/models/<name>/ready",
              answer(lambda: {"name": MODEL_NAME, "ready": True})),
        route("/v1/recommend", "POST", "/v1/recommend", posted(service.recommend)),
        route("/v1/predict", "POST", "/v1/predict", posted(service.predict)),
        route(f"{v2}/infer", "POST", "/v2/models/<name>/infer", posted(service.v2_infer)),
    ]  # fmt: skip

    async def no_route(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        path, method = request.url.path, request.method
        headers = exc.headers
        if exc.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
            allow = ", ".join(sorted((headers or {}).get("Allow", "").split(", ")))
            headers = {"Allow": allow}
            message = f"{method} is not allowed on {path}; allowed: {allow}"
        elif path.startswith("/v2/models/"):
            message = f"no model here by that name; this server serves {MODEL_NAME}"
        else:
            message = f"no route {method} {path}"
        service.requests.labels("unknown", str(exc.status_code)).inc()
        return refusal(exc.status_code, message, headers)

    return Starlette(routes=routes, exception_handlers={HTTPException: no_route})


def _json_answer(payload: dict[str, Any]) -> Response:
    try:
        return Response(strict(payload), 200, media_type="application/json")
    except ValueError:  # NaN or infinity: no strict JSON parser could read the answer
        return refusal(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            "the model's answer for this input is not a finite number "
            "(an input far outside what it was trained on)",
        )


def _closing(status: HTTPStatus) -> dict[str, str] | None:
    """A body refused unread (too large) would be left in the stream: close the connection."""
    return {"Connection": "close"} if status == TOO_LARGE else None
