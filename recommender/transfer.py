"""Throughput by transfer: a measured rate of the same workload moved to the asked (type, count)
by datasheet ratios, then corrected by a ridge fit of how wrong such moves were. Pure numpy.

    prior     = log rate(ref) + log(peak_T / peak_ref) + log(count / count_ref)
    log rate  = prior + w . z(query, ref)

The reference is the measured row of the same family that is most alike: same precision, then
same framework, then same type, then the type nearest by its datasheet, then the nearest count
and batch (log scales). peak is the type's FP32 peak, or its FP16 tensor peak for fp16/bf16
work. z holds an offset for a move to another count or batch, one for a move to another type,
and the framework's and precision's own effects (query's minus reference's). The correction
is fitted on pairs made from the training rows themselves, each row moved from its nearest
reference of another type, of its own type, of another framework and of another precision, so
it learns how transfers go wrong, never a row's own value. Terms on the log ratios of peaks,
bandwidths, counts and batches were tried and left out: on grouped folds they did not lower
the error leaving a type out (39.7% against 39.2%) and raised it leaving a data set out from
58% to 90% (they learn their data sets).

A family with no measured row gets a roofline calibrated on the data, where its FLOPs per
sample are known: count x peak x efficiency / (3 x forward FLOPs), the efficiency being the
median the training rows achieve; else None (the caller's MLP answers).

The 90% interval is conformal: the 90% quantile of |error| of each kind of prediction
(same type, another type, roofline) when each data set was predicted by a fit without it, so
it is as wide as moving between workload definitions was wrong.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from berth.core.catalog import DEFAULT_VARIANT, Variant
from berth.core.families import FAMILIES
from berth.core.job import Precision
from berth.core.profile import ProfileRecord
from berth.placement.roofline import BACKWARD_FACTOR, gpu_peak_tflops

Z90 = 1.6448536269514722
QUANTILE = 0.9  # of held-out |errors|: the half-width of the 90% interval (split conformal)
RIDGE = 1.0  # the correction's L2 penalty: it nudges the prior, it does not replace it
TENSOR = ("fp16", "bf16")
KINDS = ("same-type", "other-type", "roofline")
Z_NAMES = ("other_count_or_batch", "other_type", "tensorflow", "fp16")


@dataclass(frozen=True)
class Row:
    """A measured rate, or a query (rate None)."""

    family: str
    batch: int
    type: str
    count: int
    precision: str = "fp32"
    framework: str = "pytorch"
    rate: float | None = None
    source: str = ""

    @classmethod
    def of(cls, r: ProfileRecord) -> Row:
        source = r.source.split()[0]
        return cls(r.family, r.batch_size, r.accelerator, r.count, r.precision, r.framework,
                   r.throughput, source)  # fmt: skip


def peak(variant: Variant, precision: str) -> float:
    """The roofline's peak for the precision (FP16 tensor for fp16/bf16, else FP32)."""
    tflops = gpu_peak_tflops(variant, Precision(precision))
    assert tflops is not None  # rows and queries are fp32, tf32, fp16 or bf16, never fp64
    return tflops


def z(q: Row, ref: Row) -> list[float]:
    """A move to another count or batch, one to another type, and the framework's and
    precision's own effects (query's minus reference's, against PyTorch in fp32: a TensorFlow
    rate moved to a PyTorch job is corrected the other way from a PyTorch rate moved to a
    TensorFlow one). No bias: a measurement of the very (type, count, batch) is left as it is."""
    return [
        float(ref.count != q.count or ref.batch != q.batch),
        float(ref.type != q.type),
        float(q.framework == "tensorflow") - float(ref.framework == "tensorflow"),
        float(q.precision in TENSOR) - float(ref.precision in TENSOR),
    ]


def prior(q: Row, ref: Row, variant: Variant | None = None) -> float:
    t, r = variant or DEFAULT_VARIANT[q.type], DEFAULT_VARIANT[ref.type]
    assert ref.rate is not None
    return (
        math.log(ref.rate)
        + math.log(peak(t, q.precision) / peak(r, ref.precision))
        + math.log(q.count / ref.count)
    )


def roofline(q: Row, variant: Variant | None = None) -> float | None:
    """log(count x peak / (3 x forward FLOPs)), before the efficiency; None without FLOPs."""
    family = FAMILIES.get(q.family)
    if family is None or family.gflops_per_sample is None:
        return None
    t = variant or DEFAULT_VARIANT[q.type]
    flops = BACKWARD_FACTOR * family.gflops_per_sample * 1e9
    return math.log(q.count * peak(t, q.precision) * 1e12 / flops)


@dataclass(frozen=True)
class Answer:
    log_rate: float
    sd: float  # of log rate; the 90% interval is +- Z90 x sd
    kind: str  # one of KINDS
    reference: Row | None


def _spec(v: Variant) -> np.ndarray:
    return np.log([v.fp32_tflops, peak(v, "fp16"), v.memory_bandwidth_gbs])


class _Family:
    """One family's rows as arrays, so the most alike is found by one lexsort."""

    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows
        self.precision = np.array([r.precision for r in rows])
        self.framework = np.array([r.framework for r in rows])
        self.type = np.array([r.type for r in rows])
        self.log2_count = np.log2([r.count for r in rows])
        self.log_batch = np.log([r.batch for r in rows])
        self.spec = np.array([_spec(DEFAULT_VARIANT[r.type]) for r in rows])
        self.rank = np.argsort(np.lexsort((self.log_batch, self.log2_count, self.type)))
        # (precision, framework, type, variant id) -> the rows tied first on those four keys:
        # a query's batch and count only choose among them. A framework none of the rows has
        # ties them all alike, so it is kept as "" (the caller names it: a bound on the keys).
        self._tied: dict[tuple[str, str, str, str], np.ndarray] = {}
        self._frameworks = set(self.framework.tolist())

    def most_alike(
        self, q: Row, keep: np.ndarray | None, variant: Variant | None = None
    ) -> Row | None:
        """Same precision, then framework, then type, then the type nearest by datasheet
        (log FP32 and FP16 peaks and bandwidth), then the nearest count and batch (log
        scales), then type, count and batch by name and size; among `keep` where given."""
        v = variant or DEFAULT_VARIANT[q.type]
        if keep is None:
            framework = q.framework if q.framework in self._frameworks else ""
            key = (q.precision, framework, q.type, v.id)
            if key not in self._tied:
                self._tied[key] = self._ties(q, v)
            among = self._tied[key]
            keys = self._near(q, among)  # the other keys are equal within the tie
        else:
            among = np.flatnonzero(keep)
            keys = self._near(q, among) + self._alike(q, v, among)
        if not among.size:
            return None
        return self.rows[int(among[np.lexsort(keys)[0]])]

    def _near(self, q: Row, among: np.ndarray) -> tuple[np.ndarray, ...]:
        """The last of np.lexsort's keys (it sorts by the last first) over the rows `among`."""
        return (
            self.rank[among],  # rank in (type, count, batch) order
            np.abs(self.log_batch[among] - math.log(q.batch)),
            np.abs(self.log2_count[among] - math.log2(q.count)),
        )

    def _alike(self, q: Row, v: Variant, among: np.ndarray) -> tuple[np.ndarray, ...]:
        """The first of np.lexsort's keys: they depend on no batch or count."""
        spec = np.abs(self.spec[among] - _spec(v)).sum(axis=1)
        return (
            np.round(spec, 6),  # the nearest type by its datasheet
            self.type[among] != q.type,
            self.framework[among] != q.framework,
            self.precision[among] != q.precision,
        )

    def _ties(self, q: Row, v: Variant) -> np.ndarray:
        every = np.arange(len(self.rows))
        first = np.stack(self._alike(q, v, every))
        best = first[:, np.lexsort(first)[0]]
        tied: np.ndarray = every[(first == best[:, None]).all(axis=0)]
        return tied


def _by_family(rows: Sequence[Row]) -> dict[str, _Family]:
    grouped: dict[str, list[Row]] = {}
    for r in rows:
        grouped.setdefault(r.family, []).append(r)
    return {f: _Family(group) for f, group in grouped.items()}


class Transfer:
    """The pool of measured rows, the fitted correction, the efficiency and the intervals."""

    def __init__(
        self,
        rows: Sequence[Row],
        weights: np.ndarray,
        log_efficiency: float,
        q90: dict[str, float],
    ) -> None:
        self.rows = list(rows)
        self.weights = weights
        self.log_efficiency = log_efficiency
        self.q90 = q90
        self._families = _by_family(self.rows)

    def describe(self) -> dict[str, object]:
        """What /v1/model shows of it."""
        return {
            "rows": len(self.rows),
            "correction": dict(zip(Z_NAMES, self.weights.round(4).tolist(), strict=True)),
            "log_efficiency": round(self.log_efficiency, 4),
            "interval_half_width_log": {k: round(v, 4) for k, v in self.q90.items()},
        }

    def reference(self, q: Row, variant: Variant | None = None) -> Row | None:
        family = self._families.get(q.family)
        return None if family is None else family.most_alike(q, None, variant)

    def predict(self, q: Row, variant: Variant | None = None) -> Answer | None:
        ref = self.reference(q, variant)
        if ref is not None:
            kind = "same-type" if ref.type == q.type else "other-type"
            log_rate = prior(q, ref, variant) + float(np.dot(self.weights, z(q, ref)))
            return Answer(log_rate, self.q90[kind] / Z90, kind, ref)
        top = roofline(q, variant)
        if top is None:
            return None
        return Answer(top + self.log_efficiency, self.q90["roofline"] / Z90, "roofline", None)


def pairs(rows: Sequence[Row]) -> tuple[np.ndarray, np.ndarray]:
    """(z, error of the uncorrected prior) for each row moved from its nearest reference of
    another type, of the same type (another count or batch), of another framework and of
    another precision, where the family has one."""
    zs, errors = [], []
    for family in _by_family(rows).values():
        for j, r in enumerate(family.rows):
            assert r.rate is not None
            same = family.type == r.type
            other_framework = family.framework != r.framework
            other_precision = family.precision != r.precision
            for keep in (~same, same, other_framework, other_precision):
                keep = keep.copy()
                keep[j] = False
                ref = family.most_alike(r, keep)
                if ref is not None:
                    zs.append(z(r, ref))
                    errors.append(math.log(r.rate) - prior(r, ref))
    return np.array(zs).reshape(-1, len(Z_NAMES)), np.array(errors)


def fit(rows: Sequence[Row], calibrated: bool = True) -> Transfer:
    """The correction from the rows' pairs; the intervals conformal on grouped folds: each
    data set predicted by a fit without it (a user's job is never one of our data sets)."""
    zs, errors = pairs(rows)
    penalty = RIDGE * np.eye(len(Z_NAMES))
    weights = np.zeros(len(Z_NAMES))
    if len(errors):
        weights = np.linalg.solve(zs.T @ zs + penalty, zs.T @ errors)
    achieved = [
        math.log(r.rate) - top
        for r in rows
        if r.rate is not None and (top := roofline(r)) is not None
    ]
    log_efficiency = float(np.median(achieved)) if achieved else math.log(0.3)
    model = Transfer(rows, weights, log_efficiency, dict.fromkeys(KINDS, 1.0))
    if not calibrated:
        return model
    held: dict[str, list[float]] = {}
    for source in sorted({r.source for r in rows}):
        inner = fit([r for r in rows if r.source != source], calibrated=False)
        for r in rows:
            if r.source == source and (answer := inner.predict(r)) is not None:
                assert r.rate is not None
                held.setdefault(answer.kind, []).append(answer.log_rate - math.log(r.rate))
    return Transfer(rows, weights, log_efficiency, calibrate(held))


def calibrate(errors: Mapping[str, Iterable[float]]) -> dict[str, float]:
    """The 90% quantile of |error| per kind (grouped-fold errors); 1.0 (a factor of e) where a
    kind was never seen."""
    out = {}
    for kind in KINDS:
        values = np.abs(np.array(list(errors.get(kind, ())), dtype=float))
        out[kind] = float(np.quantile(values, QUANTILE)) if values.size >= 10 else 1.0
    return out
