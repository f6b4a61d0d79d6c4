"""Training is seeded and its ONNX export answers as torch does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from berth.core import tables
from berth.recommender import dataset, train
from berth.recommender.model import load

TINY = train.Hyperparameters(members=2, hidden=16, epochs=5, patience=5)


@pytest.fixture(scope="module")
def rows() -> dataset.Rows:
    records, power = tables.read()
    return dataset.build(records[::10], power)


def test_the_same_seed_trains_the_same_model(rows: dataset.Rows) -> None:
    first, second = train.fit(rows, TINY), train.fit(rows, TINY)
    np.testing.assert_array_equal(first.predict(rows.x)[0], second.predict(rows.x)[0])


def test_the_onnx_model_answers_as_torch_does(rows: dataset.Rows, tmp_path: Path) -> None:
    trained = train.fit(rows, TINY)
    path = tmp_path / "m.onnx"
    digest = train.export(trained, path, {"data_sha256": "test"}, rows.x)
    model = load(path)
    assert model.sha256 == digest and model.metadata["data_sha256"] == "test"
    got_mean, got_std = model.infer(rows.x)
    want_mean, want_std = trained.predict(rows.x)
    np.testing.assert_allclose(got_mean, want_mean, atol=1e-5)
    np.testing.assert_allclose(got_std, want_std * trained.interval_scale, atol=1e-5)


def test_power_is_never_predicted_above_tdp(rows: dataset.Rows) -> None:
    mean, _ = train.fit(rows, TINY).predict(rows.x * 50)  # far outside the data
    assert (mean[:, 1] <= 0).all()  # log(W / TDP)


def test_the_shipped_model_names_the_data_it_was_trained_on() -> None:
    records, power = tables.read()
    assert load().metadata["data_sha256"] == dataset.digest(records, power)
