"""The fallback predictor: a spec-ratio transfer from the measured tables, no learned model.

For a model family, a type and a count it takes the family's measured rate on a reference type
at that count (a100 when measured there, else the first measured type by name, at the measured
batch nearest the job's) and scales it by the ratio of FP32 peaks; power is a fixed fraction of
the variant's TDP. Both are labelled modelled (the reference itself stays measured). It is what
berth uses before a recommender model exists and when the recommender cannot be reached.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from berth.core.catalog import DEFAULT_VARIANT, Variant
from berth.core.prediction import Prediction
from berth.core.profile import ProfileRecord, Rate, nearest
from berth.core.provenance import Figure, measured, modelled

REFERENCE = "a100"
TDP_FRACTION = 0.8  # a busy training GPU draws most of its limit (Zeus: 0.5-0.9 of it)
NAME = "fallback: spec-ratio transfer"


class SpecTransfer:
    name = NAME

    def __init__(self, records: Iterable[ProfileRecord]) -> None:
        self._rates: dict[tuple[str, int], dict[str, list[Rate]]] = {}
        for r in records:
            by_type = self._rates.setdefault((r.family, r.count), {})
            by_type.setdefault(r.accelerator, []).append(Rate(r.batch_size, r.throughput, r.source))

    def predict(self, family: str, batch: int, variant: Variant, count: int) -> Prediction | None:
        by_type = self._rates.get((family, count))
        if not by_type:
            return None
        ref_type = REFERENCE if REFERENCE in by_type else min(by_type)
        rate = nearest(by_type[ref_type], batch)
        ref = DEFAULT_VARIANT[ref_type]
        source = measured(rate.samples_per_s, "samples/s", rate.source)
        ratio = variant.fp32_tflops / ref.fp32_tflops
        throughput = modelled(
            rate.samples_per_s * ratio,
            "samples/s",
            f"{ref_type} rate x FP32 peak {variant.fp32_tflops:g}/{ref.fp32_tflops:g}",
            source,
        )
        watts: Figure = modelled(
            variant.tdp_w * TDP_FRACTION, "W", f"TDP {variant.tdp_w:g} W x {TDP_FRACTION}"
        )
        return Prediction(throughput, watts)

    def predict_many(
        self, rows: Sequence[tuple[str, int, Variant, int]]
    ) -> list[Prediction | None]:
        return [self.predict(*row) for row in rows]
