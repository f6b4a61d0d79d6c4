"""The model being served, its metrics, and what each route answers, apart from any HTTP
server: the Starlette app (app.py) only translates requests into these calls. A new model file
(with a matching .sha256) is swapped in without dropping a request: each request uses the
model it started with."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from berth.recommender import requests
from berth.recommender.model import Model, ModelError, load
from berth.recommender.recommend import rank
from berth.recommender.served import Served, served

MODEL_NAME = "berth-recommender"
log = logging.getLogger("berth.recommender")


class Service:
    """The model being served and the metrics; swaps the model when its file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.predictor: Served = served(load(path))  # refuses a file whose sha256 is not its own
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

    @property
    def model(self) -> Model:
        """The served MLP; one assignment swaps it with the predictor around it."""
        return self.predictor.model

    def _file_stamp(self) -> tuple[float, float]:
        sidecar = Path(f"{self.path}.sha256")
        return (self.path.stat().st_mtime, sidecar.stat().st_mtime)

    def reload_if_changed(self) -> None:
        try:
            stamp = self._file_stamp()
            if stamp == self._stamp:
                return
            self.predictor = Served(load(self.path), self.predictor.transfer)
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
        predictor = self.predictor
        job, candidates, variants = requests.recommend_request(body)
        predictions = predictor.predict_many(
            [
                (job.model, job.batch_size, v, c.count)
                for c, v in zip(candidates, variants, strict=True)
            ],
            job.precision,
            job.framework,
        )
        ranked = rank(candidates, predictions, job.objective, job.total_samples, job.deadline_s)
        return {
            "model": predictor.model.version,
            "ranked": [requests.ranked_json(r) for r in ranked],
        }

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
            "transfer": self.predictor.transfer.describe(),
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
