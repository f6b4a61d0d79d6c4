"""The recommender's HTTP endpoint: every route answers, bad input gets a 4xx that names the
problem, an altered model file is refused, a new one is swapped in."""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from berth.recommender.app import MAX_BODY
from berth.recommender.client import RecommenderClient, RecommenderRefused, RecommenderUnavailable
from berth.recommender.features import NAMES
from berth.recommender.model import SHIPPED, ModelError, load
from berth.recommender.server import DEFAULT, Limits, Server
from berth.recommender.service import MODEL_NAME, Service

JOB = {"model": "resnet50", "batchSize": 256, "totalWork": {"iterations": 1000}}
CANDIDATES = [{"accelerator": "a100", "count": 4}, {"accelerator": "Tesla T4", "count": 2}]


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "recommender.onnx"
    shutil.copy(SHIPPED, path)
    shutil.copy(f"{SHIPPED}.sha256", f"{path}.sha256")
    return path


@contextlib.contextmanager
def serving(model: Path, limits: Limits = DEFAULT) -> Iterator[tuple[str, int, Service]]:
    """The real server (uvicorn) on a free loopback port, in a thread, until the block ends."""
    server = Server(model, "127.0.0.1", 0, limits)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.uvicorn.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield *server.address, server.service
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.close()


@pytest.fixture
def server(model_file: Path) -> Iterator[tuple[str, int, Service]]:
    with serving(model_file) as running:
        yield running


def call(
    server: tuple[str, int, Service],
    method: str,
    path: str,
    body: Any = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    connection = http.client.HTTPConnection(server[0], server[1], timeout=10)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    connection.request(method, path, body=data, headers=headers or {})
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    if response.getheader("Content-Type", "").startswith("application/json"):
        return response.status, json.loads(payload)
    return response.status, payload.decode()


def test_recommend_ranks_the_candidates_with_predictions(server: Any) -> None:
    status, body = call(server, "POST", "/v1/recommend", {"job": JOB, "candidates": CANDIDATES})
    assert status == 200 and len(body["ranked"]) == 2
    first, second = body["ranked"]
    assert first["reason"] is None and second["reason"].endswith(
        f"vs {first['joules_per_sample']:.4g}"
    )
    assert first["source"].startswith("predicted (transfer ")  # resnet50 is in the tables
    assert first["runtime_s"] == pytest.approx(256_000 / first["throughput"])


def test_predict_takes_raw_feature_rows(server: Any) -> None:
    rows = [[0.0] * len(NAMES), [1.0] * len(NAMES)]
    status, body = call(server, "POST", "/v1/predict", {"instances": rows})
    assert status == 200 and np.array(body["mean"]).shape == (2, 2)


def test_model_describes_version_schema_digest_and_metrics(server: Any) -> None:
    status, body = call(server, "GET", "/v1/model")
    assert status == 200 and body["features"] == list(NAMES)
    assert body["sha256"] == Path(f"{SHIPPED}.sha256").read_text().split()[0]
    assert "throughput_mape" in body["metrics"]["held_out"]


@pytest.mark.parametrize(
    "path", ["/v2/health/live", "/v2/health/ready", f"/v2/models/{MODEL_NAME}",
             f"/v2/models/{MODEL_NAME}/ready"],
)  # fmt: skip
def test_the_open_inference_protocol_routes_answer(server: Any, path: str) -> None:
    assert call(server, "GET", path)[0] == 200


def test_a_triton_client_runs_inference_over_v2(server: Any) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(f"{server[0]}:{server[1]}")
    assert client.is_server_live() and client.is_model_ready(MODEL_NAME)
    x = np.zeros((3, len(NAMES)), dtype=np.float32)
    tensor = triton.InferInput("features", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=False)
    result = client.infer(
        MODEL_NAME, [tensor], outputs=[triton.InferRequestedOutput("mean", binary_data=False)]
    )
    want, _ = server[2].model.infer(x.astype(np.float64))
    np.testing.assert_allclose(result.as_numpy("mean"), want, rtol=1e-5)


def test_metrics_count_requests_by_route_and_code(server: Any) -> None:
    call(server, "GET", "/v1/model")
    call(server, "POST", "/v1/recommend", raw=b"{")
    status, text = call(server, "GET", "/metrics")
    assert status == 200
    assert 'berth_recommender_requests_total{code="200",route="/v1/model"} 1.0' in text
    assert 'berth_recommender_requests_total{code="400",route="/v1/recommend"} 1.0' in text


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/recommend", b"{not json", 400, "not valid JSON"),
        ("/v1/recommend", b'{"job": {"model": "bert", "batchSize": NaN}}', 400, "NaN"),
        ("/v1/recommend", {"job": JOB, "candidates": [{"accelerator": "b300", "count": 1}]},
         400, "candidates[0].accelerator: unknown accelerator 'b300'"),
        ("/v1/recommend", {"job": JOB, "candidates": [{"accelerator": "cpu", "count": 1}]},
         400, "cpu is not scored"),
        ("/v1/recommend", {"job": JOB, "candidates": [{"accelerator": "t4", "count": 0}]},
         400, "candidates[0].count"),
        ("/v1/recommend", {"job": {**JOB, "batchSize": "big"}, "candidates": CANDIDATES},
         400, "job.batchSize"),
        ("/v1/recommend", [], 400, "the body must be a JSON object"),
        ("/v1/predict", {"instances": [[1.0, 2.0]]}, 400, f"shape [1, {len(NAMES)}]"),
        ("/v1/predict", {"instances": [["a"] * len(NAMES)]}, 400, "is not of type 'number'"),
        (f"/v2/models/{MODEL_NAME}/infer",
         {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, len(NAMES)],
                      "data": [0.0] * len(NAMES)}]}, 400, "inputs[0].name"),
        (f"/v2/models/{MODEL_NAME}/infer",
         {"inputs": [{"name": "features", "datatype": "FP32", "shape": [2, len(NAMES)],
                      "data": [0.0] * len(NAMES)}]}, 400, "shape says"),
        ("/v2/models/other/infer", {}, 404, "serves berth-recommender"),
        ("/v1/nothing", {}, 404, "no route POST /v1/nothing"),
    ],
)  # fmt: skip
def test_bad_input_gets_a_4xx_naming_the_problem(
    server: Any, path: str, body: Any, status: int, message: str
) -> None:
    raw = body if isinstance(body, bytes) else None
    got, answer = call(server, "POST", path, None if raw else body, raw=raw)
    assert got == status and message in answer["error"]


def test_an_oversized_body_is_refused_unread(server: Any) -> None:
    headers = {"Content-Length": str(MAX_BODY + 1)}
    connection = http.client.HTTPConnection(server[0], server[1], timeout=10)
    connection.putrequest("POST", "/v1/recommend")
    for key, value in headers.items():
        connection.putheader(key, value)
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and "exceeds" in json.loads(response.read())["error"]


def test_a_model_whose_sha256_does_not_match_is_refused(model_file: Path) -> None:
    Path(f"{model_file}.sha256").write_text("0" * 64 + "  recommender.onnx\n")
    with pytest.raises(ModelError, match="is not the expected"):
        load(model_file)


def test_a_new_model_file_is_swapped_in_and_a_bad_one_kept_out(
    server: Any, model_file: Path
) -> None:
    service: Service = server[2]
    before = service.model
    model_file.write_bytes(model_file.read_bytes() + b"\0")  # altered, old .sha256
    service.reload_if_changed()
    assert service.model is before
    shutil.copy(SHIPPED, model_file)
    Path(f"{model_file}.sha256").write_text(Path(f"{SHIPPED}.sha256").read_text() + "\n")
    service.reload_if_changed()
    assert service.model is not before and service.model.sha256 == before.sha256


def test_the_client_says_when_the_recommender_is_down() -> None:
    with pytest.raises(RecommenderUnavailable, match="unreachable"):
        RecommenderClient("http://127.0.0.1:9", timeout_s=1).model()


def test_the_client_passes_on_the_reason_of_a_refusal(server: Any) -> None:
    client = RecommenderClient(f"http://{server[0]}:{server[1]}")
    assert client.recommend(JOB, CANDIDATES)["ranked"]
    with pytest.raises(RecommenderRefused, match="unknown accelerator"):
        client.recommend(JOB, [{"accelerator": "b300", "count": 1}])


def test_a_measured_family_is_moved_from_its_most_alike_measurement(server: Any) -> None:
    job = JOB | {"precision": "fp16", "framework": "tensorflow"}
    candidates = [{"accelerator": "RTX 3090", "count": 1}]
    status, body = call(server, "POST", "/v1/recommend", {"job": job, "candidates": candidates})
    assert status == 200
    (only,) = body["ranked"]
    assert only["source"].startswith("predicted (transfer same-type from rtx3090 x1")
    assert only["throughput_uncertainty"] > 0


def test_a_family_the_tables_do_not_hold_is_the_mlps_to_answer(server: Any) -> None:
    job = JOB | {"model": "never-measured"}
    status, body = call(server, "POST", "/v1/recommend", {"job": job, "candidates": CANDIDATES})
    assert status == 200
    assert all(r["source"].startswith("predicted (berth-recommender ") for r in body["ranked"])


def test_an_unknown_precision_is_a_400_naming_the_field(server: Any) -> None:
    job = JOB | {"precision": "int4"}
    status, body = call(server, "POST", "/v1/recommend", {"job": job, "candidates": CANDIDATES})
    assert status == 400 and body["error"].startswith("job.precision")


def test_the_model_route_shows_the_transfer_calibration(server: Any) -> None:
    status, body = call(server, "GET", "/v1/model")
    transfer = body["transfer"]
    assert status == 200 and transfer["rows"] > 1000
    assert set(transfer["interval_half_width_log"]) == {"same-type", "other-type", "roofline"}


def test_a_type_named_with_its_memory_is_scored_on_a_variant_with_that_memory() -> None:
    from berth.recommender.requests import _variant

    type_id, variant = _variant("A100 80GB", "candidates[0].accelerator")
    assert (type_id, variant.memory_gib) == ("a100", 80)
