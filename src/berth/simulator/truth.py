"""The simulator's ground truth: what a job really does on (type, count), from measurements only.

Throughput comes from the measured tables (ElasticFlow, Gavel, Pollux); a job runs at the rate
measured for its model family on that type and count, at the measured global batch nearest its
own (the source says which). A (family, type, count) nobody measured is not offered to the job.
Power per device is Zeus's measurement where Zeus ran that family on that type; elsewhere it is
modelled as the type's TDP times the fraction of the power limit Zeus measured for the family
(over every GPU it measured), and labelled modelled.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable

from berth.core.catalog import Variant
from berth.core.profile import PowerRecord, ProfileRecord, Rate, nearest
from berth.core.provenance import Figure, measured, modelled


class GroundTruth:
    def __init__(self, records: Iterable[ProfileRecord], power: Iterable[PowerRecord]) -> None:
        self._rates: dict[tuple[str, str, int], list[Rate]] = {}
        for r in records:
            key = (r.family, r.accelerator, r.count)
            self._rates.setdefault(key, []).append(Rate(r.batch_size, r.throughput, r.source))
        self._power = {(p.family, p.accelerator): p for p in power}
        fractions: dict[str, list[float]] = {}
        for p in self._power.values():
            fractions.setdefault(p.family, []).append(p.watts / p.power_limit_w)
        self._fraction = {f: statistics.mean(v) for f, v in fractions.items()}
        self._any_fraction = statistics.median(v for vs in fractions.values() for v in vs)

    def families(self) -> set[str]:
        return {family for family, _, _ in self._rates}

    def counts(self, family: str, type_id: str) -> list[int]:
        return sorted(c for f, t, c in self._rates if (f, t) == (family, type_id))

    def throughput(self, family: str, type_id: str, count: int, batch: int) -> Figure | None:
        rates = self._rates.get((family, type_id, count))
        if not rates:
            return None
        rate = nearest(rates, batch)
        note = "" if rate.batch == batch else f" (nearest measured batch to {batch})"
        return measured(rate.samples_per_s, "samples/s", rate.source + note)

    def device_watts(self, family: str, variant: Variant) -> Figure:
        found = self._power.get((family, variant.type))
        if found is not None:
            return measured(found.watts, "W", f"{found.source}, median of {found.runs} runs")
        fraction = self._fraction.get(family)
        basis = f"Zeus's mean for {family}" if fraction is not None else "Zeus's median"
        if fraction is None:
            fraction = self._any_fraction
        return modelled(
            variant.tdp_w * fraction,
            "W",
            f"TDP {variant.tdp_w:g} W of {variant.id} x {fraction:.2f} ({basis} power/limit)",
        )
