"""The served model: an ONNX file checked by its sha256, its feature schema read from itself.

onnxruntime and numpy only; torch is never imported here.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from berth.core import tables
from berth.core.catalog import Variant
from berth.core.prediction import Prediction
from berth.core.provenance import predicted
from berth.recommender.features import check_names, features

SHIPPED = tables.SHIPPED / "recommender.onnx"
# berth-cold's model (`berth simulate`): trained without the families of the bundled ITP trace.
COLD = SHIPPED.parent / "recommender-cold.onnx"


class ModelError(Exception):
    """The model file cannot be served: missing, altered, or built for other features."""


@dataclass(frozen=True)
class Model:
    path: Path
    sha256: str
    session: ort.InferenceSession
    names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    interval_scale: float
    metadata: dict[str, Any]

    @property
    def name(self) -> str:
        return f"recommender model {self.version}"

    @property
    def version(self) -> str:
        return f"berth-recommender {self.metadata.get('version', '?')} sha256:{self.sha256[:12]}"

    def infer(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw feature rows [n, F] -> (mean, calibrated std) of (log samples/s, log W/TDP)."""
        if raw.ndim != 2 or raw.shape[1] != len(self.names):
            raise ValueError(f"features must have shape [n, {len(self.names)}], got {raw.shape}")
        if not np.isfinite(raw).all():
            raise ValueError("features must be finite numbers")
        with np.errstate(over="ignore", invalid="ignore"):  # refused just below, by row
            x = ((raw - self.mean) / self.scale).astype(np.float32)
        far = np.flatnonzero(~np.isfinite(x).all(axis=1))
        if far.size:
            rows = ", ".join(str(i) for i in far[:10])
            raise ValueError(f"rows {rows}: a feature is beyond what the model can take (float32)")
        mean, std = self.session.run(None, {"features": x})
        return mean.astype(np.float64), std.astype(np.float64) * self.interval_scale

    def predict_many(self, rows: Sequence[tuple[str, int, Variant, int]]) -> list[Prediction]:
        """(family, global batch, variant, count) per candidate, in ONE inference call."""
        if not rows:
            return []
        mean, std = self.infer(np.array([features(*r) for r in rows]))
        out = []
        for row, (rate, fraction), (rate_sd, watts_sd) in zip(rows, mean, std, strict=True):
            watts = math.exp(fraction) * row[2].tdp_w
            out.append(
                Prediction(
                    predicted(math.exp(rate), "samples/s", self.version, float(rate_sd)),
                    predicted(watts, "W", self.version, float(watts_sd)),
                )
            )
        return out


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load(path: Path = SHIPPED, expected_sha256: str | None = None) -> Model:
    """Refuses a file whose sha256 is not the expected one (by default the `<path>.sha256`
    written beside it at export)."""
    try:
        data = path.read_bytes()
        if expected_sha256 is None:
            expected_sha256 = Path(f"{path}.sha256").read_text().split()[0]
    except (OSError, IndexError) as exc:
        raise ModelError(f"{path}: cannot read the model or its .sha256: {exc}") from None
    digest = sha256_of(data)
    if digest != expected_sha256:
        raise ModelError(f"{path}: sha256 {digest} is not the expected {expected_sha256}")
    try:
        options = ort.SessionOptions()
        # One thread: a request is a few rows, where waking a thread pool costs more than it
        # saves (p50 76 against 96 us for 8 rows), and a pod's CPU limit is a core or two.
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        meta = session.get_modelmeta().custom_metadata_map
        names = tuple(json.loads(meta["berth.features"]))
        scaling = json.loads(meta["berth.scaling"])
        interval_scale = float(json.loads(meta["berth.interval_scale"]))
    except Exception as exc:  # onnxruntime raises its own types for a bad graph
        raise ModelError(f"{path}: not a berth recommender model: {exc}") from None
    try:
        check_names(names)
    except ValueError as exc:
        raise ModelError(f"{path}: {exc}") from None
    extra = {k.removeprefix("berth."): v for k, v in meta.items() if k.startswith("berth.")}
    metadata = {k: v if k == "version" else json.loads(v) for k, v in extra.items()}
    return Model(
        path,
        digest,
        session,
        names,
        np.array(scaling["mean"]),
        np.array(scaling["scale"]),
        interval_scale,
        metadata,
    )
