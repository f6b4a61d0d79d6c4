"""A job late whatever it gets: the least energy within a bounded slowdown, pure.

Once no allocation can meet a job's deadline, the deadline no longer ranks anything, and an
energy objective alone would park the job on the one device that wastes least, however long
that takes (a deepspeech2 job due in 222 h ran 1,615 h on 2 T4s; berth's makespan was 9x
berth-rigid's). Its user still wants it soon, and its devices back:

    chosen = argmin J/sample(o)   over options o with  seconds(o) <= SLOWDOWN * min seconds

so a late job never runs more than SLOWDOWN times longer than the fastest option it has now,
and within that spends the least energy. On the default simulation this bound (2) met more
deadlines than the dual rule (least lateness within 2x the least J/sample): 120 against 110,
at 0.85x against 0.83x kube-default's energy (one run of `berth simulate`, before new jobs'
priors were conditioned on their kin's measurements).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
SLOWDOWN = 2.0


def least_energy_in_time(
    options: Sequence[T],
    joules_per_sample: Callable[[T], float],
    seconds: Callable[[T], float],
    slowdown: float = SLOWDOWN,
) -> T:
    fastest = min(seconds(o) for o in options)
    bounded = [o for o in options if seconds(o) <= slowdown * fastest]
    return min(bounded, key=lambda o: (joules_per_sample(o), seconds(o)))
