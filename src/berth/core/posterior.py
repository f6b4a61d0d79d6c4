"""A job's own throughput model: the recommender's predictions as the prior, conditioned on the
rates measured while the job ran. Pure.

No dataset knows a user's job, so what it does on its own devices is the best evidence there
is. The model is in the log of the ratio measured / predicted (the prior's error), a Gaussian
process over the job's (type, count) candidates:

    error(t, c) = job + type(t) + scaling(t, log2 c)

    k((t, c), (t', c')) = s_job^2 + [t = t'] (s_type^2 + s_scale^2 exp(-(log2 c - log2 c')^2 / 2))

One measurement moves every candidate (the job is faster or slower than predicted everywhere),
its own type's more, and counts near the measured one most (a length scale of a factor of
two). The three variances split the prior's own (the recommender's relative uncertainty) in
JOB_SHARE, TYPE_SHARE and SCALE_SHARE. A measurement's noise is NOISE per scrape window
(MODELLED: the spread of a rate over one window of real step times), and m measurements of one
(type, count) count as their mean with noise NOISE^2 / m.

Robust to a wild point: each group's mean error is clipped to CLIP prior standard deviations
times its number of measurements, so one noisy window moves no other type by more than
JOB_SHARE * CLIP sigma (inside the prior's interval), while agreeing measurements of a real 2x
error are taken whole from the second on.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from berth.core.prediction import Key, Prediction
from berth.core.provenance import Figure, Origin, Provenance

JOB_SHARE, TYPE_SHARE, SCALE_SHARE = 0.5, 0.25, 0.25
NOISE = 0.05  # MODELLED: relative spread of one scrape window's rate
# MODELLED: the spread of a window of another job of the same model and batch (a sweep's
# trials, a model trained again), whose data and settings differ; a new job's prior is
# conditioned on those windows with this noise.
KIN_NOISE = 0.15
KIN_WINDOWS = 16  # the latest kept per (model, batch, type, count)
CLIP = 2.0
DEFAULT_UNCERTAINTY = 0.5  # a prior that states none (a fallback's)


@dataclass(frozen=True)
class Measured:
    """What the job's progress counter said of one (type, count): samples/s over each window."""

    type: str
    count: int
    rates: tuple[float, ...]


def _sigma(p: Prediction) -> float:
    u = p.throughput.provenance.uncertainty
    return math.log1p(DEFAULT_UNCERTAINTY if u is None else max(u, 0.01))


class Prior:
    """A job's predictions arranged once, to be conditioned every period on what was
    measured by then (the operator and the simulator keep one per job)."""

    def __init__(self, predictions: Mapping[Key, Prediction]) -> None:
        self.predictions = dict(predictions)
        self.keys = sorted(self.predictions)
        self.s2 = statistics.median([_sigma(p) for p in self.predictions.values()] or [0.0]) ** 2
        self.codes: dict[str, int] = {}
        self.types = np.array([self.codes.setdefault(t, len(self.codes)) for t, _ in self.keys])
        self.logs = np.log2([c for _, c in self.keys]) if self.keys else np.zeros(0)

    def _kernel(
        self, types: np.ndarray, logs: np.ndarray, at_t: np.ndarray, at_l: np.ndarray
    ) -> np.ndarray:
        same = types[:, None] == at_t[None, :]
        scale = np.exp(-((logs[:, None] - at_l[None, :]) ** 2) / 2.0)
        out: np.ndarray = self.s2 * (JOB_SHARE + same * (TYPE_SHARE + SCALE_SHARE * scale))
        return out

    def condition(
        self, measured: Sequence[Measured], noise: float = NOISE
    ) -> dict[Key, Prediction]:
        """Every candidate, its throughput conditioned on `measured`; its uncertainty the
        posterior's. Measurements of candidates the prior lacks still inform the others."""
        merged: dict[Key, tuple[float, ...]] = {}
        for g in measured:
            if all(r > 0 and math.isfinite(r) for r in g.rates):
                merged[(g.type, g.count)] = merged.get((g.type, g.count), ()) + g.rates
        groups = [(k, rates) for k, rates in sorted(merged.items()) if rates]
        if not groups or not self.keys:
            return dict(self.predictions)
        s = math.sqrt(self.s2)
        errors = []
        for (t, c), rates in groups:
            base = self.predictions.get((t, c)) or _nearest(self.predictions, t, c)
            err = sum(math.log(r) for r in rates) / len(rates) - math.log(base.throughput.value)
            bound = CLIP * s * len(rates)
            errors.append(min(max(err, -bound), bound))
        codes = dict(self.codes)
        at_t = np.array([codes.setdefault(t, len(codes)) for (t, _), _ in groups])
        at_l = np.log2([c for (_, c), _ in groups])
        gram = self._kernel(at_t, at_l, at_t, at_l)
        gram[np.diag_indices_from(gram)] += [noise**2 / len(rates) for _, rates in groups]
        cross = self._kernel(self.types, self.logs, at_t, at_l)
        solved = np.linalg.solve(gram, np.column_stack([np.array(errors), cross.T]))
        factors = np.exp(cross @ solved[:, 0]).tolist()
        var = self.s2 - (cross * solved[:, 1:].T).sum(axis=1)
        spreads = np.expm1(np.sqrt(np.maximum(var, 0.0))).tolist()
        n = sum(len(rates) for _, rates in groups)
        details: dict[str, str] = {}
        out = {}
        for k, factor, spread in zip(self.keys, factors, spreads, strict=True):
            p = self.predictions[k]
            was = p.throughput.provenance.detail
            if was not in details:
                details[was] = f"{was}, conditioned on {n} measured rates"
            figure = Figure(
                p.throughput.value * factor,
                p.throughput.unit,
                Provenance(Origin.PREDICTED, details[was], spread),
            )
            out[k] = Prediction(figure, p.device_watts)
        return out


def condition(
    prior: Mapping[Key, Prediction], measured: Sequence[Measured], noise: float = NOISE
) -> dict[Key, Prediction]:
    """`prior` conditioned on `measured` (see Prior.condition)."""
    return Prior(prior).condition(measured, noise)


def _nearest(prior: Mapping[Key, Prediction], type_id: str, count: int) -> Prediction:
    same = [k for k in prior if k[0] == type_id] or list(prior)
    return prior[min(same, key=lambda k: (abs(math.log2(k[1] / count)), k))]
