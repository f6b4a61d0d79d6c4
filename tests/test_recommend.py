"""Ranking: the deadline first, then the objective; each loser says why."""

from __future__ import annotations

from berth.core.job import Objective, ObjectiveKind
from berth.recommender.recommend import Candidate, rank
from tests.test_placement import pred

ENERGY = Objective(ObjectiveKind.ENERGY, 1.0)
TIME = Objective(ObjectiveKind.TIME, 0.0)
# a100 x4: 2000 samples/s at 4 x 300 W = 0.6 J/sample; t4 x2: 400 samples/s at 2 x 60 W = 0.3
CANDIDATES = [Candidate("a100", "a100", 4), Candidate("t4", "t4", 2)]
PREDICTIONS = [pred(2000, 300), pred(400, 60)]


def test_energy_ranks_by_joules_per_sample_and_says_why() -> None:
    ranked = rank(CANDIDATES, PREDICTIONS, ENERGY, 1_000_000, None)
    assert [r.candidate.type for r in ranked] == ["t4", "a100"]
    assert ranked[0].reason is None and ranked[1].reason == "0.6 J/sample vs 0.3"


def test_time_ranks_by_throughput() -> None:
    ranked = rank(CANDIDATES, PREDICTIONS, TIME, 1_000_000, None)
    assert [r.candidate.type for r in ranked] == ["a100", "t4"]


def test_a_candidate_that_misses_the_deadline_ranks_last() -> None:
    # 1e6 samples: a100 x4 in 500 s, t4 x2 in 2500 s; the deadline is 1000 s.
    ranked = rank(CANDIDATES, PREDICTIONS, ENERGY, 1_000_000, 1000)
    assert [(r.candidate.type, r.meets_deadline) for r in ranked] == [
        ("a100", True),
        ("t4", False),
    ]
    assert ranked[1].reason == "misses the deadline"
