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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from berth.core.prediction import Key, Prediction
from berth.core.provenance import Figure, Origin, Provenance

JOB_SHARE, TYPE_SHARE, SCALE_SHARE = 0.5, 0.25, 0.25
NOISE = 0.05  # MODELLED: relative spread of one scrape window's rate
CLIP = 2.0
DEFAULT_UNCERTAINTY = 0.5  # a prior that states none (a fallback's)


@dataclass(frozen=True)
class Measured:
    """What the job's progress counter said of one (type, count): samples/s over each window."""

    type: str
    count: int
    rates: tuple[float, ...]

    @property
    def mean(self) -> float:
        return sum(self.rates) / len(self.rates)


def _sigma(p: Prediction) -> float:
    u = p.throughput.provenance.uncertainty
    return math.log1p(DEFAULT_UNCERTAINTY if u is None else max(u, 0.01))


def _kernel(a: Sequence[Key], b: Sequence[Key], s2: float) -> np.ndarray:
    ta = np.array([t for t, _ in a])[:, None]
    tb = np.array([t for t, _ in b])[None, :]
    la = np.log2([c for _, c in a])[:, None]
    lb = np.log2([c for _, c in b])[None, :]
    same = ta == tb
    scale = np.exp(-((la - lb) ** 2) / 2.0)
    out: np.ndarray = s2 * (JOB_SHARE + same * (TYPE_SHARE + SCALE_SHARE * scale))
    return out


def condition(
    prior: Mapping[Key, Prediction], measured: Sequence[Measured], noise: float = NOISE
) -> dict[Key, Prediction]:
    """Every candidate of `prior`, its throughput conditioned on `measured`; its uncertainty
    the posterior's. Measurements of candidates the prior lacks still inform the others."""
    merged: dict[Key, tuple[float, ...]] = {}
    for g in measured:
        if all(r > 0 and math.isfinite(r) for r in g.rates):
            merged[(g.type, g.count)] = merged.get((g.type, g.count), ()) + g.rates
    groups = [Measured(t, c, rates) for (t, c), rates in sorted(merged.items()) if rates]
    keys = sorted(prior)
    if not groups or not keys:
        return dict(prior)
    s2 = float(np.median([_sigma(prior[k]) for k in keys])) ** 2
    s = math.sqrt(s2)
    at: list[Key] = []
    errors = []
    for g in groups:
        base = prior.get((g.type, g.count))
        if base is None:  # no prior of its own: the nearest count of its type, else any
            base = _nearest(prior, g.type, g.count)
        at.append((g.type, g.count))
        err = float(np.mean(np.log(g.rates))) - math.log(base.throughput.value)
        bound = CLIP * s * len(g.rates)
        errors.append(min(max(err, -bound), bound))
    noise_var = np.array([noise**2 / len(g.rates) for g in groups])
    gram = _kernel(at, at, s2) + np.diag(noise_var)
    cross = _kernel(keys, at, s2)
    weights = np.linalg.solve(gram, np.array(errors))
    mean = cross @ weights
    var = s2 - np.einsum("ij,ji->i", cross, np.linalg.solve(gram, cross.T))
    n = sum(len(g.rates) for g in groups)
    out = {}
    for k, shift, v in zip(keys, mean, var, strict=True):
        p = prior[k]
        detail = f"{p.throughput.provenance.detail}, conditioned on {n} measured rates"
        figure = Figure(
            p.throughput.value * math.exp(float(shift)),
            p.throughput.unit,
            Provenance(Origin.PREDICTED, detail, math.expm1(math.sqrt(max(float(v), 0.0)))),
        )
        out[k] = replace(p, throughput=figure)
    return out


def _nearest(prior: Mapping[Key, Prediction], type_id: str, count: int) -> Prediction:
    same = [k for k in prior if k[0] == type_id] or list(prior)
    return prior[min(same, key=lambda k: (abs(math.log2(k[1] / count)), k))]
