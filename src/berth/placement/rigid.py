"""The frame the baselines share: the user's own device count, one type, all workers or none.

A baseline is a rule for the gang (which nodes) and a rule for the type (which option wins);
the Plan it returns has the same shape as berth's, so the simulator treats all alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from berth.core.job import AcceleratorJob
from berth.core.prediction import Prediction
from berth.core.snapshot import ClusterSnapshot, NodeState
from berth.placement.nodes import Gang, gang_picker, why_not
from berth.placement.plan import (
    Option,
    Plan,
    deadline_budget,
    make_option,
    min_memory_mib,
    worker_need,
)

GangRule = Callable[[list[NodeState], int], Gang | None]


def packed(nodes: list[NodeState], count: int) -> Gang | None:
    """berth's own gang rule: fewest nodes, awake ones first."""
    return gang_picker(nodes)(count)


def rigid_plan(
    snapshot: ClusterSnapshot,
    job: AcceleratorJob,
    predictions: Mapping[tuple[str, int], Prediction],
    now: datetime,
    gang_rule: GangRule,
    rank: Callable[[Option], tuple[float, ...]],
) -> Plan:
    """The lowest-ranked option among the types that can take the user's count now."""
    count = job.accelerators.count.max
    need, min_mib = worker_need(job), min_memory_mib(job)
    budget = deadline_budget(job, now)
    types = sorted(t for t in snapshot.by_type if t is not None)
    options = []
    for type_id in types:
        prediction = predictions.get((type_id, count))
        if prediction is None or not job.accelerators.allows(type_id):
            continue
        of_type = snapshot.by_type[type_id]
        eligible = [n for n in of_type if why_not(n, type_id, need, min_mib) is None]
        gang = gang_rule(eligible, count)
        if gang is not None:
            options.append(make_option(job, type_id, gang, prediction, budget))
    if not options:
        return Plan(None, (), f"no allowed type has {count} devices free now")
    return Plan(min(options, key=lambda o: (*rank(o), o.type)), ())
