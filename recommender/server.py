"""The recommender's HTTP endpoint: onnxruntime behind a small threaded HTTP server.

Routes: POST /v1/recommend, POST /v1/predict, GET /v1/model, GET /openapi.json (every route,
its request and answer schemas, from schemas.py); the Open Inference Protocol v2
(/v2/health/live, /v2/health/ready, /v2/models/<name>[/ready], POST /v2/models/<name>/infer);
GET /metrics. Handlers only translate: parsing and checks in `requests.py`, ranking in
`recommend.py`. A new model file (with a matching .sha256) is picked up without dropping a
request: each request uses the model it started with.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from berth.recommender import requests, schemas
from berth.recommender.model import Model, ModelError, load
from berth.recommender.recommend import rank

MODEL_NAME = "berth-recommender"
MAX_BODY = 1 << 20  # bytes
IDLE_S = 30.0  # a connection idle (or a client this slow to send) this long is closed
BACKLOG = 128  # connections the kernel queues before accept
log = logging.getLogger("berth.recommender")


class BadRequest(Exception):
    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = status


class Service:
    """The model being served and the metrics; swaps the model when its file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.model: Model = load(path)  # refuses a file whose sha256 does not match
        self._stamp = self._file_stamp()
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "berth_recommender_requests", "Requests by route and status code.",
            ["route", "code"], registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "berth_recommender_request_seconds", "Request latency by route.", ["route"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0),
        )  # fmt: skip
        self.drift = Gauge(
            "berth_recommender_drift_throughput_mape",
            "Served model's throughput error on measured job runs (retrain when it climbs).",
            registry=self.registry,
        )
        self.drift_runs = Gauge(
            "berth_recommender_drift_runs", "Measured job runs the drift is taken over.",
            registry=self.registry,
        )  # fmt: skip

    def _file_stamp(self) -> tuple[float, float]:
        sidecar = Path(f"{self.path}.sha256")
        return (self.path.stat().st_mtime, sidecar.stat().st_mtime)

    def reload_if_changed(self) -> None:
        try:
            stamp = self._file_stamp()
            if stamp == self._stamp:
                return
            self.model = load(self.path)
            self._stamp = stamp
            log.info("serving %s", self.model.version)
        except (OSError, ModelError) as exc:
            log.error("kept %s: the new file was refused: %s", self.model.version, exc)

    def measure_drift(self, runs: Any) -> float | None:
        from berth.recommender import drift

        mape: float | None = drift.throughput_mape(drift.pairs(self.model, runs))
        self.drift_runs.set(len(runs))
        self.drift.set(float("nan") if mape is None else mape)
        return mape

    # --- routes --------------------------------------------------------------------------

    def recommend(self, body: Any) -> dict[str, Any]:
        model = self.model
        job, candidates, variants = requests.recommend_request(body)
        predictions = model.predict_many(
            [
                (job.model, job.batch_size, v, c.count)
                for c, v in zip(candidates, variants, strict=True)
            ]
        )
        ranked = rank(candidates, predictions, job.objective, job.total_samples, job.deadline_s)
        return {"model": model.version, "ranked": [requests.ranked_json(r) for r in ranked]}

    def predict(self, body: Any) -> dict[str, Any]:
        model = self.model
        x = requests.feature_rows(body, "instances", len(model.names))
        mean, std = model.infer(x)
        _finite(mean, std, "instances")
        return {
            "model": model.version,
            "outputs": model.metadata.get("outputs"),
            "mean": mean.tolist(),
            "std": std.tolist(),
        }

    def describe(self) -> dict[str, Any]:
        model = self.model
        return {
            "name": MODEL_NAME,
            "version": model.metadata.get("version"),
            "sha256": model.sha256,
            "features": list(model.names),
            "outputs": model.metadata.get("outputs"),
            "data_sha256": model.metadata.get("data_sha256"),
            "metrics": model.metadata.get("metrics"),
        }

    def v2_metadata(self) -> dict[str, Any]:
        model = self.model
        return {
            "name": MODEL_NAME,
            "versions": [model.sha256[:12]],
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, len(model.names)]}],
            "outputs": [
                {"name": "mean", "datatype": "FP32", "shape": [-1, 2]},
                {"name": "std", "datatype": "FP32", "shape": [-1, 2]},
            ],
        }

    def v2_infer(self, body: Any) -> dict[str, Any]:
        model = self.model
        x, wanted, request_id = requests.v2_inputs(body, len(model.names))
        mean, std = model.infer(x)
        _finite(mean, std, "inputs[0].data row")
        outputs = [
            {"name": name, "datatype": "FP32", "shape": list(values.shape),
             "data": values.astype(np.float32).ravel().tolist()}
            for name, values in (("mean", mean), ("std", std))
            if wanted is None or name in wanted
        ]  # fmt: skip
        answer: dict[str, Any] = {
            "model_name": MODEL_NAME,
            "model_version": model.sha256[:12],
            "outputs": outputs,
        }
        if request_id is not None:
            answer["id"] = request_id
        return answer


def _finite(mean: np.ndarray, std: np.ndarray, where: str) -> None:
    """Strict JSON has no NaN or infinity: name the rows whose answer would need them."""
    bad = np.flatnonzero(~(np.isfinite(mean).all(axis=1) & np.isfinite(std).all(axis=1)))
    if bad.size:
        rows = ", ".join(str(i) for i in bad[:10])
        raise requests.RequestError(
            f"{where} {rows}: the model's answer is not a finite number (a feature far outside "
            "what it was trained on)"
        )


class Handler(BaseHTTPRequestHandler):
    service: Service  # set on the subclass serve() makes
    protocol_version = "HTTP/1.1"  # keep-alive, as load balancers and clients expect
    timeout = IDLE_S  # socket timeout: idle keep-alive and slow clients are let go
    body_read = False  # whether this request's body was read (else the connection closes)
    allow = ""  # the Allow header of a 405
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stall

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, payload: Any, content_type: str = "application/json") -> None:
        try:
            data = payload if isinstance(payload, bytes) else _strict(payload)
        except ValueError:  # NaN or infinity: no strict JSON parser could read the answer
            status = HTTPStatus.UNPROCESSABLE_ENTITY
            data = _strict(
                {
                    "error": "the model's answer for this input is not a finite number "
                    "(an input far outside what it was trained on)"
                }
            )
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":  # a HEAD answer has the headers of the body, not the body
            self.wfile.write(data)

    def _body(self) -> Any:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise BadRequest(
                "a body with a Content-Length is required", HTTPStatus.LENGTH_REQUIRED
            ) from None
        if length < 0 or length > MAX_BODY:
            # Not read: close the connection rather than leave the body in the stream.
            self.close_connection = True
            raise BadRequest(
                f"body of {length} bytes exceeds {MAX_BODY}", HTTPStatus.REQUEST_ENTITY_TOO_LARGE
            )
        raw = self.rfile.read(length)
        self.body_read = True
        try:
            return json.loads(raw, parse_constant=_no_constant)
        except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
            raise BadRequest(f"body is not valid JSON: {exc}") from None
        except RecursionError:
            raise BadRequest("body is not valid JSON: nested too deeply") from None

    def _route(self, method: str) -> tuple[str, Any]:
        path = self.path.split("?", 1)[0]
        s = self.service
        routes: dict[str, dict[str, tuple[str, Any]]] = {
            "/v1/model": {"GET": (path, lambda: s.describe())},
            "/openapi.json": {"GET": (path, lambda: schemas.openapi(MODEL_NAME))},
            "/v2/health/live": {"GET": (path, lambda: {"live": True})},
            "/v2/health/ready": {"GET": (path, lambda: {"ready": True})},
            "/metrics": {"GET": (path, lambda: generate_latest(s.registry))},
            f"/v2/models/{MODEL_NAME}": {"GET": ("/v2/models/<name>", lambda: s.v2_metadata())},
            f"/v2/models/{MODEL_NAME}/ready": {
                "GET": ("/v2/models/<name>/ready", lambda: {"name": MODEL_NAME, "ready": True})
            },
            "/v1/recommend": {"POST": (path, lambda: s.recommend(self._body()))},
            "/v1/predict": {"POST": (path, lambda: s.predict(self._body()))},
            f"/v2/models/{MODEL_NAME}/infer": {
                "POST": ("/v2/models/<name>/infer", lambda: s.v2_infer(self._body()))
            },
        }
        if path in routes:
            found = routes[path]
            if method in found:
                return found[method]
            self.allow = ", ".join(found)
            return "unknown", _fail(
                f"{method} is not allowed on {path}; allowed: {self.allow}",
                HTTPStatus.METHOD_NOT_ALLOWED,
            )
        if path.startswith("/v2/models/"):
            return "unknown", _fail(
                f"no model here by that name; this server serves {MODEL_NAME}", HTTPStatus.NOT_FOUND
            )
        return "unknown", _fail(f"no route {method} {path}", HTTPStatus.NOT_FOUND)

    def _handle(self, method: str) -> None:
        began = time.perf_counter()
        self.body_read, self.allow = False, ""
        if self.headers.get("Transfer-Encoding"):
            # Not read, so not left in the stream either: the connection is closed.
            route, action = (
                "unknown",
                _fail(
                    "chunked bodies are not accepted; send a Content-Length",
                    HTTPStatus.LENGTH_REQUIRED,
                ),
            )
        else:
            route, action = self._route(method)
        status = HTTPStatus.OK
        try:
            result = action()
            if route == "/metrics":
                self._send(status, result, CONTENT_TYPE_LATEST)
            else:
                self._send(status, result)
        except BadRequest as exc:
            status = exc.status
            self._send(status, {"error": str(exc)})
        except (requests.RequestError, ValueError) as exc:
            status = HTTPStatus.BAD_REQUEST
            self._send(status, {"error": str(exc)})
        except Exception:  # a bug, not the caller's fault: say so, keep serving
            log.exception("internal error on %s %s", method, self.path)
            status = HTTPStatus.INTERNAL_SERVER_ERROR
            self._send(status, {"error": "internal error; see the server log"})
        self.service.requests.labels(route, str(int(status))).inc()
        self.service.latency.labels(route).observe(time.perf_counter() - began)

    def end_headers(self) -> None:
        if self.allow:
            self.send_header("Allow", self.allow)
        # A body sent but not read would be parsed as the next request: never keep such a
        # connection (nothing hidden in a refused body is ever answered). No headers at all:
        # the request was refused before they could be read.
        headers = getattr(self, "headers", None)
        unread = headers is None or (
            headers.get("Content-Length", "0") not in ("", "0")
            or bool(headers.get("Transfer-Encoding"))
        )
        if unread and not self.body_read:
            self.close_connection = True
            self.send_header("Connection", "close")
        super().end_headers()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a request line or headers too long or too many, a bad
        version) as JSON too, on a connection that is then closed."""
        self.close_connection = True
        short = self.responses.get(code, ("error", ""))[0]
        self._send(code, {"error": f"{message or short}" + (f": {explain}" if explain else "")})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_OPTIONS(self) -> None:
        self._handle("OPTIONS")

    def do_HEAD(self) -> None:
        self._handle("HEAD")


def _strict(payload: Any) -> bytes:
    return json.dumps(payload, allow_nan=False).encode()


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _fail(message: str, status: HTTPStatus) -> Any:
    def action() -> Any:
        raise BadRequest(message, status)

    return action


class _Server(ThreadingHTTPServer):
    request_queue_size = BACKLOG


def make_server(path: Path, host: str, port: int) -> ThreadingHTTPServer:
    service = Service(path)
    handler = type("BoundHandler", (Handler,), {"service": service})
    server = _Server((host, port), handler)
    server.daemon_threads = True
    return server


def watch(server: ThreadingHTTPServer, every_s: float = 2.0) -> threading.Thread:
    """Checks the model file every few seconds and swaps in a new one that passes its check."""
    service: Service = server.RequestHandlerClass.service  # type: ignore[attr-defined]
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            service.reload_if_changed()

    thread = threading.Thread(target=loop, name="model-watch", daemon=True)
    thread.start()
    return thread


def watch_drift(
    server: ThreadingHTTPServer, collector: Any, every_s: float, window_s: float
) -> threading.Thread:
    """Every `every_s`, the served model's error on the job runs measured in the last window."""
    service: Service = server.RequestHandlerClass.service  # type: ignore[attr-defined]

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
