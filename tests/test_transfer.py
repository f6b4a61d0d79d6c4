"""The transfer predictor (recommender/transfer.py): a measured rate moved by datasheet ratios
to the asked (type, count), corrected by what such moves got wrong, with intervals from moves
between data sets."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from berth.core.catalog import DEFAULT_VARIANT, Variant
from berth.core.prediction import Prediction
from berth.core.provenance import predicted
from berth.recommender import served, transfer
from berth.recommender.served import Served
from berth.recommender.transfer import Row, fit, prior


def row(type_: str = "t4", count: int = 1, rate: float | None = 100.0, **kw: object) -> Row:
    fields: dict[str, object] = {"family": "resnet50", "batch": 64, "source": "a"} | kw
    return Row(type=type_, count=count, rate=rate, **fields)  # type: ignore[arg-type]


def test_the_prior_moves_a_rate_by_the_fp32_peaks_and_the_counts() -> None:
    got = prior(row("a100", count=2, rate=None), row("t4", count=1, rate=100.0))
    assert math.exp(got) == pytest.approx(100.0 * 19.5 / 8.1 * 2)


def test_mixed_precision_moves_by_the_tensor_peaks() -> None:
    got = prior(row("a100", rate=None, precision="fp16"), row("t4", precision="fp16"))
    assert math.exp(got) == pytest.approx(100.0 * 312 / 65)


@pytest.mark.parametrize(
    ("query", "pool"),
    [
        (row("t4", rate=None), [row("v100", precision="fp16"), row("v100", count=8)]),
        (row("t4", rate=None), [row("v100", framework="tensorflow"), row("p100")]),
        (row("t4", count=2, rate=None), [row("a100"), row("t4", count=4)]),
        (row("a40", rate=None), [row("k80"), row("a6000")]),
        (row("a40", count=2, rate=None), [row("a6000", count=8), row("a6000", count=2)]),
        (row("a40", rate=None), [row("a6000", batch=1024), row("a6000", batch=128)]),
    ],
    ids=["precision-first", "then-framework", "then-its-own-type", "then-the-nearest-datasheet",
         "then-the-nearest-count", "then-the-nearest-batch"],
)  # fmt: skip
def test_the_reference_is_the_most_alike_measurement(query: Row, pool: list[Row]) -> None:
    model = transfer.Transfer(pool, np.zeros(len(transfer.Z_NAMES)), 0.0, {})
    assert model.reference(query) is pool[1]


def test_a_family_with_no_measurement_and_no_flops_gets_no_answer() -> None:
    model = fit([row("t4"), row("a100", rate=250.0)])
    assert model.predict(row("t4", rate=None, family="ncf")) is None


def test_a_family_with_flops_and_no_measurement_gets_the_calibrated_roofline() -> None:
    model = fit([row("t4"), row("a100", rate=250.0)])
    answer = model.predict(row("a100", rate=None, family="vgg16"))
    assert answer is not None and answer.kind == "roofline" and answer.reference is None
    expected = transfer.roofline(row("a100", rate=None, family="vgg16"))
    assert expected is not None
    assert answer.log_rate == pytest.approx(expected + model.log_efficiency)


def test_the_correction_learns_what_another_framework_gets_wrong() -> None:
    """TensorFlow rates twice PyTorch's on the same types: a PyTorch job moved from a
    TensorFlow measurement is corrected by about half."""
    rows = [
        row(t, rate=DEFAULT_VARIANT[t].fp32_tflops * (2.0 if fw == "tensorflow" else 1.0),
            family=f, framework=fw, source=fw)
        for t in ("t4", "v100", "a100", "p100", "k80", "a6000")
        for f in ("resnet50", "vgg16")
        for fw in ("pytorch", "tensorflow")
    ]  # fmt: skip
    model = fit([r for r in rows if not (r.framework == "pytorch" and r.family == "vgg16")])
    answer = model.predict(row("v100", rate=None, family="vgg16"))
    assert answer is not None and answer.reference is not None
    assert answer.reference.framework == "tensorflow"
    truth = math.log(DEFAULT_VARIANT["v100"].fp32_tflops)
    assert (
        abs(answer.log_rate - truth)
        < 0.1
        < abs(prior(row("v100", rate=None, family="vgg16"), answer.reference) - truth)
    )


def test_intervals_are_the_held_out_error_quantile_per_kind() -> None:
    errors = {"other-type": -np.linspace(0.0, 1.0, 101)}  # under-predictions count alike
    q = transfer.calibrate(errors)
    assert q["other-type"] == pytest.approx(transfer.QUANTILE)
    assert q["same-type"] == 1.0  # never seen: a factor of e either way


class CountingMlp:
    """The MLP's part of a Served predictor: a constant answer, counting the rows asked."""

    version = "counting"

    def __init__(self) -> None:
        self.rows = 0

    def predict_many(self, rows: Sequence[tuple[str, int, Variant, int]]) -> list[Prediction]:
        self.rows += len(rows)
        figure = predicted(1.0, "samples/s", self.version, 0.1)
        return [Prediction(figure, figure) for _ in rows]


def test_a_repeated_question_is_answered_from_memory() -> None:
    mlp = CountingMlp()
    predictor = Served(mlp, fit([row("t4"), row("a100", rate=250.0)]))  # type: ignore[arg-type]
    ask = [("resnet50", 64, DEFAULT_VARIANT["v100"], 1), ("resnet50", 64, DEFAULT_VARIANT["t4"], 2)]
    first = predictor.predict_many(ask)
    again = predictor.predict_many([ask[1], ask[0]])
    assert again == [first[1], first[0]] and mlp.rows == 2


def test_the_memory_of_answers_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(served, "ANSWERS", 3)
    mlp = CountingMlp()
    predictor = Served(mlp, fit([row("t4")]))  # type: ignore[arg-type]
    for batch in range(1, 6):
        predictor.predict_many([("resnet50", batch, DEFAULT_VARIANT["t4"], 1)])
    assert len(predictor._answers) <= 3
    predictor.predict_many([("resnet50", 1, DEFAULT_VARIANT["t4"], 1)])  # forgotten: asked again
    assert mlp.rows == 6


def test_frameworks_no_measurement_has_are_remembered_as_one() -> None:
    # The caller names the framework: unknown ones tie every row alike, so they share one
    # cached tie instead of growing the cache one entry each.
    model = fit([row("t4"), row("a100", rate=250.0)])
    for i in range(50):
        model.predict(row("v100", rate=None, framework=f"framework-{i}"))
    assert len(model._families["resnet50"]._tied) == 1
