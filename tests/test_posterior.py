"""A job's throughput model conditioned on what was measured of it (core/posterior.py)."""

from __future__ import annotations

import math
import random

from hypothesis import given
from hypothesis import strategies as st

from berth.core.posterior import Measured, condition
from berth.core.prediction import Key, Prediction
from berth.core.provenance import measured, predicted
from berth.core.tables import read
from berth.simulator.truth import GroundTruth

COUNTS = (1, 2, 3, 4, 6, 8, 12, 16)


def prior(rates: dict[Key, float], uncertainty: float = 0.3) -> dict[Key, Prediction]:
    return {
        k: Prediction(predicted(r, "samples/s", "test", uncertainty), measured(300, "W", "test"))
        for k, r in rates.items()
    }


def rate(p: dict[Key, Prediction], key: Key) -> float:
    return p[key].throughput.value


def noisy(true: float, rng: random.Random, n: int, spread: float = 0.05) -> tuple[float, ...]:
    return tuple(true * math.exp(rng.gauss(0, spread)) for _ in range(n))


def linear(scale: float, types: tuple[str, ...] = ("a100", "t4")) -> dict[Key, float]:
    return {(t, c): scale * c for t in types for c in COUNTS}


def test_without_measurements_the_prior_is_returned_unchanged() -> None:
    p = prior(linear(10.0))
    assert condition(p, []) == p


def test_repeated_noisy_measurements_converge_to_the_true_rate_where_measured() -> None:
    p, rng = prior(linear(10.0)), random.Random(1)
    true = 17.0 * 4  # the job is 1.7x faster than predicted
    errors = [
        abs(rate(condition(p, [Measured("a100", 4, noisy(true, rng, n))]), ("a100", 4)) / true - 1)
        for n in (1, 4, 16, 64)
    ]
    assert errors[-1] < 0.02
    assert errors[-1] < errors[0]


def test_measuring_several_counts_converges_to_the_true_curve_between_them() -> None:
    """Predicted linear scaling; the job really scales as c^0.8 and is 1.5x faster at one
    device. Measured at 1, 2, 4, 8 and 16: every count in between is within 5 %."""
    p, rng = prior(linear(10.0)), random.Random(2)
    truth = {c: 15.0 * c**0.8 for c in COUNTS}
    seen = [Measured("a100", c, noisy(truth[c], rng, 20)) for c in (1, 2, 4, 8, 16)]
    post = condition(p, seen)
    for c in COUNTS:
        assert abs(rate(post, ("a100", c)) / truth[c] - 1) < 0.05, c


def test_the_uncertainty_shrinks_with_measurements() -> None:
    p, rng = prior(linear(10.0)), random.Random(3)
    spreads = []
    for n in (1, 10, 100):
        post = condition(p, [Measured("a100", 2, noisy(20.0, rng, n))])
        spread = post[("a100", 2)].throughput.provenance.uncertainty
        assert spread is not None
        spreads.append(spread)
    assert spreads[0] < 0.3  # the prior's
    assert spreads == sorted(spreads, reverse=True)


def test_a_prediction_2x_off_is_corrected_by_two_measurements() -> None:
    p, rng = prior(linear(10.0), uncertainty=0.2), random.Random(4)
    true = 2 * 10.0 * 4
    post = condition(p, [Measured("a100", 4, noisy(true, rng, 2, spread=0.02))])
    assert abs(rate(post, ("a100", 4)) / true - 1) < 0.05
    assert rate(post, ("t4", 4)) > 1.3 * rate(p, ("t4", 4))  # other types move too


@given(st.floats(1e-6, 1e6), st.sampled_from(COUNTS))
def test_a_single_noisy_point_never_moves_other_types_beyond_the_priors_interval(
    seen: float, count: int
) -> None:
    uncertainty = 0.3
    p = prior(linear(10.0), uncertainty)
    post = condition(p, [Measured("a100", count, (seen,))])
    bound = 1.645 * math.log1p(uncertainty)  # the prior's 90 % interval, in log rate
    for c in COUNTS:
        moved = math.log(rate(post, ("t4", c)) / rate(p, ("t4", c)))
        assert abs(moved) <= bound


def test_on_recorded_rates_two_measured_counts_improve_the_others() -> None:
    """Recorded: the measured tables' resnet50 curve on t4 as the truth; the prior is the
    a100 curve of the same family scaled by the types' single-device ratio of another family
    (bert), as a spec-ratio predictor would guess. Measuring 1 and the most devices brings
    every other count closer to what was measured."""
    truth = GroundTruth(*read())
    counts = [c for c in truth.counts("resnet50", "t4") if c in truth.counts("resnet50", "a100")]
    assert len(counts) >= 4

    def real(family: str, t: str, c: int) -> float:
        found = truth.throughput(family, t, c, 128)
        assert found is not None
        return found.value

    ratio = real("bert", "t4", 1) / real("bert", "a100", 1)
    p = prior({("t4", c): ratio * real("resnet50", "a100", c) for c in counts})
    rng = random.Random(5)
    ends = (counts[0], counts[-1])
    post = condition(p, [Measured("t4", c, noisy(real("resnet50", "t4", c), rng, 5)) for c in ends])
    for c in counts:
        if c in ends:
            continue
        before = abs(math.log(rate(p, ("t4", c)) / real("resnet50", "t4", c)))
        after = abs(math.log(rate(post, ("t4", c)) / real("resnet50", "t4", c)))
        assert after < before, c
