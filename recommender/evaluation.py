"""How good the recommender is, on measured rows it did not train on (pure numpy)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from berth.recommender.dataset import Rows

Z90 = 1.6448536269514722
Predict = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # raw x -> (mean, calibrated sd)


def mape(pred_log: np.ndarray, true_log: np.ndarray) -> float:
    """Mean absolute percentage error of exp(pred) against exp(true), over finite targets."""
    ok = ~np.isnan(true_log)
    if not ok.any():
        return float("nan")
    p, t = np.exp(pred_log[ok]), np.exp(true_log[ok])
    return float(np.mean(np.abs(p - t) / t))


def _by(labels: list[str], pred: np.ndarray, rows: Rows, target: int) -> dict[str, float]:
    out = {}
    for label in sorted(set(labels)):
        idx = [i for i, lab in enumerate(labels) if lab == label]
        value = mape(pred[idx, target], rows.y[idx, target])
        if not np.isnan(value):
            out[label] = value
    return out


def held_out(predict: Predict, rows: Rows) -> dict[str, Any]:
    mean, sd = predict(rows.x)
    inside = np.abs(rows.y - mean) <= Z90 * sd
    finite = ~np.isnan(rows.y)
    return {
        "rows": len(rows),
        "throughput_mape": mape(mean[:, 0], rows.y[:, 0]),
        "throughput_mape_by_source": _by(rows.source, mean, rows, 0),
        "throughput_mape_by_type": _by(rows.type, mean, rows, 0),
        "power_mape": mape(mean[:, 1], rows.y[:, 1]),
        "power_rows": int(finite[:, 1].sum()),
        "coverage_90": float(inside[finite].mean()) if finite.any() else float("nan"),
    }


def top1(
    predict: Predict,
    rows: Rows,
    true_watts: Callable[[str, str], float],
    tdp: Callable[[str], float],
) -> dict[str, Any]:
    """For each (family, batch) measured on two or more (type, count): is the predicted best
    candidate the measured best? time: the most samples/s; energy: the fewest joules per sample
    (count x W / samples/s), with the ground truth's power per device (Zeus where measured,
    else modelled). The rows are all measured throughput rows, part of them trained on."""
    mean, _ = predict(rows.x)
    groups: dict[tuple[str, int], list[int]] = {}
    for i, (family, batch, _, _) in enumerate(rows.key):
        if not np.isnan(rows.y[i, 0]):
            groups.setdefault((family, batch), []).append(i)
    groups = {k: v for k, v in groups.items() if len(v) >= 2}

    def joules(i: int, log_rate: float, watts: float) -> float:
        return rows.key[i][3] * watts / float(np.exp(log_rate))

    result: dict[str, Any] = {"groups": len(groups)}
    for objective in ("time", "energy"):
        hits, regret = 0, 0.0
        for idx in groups.values():
            if objective == "time":
                true_cost = {i: -rows.y[i, 0] for i in idx}
                pred_cost = {i: -mean[i, 0] for i in idx}
            else:
                true_cost = {
                    i: joules(i, rows.y[i, 0], true_watts(rows.key[i][0], rows.key[i][2]))
                    for i in idx
                }
                pred_cost = {
                    i: joules(i, mean[i, 0], float(np.exp(mean[i, 1])) * tdp(rows.key[i][2]))
                    for i in idx
                }
            best_true = min(idx, key=lambda i: true_cost[i])
            best_pred = min(idx, key=lambda i: pred_cost[i])
            hits += best_true == best_pred
            if objective == "time":
                regret += 1 - float(np.exp(rows.y[best_pred, 0] - rows.y[best_true, 0]))
            else:
                regret += true_cost[best_pred] / true_cost[best_true] - 1
        result[f"top1_{objective}"] = hits / len(groups) if groups else float("nan")
        result[f"mean_regret_{objective}"] = regret / len(groups) if groups else float("nan")
    result["note"] = "all measured (family, batch) groups; the model trained on part of them"
    return result
