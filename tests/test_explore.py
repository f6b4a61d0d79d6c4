"""Step 5 of the elastic policy (placement/explore.py): a trial at an uncertain count where it
could pay, within its stated cost, and the way back once it is measured; and how the operator
records a trial and reads it back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from berth.core.posterior import Measured
from berth.core.prediction import Prediction
from berth.core.provenance import measured, predicted
from berth.core.snapshot import build_snapshot
from berth.operator import resizing
from berth.operator.measurements import JobProgress
from berth.placement.elastic import Resize, RunningJob, Settings, rebalance
from berth.placement.explore import trial
from tests.test_elastic import job, node

EXPLORING = Settings(explore=True)
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def rate(samples_per_s: float, uncertainty: float) -> Prediction:
    return Prediction(
        predicted(samples_per_s, "samples/s", "m", uncertainty), measured(300.0, "W", "t")
    )


def curve(at_two: float = 175.0, u: float = 0.3) -> dict[int, Prediction]:
    """One device measured (100/s, 3 J/sample); two predicted at `at_two`/s (175: 3.4 J/sample,
    too much worse to grow into for energy, unless it is 30 % faster than predicted)."""
    return {1: rate(100.0, 0.05), 2: rate(at_two, u), 3: rate(240.0, u), 4: rate(300.0, u)}


def energy_job(**kw: Any) -> RunningJob:
    fields: dict[str, Any] = {
        "remaining_samples": 1e7,  # 100,000 s left at one device
        "deadline_in_s": None,
        "last_resize_s": -1e9,
        "predictions": curve(),
        "measured": frozenset({1}),
    } | kw
    shares = kw.pop("shares", (("n0", 1),))
    fields.pop("shares", None)
    return RunningJob("j", job(1, 4, objective={"type": "energy"}), "a100", shares, **fields)


SNAP = build_snapshot([node("n0")], [])


def test_a_count_that_could_suit_the_objective_better_where_it_is_uncertain_is_tried() -> None:
    (r,) = rebalance(SNAP, [energy_job()], [], 0.0, EXPLORING)
    assert (r.to_count, r.trial) == (2, True)
    assert r.reason.startswith("measure x2: its rate there is uncertain (+/-30%)")
    assert "within 2% of the 27.8 h left" in r.reason


def test_nothing_is_tried_with_exploring_off() -> None:
    assert rebalance(SNAP, [energy_job()], [], 0.0, Settings(explore=False)) == []


def test_nothing_is_tried_before_the_count_held_is_measured() -> None:
    assert rebalance(SNAP, [energy_job(measured=frozenset())], [], 0.0, EXPLORING) == []


def test_a_job_tried_at_one_count_is_not_tried_at_another() -> None:
    r = energy_job(measured=frozenset({1, 3}))
    assert rebalance(SNAP, [r], [], 0.0, EXPLORING) == []


def test_a_trial_costing_more_than_its_budget_of_the_time_left_is_not_made() -> None:
    # 2 restarts of 60 s against 2 % of 5,000 s
    r = energy_job(remaining_samples=5e5)
    assert rebalance(SNAP, [r], [], 0.0, EXPLORING) == []


def test_a_trial_that_could_cost_a_deadline_the_job_meets_is_not_made() -> None:
    r = energy_job(deadline_in_s=100_000.0 + 60.0)  # meets it, with 60 s to spare
    assert rebalance(SNAP, [r], [], 0.0, EXPLORING) == []


def test_a_gain_the_prediction_alone_shows_is_no_trial() -> None:
    r = energy_job(predictions=curve(at_two=230.0))  # 2.6 J/sample: better as predicted
    assert trial(r, 1, 4, 60.0, 900.0, 0.02, 0.05) is None


def test_a_count_predicted_with_little_uncertainty_is_not_tried() -> None:
    r = energy_job(predictions=curve(u=0.02))
    assert rebalance(SNAP, [r], [], 0.0, EXPLORING) == []


def on_trial(at_two: float) -> RunningJob:
    return energy_job(shares=(("n0", 1), ("n0", 1)), predictions=curve(at_two, 0.05),
                      measured=frozenset({1, 2}), trial_from=1)  # fmt: skip


def test_a_measured_trial_goes_back_when_the_count_before_suits_the_objective_better() -> None:
    (r,) = rebalance(SNAP, [on_trial(at_two=150.0)], [], 0.0, EXPLORING)  # 4 J/sample: worse
    assert (r.to_count, r.trial) == (1, False)
    assert r.reason == "measured x2: x1 suits energy better"


def test_a_measured_trial_that_paid_stays() -> None:
    assert rebalance(SNAP, [on_trial(at_two=250.0)], [], 0.0, EXPLORING) == []


STATUS = {"placement": {"type": "a100", "count": 1, "nodes": [{"name": "n0", "count": 1}]}}


def test_the_operator_records_a_trial_in_the_jobs_resizes() -> None:
    r = Resize("uid", "a100", (("n0", 1), ("n0", 1)), 1, 2, "measure x2: ...", "+93%", True)
    _, history = resizing.resized(STATUS, r, NOW)
    assert history[-1]["trial"] is True


def test_the_operator_reads_a_trial_back_with_the_counts_measured() -> None:
    r = Resize("uid", "a100", (("n0", 1), ("n0", 1)), 1, 2, "measure x2: ...", "+93%", True)
    placement, history = resizing.resized(STATUS, r, NOW)
    status = {"placement": placement, "resizes": history}
    progress = JobProgress(1e6, (Measured("a100", 1, (100.0,)), Measured("a100", 2, (150.0,))),
                           NOW)  # fmt: skip
    found = {("a100", c): p for c, p in curve().items()}
    running = resizing.running_job("uid", job(1, 4), status, found, NOW, progress)
    assert (running.trial_from, running.measured) == (1, frozenset({1, 2}))
