"""The retraining loop: measured records join the shipped tables, a candidate model is trained,
and it replaces the current model only if it is not worse on rows neither trained on.

The held-out slice is the shipped tables' own test split (the shipped model never saw it) plus
the same fraction of the new records. Drift is the current model's throughput error on all the
new records: how far the cluster has moved from what the model believes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from berth.core import tables
from berth.core.profile import PowerRecord, ProfileRecord
from berth.recommender import dataset, evaluation


def power_records(records: Sequence[ProfileRecord]) -> list[PowerRecord]:
    """Measured power as training rows: the fraction of its default TDP a device drew."""
    return [
        PowerRecord(
            family=r.family,
            accelerator=r.accelerator,
            batch_size=r.batch_size,
            watts=r.watts_per_device,
            power_limit_w=dataset.variant_of(r.accelerator).tdp_w,
            runs=1,
            source=r.source,
        )
        for r in records
        if r.watts_per_device is not None and r.count == 1
    ]


@dataclass(frozen=True)
class Data:
    train: dataset.Rows
    held_out: dataset.Rows
    new: dataset.Rows  # every new record's rows, for drift
    digest: str


def data(new: Sequence[ProfileRecord], test_fraction: float, seed: int) -> Data:
    split = dataset.split

    records, power = tables.read()
    shipped = dataset.build(records, power)
    new_power = power_records(new)
    fresh = dataset.build(new, new_power)
    rest, test = split(len(shipped), test_fraction, seed)
    parts = [(shipped.subset(rest), shipped.subset(test))]
    if len(fresh):
        new_rest, new_test = split(len(fresh), test_fraction, seed)
        parts.append((fresh.subset(new_rest), fresh.subset(new_test)))
    train, held = parts[0]
    for more_train, more_held in parts[1:]:
        train, held = dataset.concat(train, more_train), dataset.concat(held, more_held)
    return Data(train, held, fresh, dataset.digest([*records, *new], [*power, *new_power]))


POWER_SLACK = 0.02  # the held-out power rows are few (Zeus's, and what was measured): 2 points


def decide(current: dict[str, Any], candidate: dict[str, Any]) -> tuple[bool, str]:
    """Promote only when the candidate's held-out throughput error is not above the current's
    and its power error, where both have one, is not above it by more than POWER_SLACK."""
    a, b = current["throughput_mape"], candidate["throughput_mape"]
    if b > a:
        return False, f"candidate throughput MAPE {b:.1%} is worse than current {a:.1%}"
    pa, pb = current.get("power_mape"), candidate.get("power_mape")
    if pa is not None and pb is not None and pb > pa + POWER_SLACK:  # NaN compares False
        return False, f"candidate power MAPE {pb:.1%} is worse than current {pa:.1%}"
    return True, f"candidate throughput MAPE {b:.1%} <= current {a:.1%}"


Predict = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def compare(current: Predict, candidate: Predict, d: Data) -> dict[str, Any]:
    now = evaluation.held_out(current, d.held_out)
    new = evaluation.held_out(candidate, d.held_out)
    promote, why = decide(now, new)
    drift = evaluation.mape(current(d.new.x)[0][:, 0], d.new.y[:, 0]) if len(d.new) else None
    return {
        "promote": promote,
        "why": why,
        "held_out_rows": len(d.held_out),
        "new_rows": len(d.new),
        "drift_throughput_mape": drift,
        "current": now,
        "candidate": new,
    }


def write_report(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
