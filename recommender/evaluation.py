"""How good the recommender is, on measured rows it did not train on (pure numpy)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from berth.core.catalog import DEFAULT_VARIANT
from berth.core.profile import PowerRecord, ProfileRecord
from berth.recommender import transfer
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


# --- grouped folds: how berth is used, on what it has not seen ----------------------------

TDP_FRACTION = 0.8  # power in the top-1 energy ranking, truth and prediction alike (modelled)
# A predictor, given a fold's training records, answers (log samples/s, sd or None) or None.
Answer = tuple[float, float | None] | None
Fit = Callable[[Sequence[ProfileRecord]], Callable[[Sequence[ProfileRecord]], list[Answer]]]
GROUPINGS: dict[str, Callable[[ProfileRecord], str]] = {
    "type": lambda r: r.accelerator,
    "family": lambda r: r.family,
    "source": lambda r: r.source.split()[0],
}


def out_of_fold(
    records: Sequence[ProfileRecord], key: Callable[[ProfileRecord], str], fit: Fit
) -> list[Answer]:
    """Each record's prediction by the predictor fitted without its whole group."""
    answers: list[Answer] = [None] * len(records)
    for group in sorted({key(r) for r in records}):
        inside = [i for i, r in enumerate(records) if key(r) == group]
        predict = fit([r for r in records if key(r) != group])
        for i, answer in zip(inside, predict([records[i] for i in inside]), strict=True):
            answers[i] = answer
    return answers


def summarise(
    records: Sequence[ProfileRecord], key: Callable[[ProfileRecord], str], answers: list[Answer]
) -> dict[str, Any]:
    """Per group: MAPE, median error and the share answered; over groups, the median of the
    MAPEs (the headline); the 90% interval's coverage; top-1 (type, count) for time and energy
    with the regret, in every (family, batch, precision, framework, source) measured on two or
    more (type, count)."""
    errors: dict[str, list[float]] = {}
    asked: dict[str, int] = {}
    inside = []
    for r, a in zip(records, answers, strict=True):
        group = key(r)
        asked[group] = asked.get(group, 0) + 1
        if a is None:
            continue
        log_pred, sd = a
        errors.setdefault(group, []).append(abs(math.exp(log_pred) / r.throughput - 1))
        if sd is not None:
            inside.append(abs(log_pred - math.log(r.throughput)) <= Z90 * sd)
    groups = {
        g: {
            "rows": asked[g],
            "answered": len(errors.get(g, [])) / asked[g],
            "mape": float(np.mean(errors[g])) if g in errors else None,
            "median_error": float(np.median(errors[g])) if g in errors else None,
        }
        for g in sorted(asked)
    }
    mapes = [v["mape"] for v in groups.values() if v["mape"] is not None]
    return {
        "median_mape_over_groups": float(np.median(mapes)) if mapes else None,
        "median_error": float(np.median([e for es in errors.values() for e in es]))
        if errors
        else None,
        "answered": sum(len(e) for e in errors.values()) / len(records),
        "coverage_90": float(np.mean(inside)) if inside else None,
        **_top1(records, answers),
        "groups": groups,
    }


def _top1(records: Sequence[ProfileRecord], answers: list[Answer]) -> dict[str, Any]:
    options: dict[tuple[str, int, str, str, str], list[int]] = {}
    for i, (r, a) in enumerate(zip(records, answers, strict=True)):
        if a is not None:
            key = (r.family, r.batch_size, r.precision, r.framework, r.source.split()[0])
            options.setdefault(key, []).append(i)
    options = {k: v for k, v in options.items() if len({_slot(records[i]) for i in v}) >= 2}
    out: dict[str, Any] = {"top1_groups": len(options)}
    for objective in ("time", "energy"):
        hits, regrets = 0, []
        for idx in options.values():
            cost = partial(_cost, records, objective)
            best = min(idx, key=lambda i: cost(i, records[i].throughput))
            pick = min(idx, key=lambda i: cost(i, math.exp(answers[i][0])))  # type: ignore[index]
            hits += _slot(records[pick]) == _slot(records[best])
            true_best, true_pick = records[best].throughput, records[pick].throughput
            regrets.append(
                1 - true_pick / true_best
                if objective == "time"
                else cost(pick, true_pick) / cost(best, true_best) - 1
            )
        out[f"top1_{objective}"] = hits / len(options) if options else None
        out[f"regret_{objective}"] = float(np.mean(regrets)) if regrets else None
    return out


def _cost(records: Sequence[ProfileRecord], objective: str, i: int, rate: float) -> float:
    """What the objective minimises: -samples/s, or joules per sample at TDP x TDP_FRACTION."""
    r = records[i]
    if objective == "time":
        return -rate
    return r.count * DEFAULT_VARIANT[r.accelerator].tdp_w * TDP_FRACTION / rate


def _slot(r: ProfileRecord) -> tuple[str, int]:
    return r.accelerator, r.count


def spec_ratio(pool: Sequence[ProfileRecord]) -> Callable[[Sequence[ProfileRecord]], list[Answer]]:
    """The baseline: the most alike measurement moved by the peak ratio, uncorrected."""
    model = transfer.Transfer([transfer.Row.of(r) for r in pool], np.zeros(len(transfer.Z_NAMES)),
                              0.0, dict.fromkeys(transfer.KINDS, 1.0))  # fmt: skip

    def predict(records: Sequence[ProfileRecord]) -> list[Answer]:
        out: list[Answer] = []
        for r in records:
            q = transfer.Row.of(r)
            ref = model.reference(q)
            out.append(None if ref is None else (transfer.prior(q, ref), None))
        return out

    return predict


def transferred(pool: Sequence[ProfileRecord]) -> Callable[[Sequence[ProfileRecord]], list[Answer]]:
    model = transfer.fit([transfer.Row.of(r) for r in pool])

    def predict(records: Sequence[ProfileRecord]) -> list[Answer]:
        answers = [model.predict(transfer.Row.of(r)) for r in records]
        return [None if a is None else (a.log_rate, a.sd) for a in answers]

    return predict


MLP_FOLD_MEMBERS = 2  # the MLP in each fold: fewer members than shipped, for time (stated)


def mlp_in_folds(power: Sequence[PowerRecord], settings: dict[str, Any]) -> Fit:
    """The previous model in each fold: the MLP, retrained (torch) on the fold's records of its
    own kind (the shipped fp32 PyTorch tables, and Zeus's power) with the shipped settings but
    MLP_FOLD_MEMBERS members."""
    from berth.recommender import train
    from berth.recommender.dataset import build, variant_of
    from berth.recommender.features import features

    s = train.Hyperparameters(**{**settings, "members": MLP_FOLD_MEMBERS})

    def fit(pool: Sequence[ProfileRecord]) -> Callable[[Sequence[ProfileRecord]], list[Answer]]:
        own = [r for r in pool if (r.precision, r.framework) == ("fp32", "pytorch")]
        trained = train.fit(build(own, power), s)

        def predict(records: Sequence[ProfileRecord]) -> list[Answer]:
            x = np.array(
                [features(r.family, r.batch_size, variant_of(r.accelerator), r.count)
                 for r in records]
            )  # fmt: skip
            mean, sd = trained.calibrated(x)
            return [(float(m), float(d)) for m, d in zip(mean[:, 0], sd[:, 0], strict=True)]

        return predict

    return fit
