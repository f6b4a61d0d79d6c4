"""Training (torch, the `train` extra): an MLP ensemble on the measured tables, exported to ONNX.

Each member is a small MLP predicting log throughput and log power per device from the
features; the ensemble's spread is the uncertainty, scaled on the validation rows so that its
90% interval covers 90% of them. Seeded and single-threaded, so the same data and seed give the
same model. Early stopping on a validation split; the held-out test split is never trained on.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from berth import __version__
from berth.recommender import features
from berth.recommender.dataset import Rows, split

Z90 = 1.6448536269514722  # two-sided 90% normal quantile


@dataclass(frozen=True)
class Hyperparameters:
    members: int = 5
    hidden: int = 128
    epochs: int = 1000
    patience: int = 100
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.0
    seed: int = 0
    test_fraction: float = 0.15
    val_fraction: float = 0.1


class Member(nn.Module):
    def __init__(self, inputs: int, hidden: int, y_mean: np.ndarray, y_scale: np.ndarray) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(inputs, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, 2),
        )
        # Throughput is learnt standardised; the member answers in log units.
        self.y_mean: torch.Tensor
        self.y_scale: torch.Tensor
        self.register_buffer("y_mean", torch.from_numpy(y_mean))
        self.register_buffer("y_scale", torch.from_numpy(y_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = self.net(x)
        rate = raw[:, :1] * self.y_scale[:1] + self.y_mean[:1]
        # Power is a fraction of TDP: log-sigmoid keeps it in (0, 1] however far the specs lie
        # from the few devices Zeus measured.
        power = nn.functional.logsigmoid(raw[:, 1:] + 1.0)
        return torch.cat([rate, power], dim=1)


class Ensemble(nn.Module):
    """Standardised features in; mean and standard deviation of the members' log outputs out."""

    def __init__(self, members: list[Member]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outs = torch.stack([m(x) for m in self.members])
        return outs.mean(dim=0), outs.std(dim=0, unbiased=False)


def _masked_mse(pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # Power rows are few (Zeus): weigh each target by its own row count.
    err = torch.where(mask, pred - torch.nan_to_num(y), torch.zeros_like(pred)) ** 2
    return (err.sum(dim=0) / mask.sum(dim=0).clamp(min=1)).sum()


def fit_member(
    x: np.ndarray,
    y: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    seed: int,
    s: Hyperparameters,
) -> Member:
    """Minibatch Adam; stops when the validation throughput error has not improved for
    `patience` epochs (Zeus's power rows are too few to steer stopping) and keeps the best."""
    torch.manual_seed(seed)
    y_mean, y_scale = np.nanmean(y, axis=0), np.nanstd(y, axis=0)
    model = Member(x.shape[1], s.hidden, y_mean, np.where(y_scale > 0, y_scale, 1.0)).double()
    opt = torch.optim.Adam(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    xv, yv = torch.from_numpy(x_val), torch.from_numpy(y_val)
    scale = torch.cat([model.y_scale[:1], torch.ones(1, dtype=torch.float64)])
    generator = torch.Generator().manual_seed(seed)
    best, best_state, since = math.inf, copy.deepcopy(model.state_dict()), 0
    for _ in range(s.epochs):
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(xt), s.batch_size):
            batch = order[start : start + s.batch_size]
            opt.zero_grad()
            # Power, a log fraction of TDP, is on a unit scale already.
            pred, target = model(xt[batch]) / scale, yt[batch] / scale
            loss = _masked_mse(pred, target, ~torch.isnan(target))
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
        with torch.no_grad():
            err = (model(xv)[:, 0] - yv[:, 0])[~torch.isnan(yv[:, 0])]
            val = float((err**2).mean()) if len(err) else 0.0
        if val < best - 1e-9:
            best, since = val, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            since += 1
            if since >= s.patience:
                break
    model.load_state_dict(best_state)
    return model


@dataclass
class Trained:
    ensemble: Ensemble
    mean: np.ndarray  # feature scaling fitted on the training rows
    scale: np.ndarray
    interval_scale: float  # multiplies the ensemble's std so 90% intervals cover 90%

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            m, sd = self.ensemble(torch.from_numpy((x - self.mean) / self.scale))
        return m.numpy(), sd.numpy()

    def calibrated(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and the std scaled so 90% intervals cover 90%: what the exported model answers."""
        mean, sd = self.predict(x)
        return mean, sd * self.interval_scale


def fit(rows: Rows, s: Hyperparameters, progress: Callable[[int], None] | None = None) -> Trained:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    train_idx, val_idx = split(len(rows), s.val_fraction, s.seed + 1)
    train, val = rows.subset(train_idx), rows.subset(val_idx)
    mean = train.x.mean(axis=0)
    scale = train.x.std(axis=0)
    scale[scale == 0] = 1.0
    xs, xv = (train.x - mean) / scale, (val.x - mean) / scale
    members = []
    for k in range(s.members):
        # Each member sees a bootstrap resample: the spread then reflects the data, too.
        boot = np.random.default_rng(s.seed * 1000 + k).integers(0, len(train), len(train))
        members.append(fit_member(xs[boot], train.y[boot], xv, val.y, s.seed * 1000 + k, s))
        if progress is not None:
            progress(k + 1)
    trained = Trained(Ensemble(members).double().eval(), mean, scale, 1.0)
    m, sd = trained.predict(val.x)
    z = np.abs(val.y - m) / np.maximum(sd, 1e-9)
    z = z[~np.isnan(z)]
    trained.interval_scale = float(np.quantile(z, 0.9) / Z90) if len(z) else 1.0
    return trained


def export(trained: Trained, path: Path, metadata: dict[str, Any], check: np.ndarray) -> str:
    """Write the ONNX model with its metadata and `<path>.sha256`; returns the sha256. Refuses
    to write a model whose onnxruntime output differs from torch's by more than 1e-5."""
    model = trained.ensemble.float()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter covers an MLP and needs no onnxscript.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.zeros(1, len(features.NAMES)),),
            buffer,  # type: ignore[arg-type]  # file-like objects are accepted
            input_names=["features"],
            output_names=["mean", "std"],
            dynamic_axes={"features": {0: "n"}, "mean": {0: "n"}, "std": {0: "n"}},
            opset_version=17,
            dynamo=False,
        )
    proto = onnx.load_from_string(buffer.getvalue())
    meta = {
        "berth.features": json.dumps(list(features.NAMES)),
        "berth.scaling": json.dumps(
            {"mean": trained.mean.tolist(), "scale": trained.scale.tolist()}
        ),
        "berth.interval_scale": json.dumps(trained.interval_scale),
        "berth.outputs": json.dumps(["log samples/s", "log (W per device / TDP)"]),
        "berth.version": __version__,
        # Each member answers raw x scale + mean for throughput (folded into the graph).
        "berth.member_scaling": json.dumps(
            [
                {"mean": float(m.y_mean[0]), "scale": float(m.y_scale[0])}
                for m in trained.ensemble.members
                if isinstance(m, Member)
            ]
        ),
        **{f"berth.{k}": json.dumps(v) for k, v in metadata.items()},
    }
    for key, value in sorted(meta.items()):
        proto.metadata_props.add(key=key, value=value)
    data = proto.SerializeToString()

    xs = ((check - trained.mean) / trained.scale).astype(np.float32)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got_mean, got_std = session.run(None, {"features": xs})
    with torch.no_grad():
        want_mean, want_std = model(torch.from_numpy(xs))
    worst = max(
        float(np.abs(got_mean - want_mean.numpy()).max()),
        float(np.abs(got_std - want_std.numpy()).max()),
    )
    trained.ensemble.double()
    if worst > 1e-5:
        raise RuntimeError(f"ONNX output differs from torch's by {worst:.2e} (> 1e-5)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    Path(f"{path}.sha256").write_text(f"{digest}  {path.name}\n")
    return digest


def settings_dict(s: Hyperparameters) -> dict[str, Any]:
    return asdict(s)
