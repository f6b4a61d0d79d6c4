"""What the recommender answers for a job on (type, count): throughput moved from the most alike
measurement (transfer.py) where the measured tables hold the family, the MLP's (model.py)
where they do not; power per device is the MLP's either way. The HTTP API and `berth simulate`
ask this one predictor."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

from berth.core import tables
from berth.core.catalog import Variant
from berth.core.prediction import Prediction
from berth.core.profile import ProfileRecord
from berth.core.provenance import predicted
from berth.recommender import transfer
from berth.recommender.model import Model
from berth.recommender.transfer import Row

# Answers kept before the memo starts again: a sweep's or a simulation's distinct questions
# are a few hundred; a bound this small keeps the collector's full passes short (with 65,536
# the longest pause seen was 0.2 s).
ANSWERS = 4096

# (family, global batch, variant id, count, tensor precision, framework): what an answer is of.
_Key = tuple[str, int, str, int, str, str]


def shipped_records() -> list[ProfileRecord]:
    return tables.read()[0] + tables.read_transfer()


class Served:
    def __init__(self, model: Model, moved: transfer.Transfer) -> None:
        self.model = model
        self.transfer = moved
        self.name = f"transfer from the measured tables, else {model.version}"
        # Answers are a pure function of the question and this (immutable) pair of models, and
        # callers ask the same few questions again and again (a sweep's jobs, the operator's
        # every cycle): a repeated one costs a lookup. A new model file makes a new Served.
        self._answers: dict[_Key, Prediction] = {}

    def predict_many(
        self,
        rows: Sequence[tuple[str, int, Variant, int]],
        precision: str = "fp32",
        framework: str = "pytorch",
    ) -> list[Prediction]:
        """(family, global batch, variant, count) per candidate; the MLP in one call for the
        questions not answered before."""
        tensor = "fp16" if precision in transfer.TENSOR else "fp32"
        answers = self._answers
        keys = [(f, b, v.id, c, tensor, framework) for f, b, v, c in rows]
        new = [i for i, k in enumerate(keys) if k not in answers]
        if new:
            if len(answers) + len(new) > ANSWERS:
                answers.clear()
            fresh = self._predict([rows[i] for i in new], tensor, framework)
            answers.update(zip((keys[i] for i in new), fresh, strict=True))
        return [answers[k] for k in keys]

    def _predict(
        self, rows: Sequence[tuple[str, int, Variant, int]], tensor: str, framework: str
    ) -> list[Prediction]:
        out = []
        for (family, batch, variant, count), mlp in zip(
            rows, self.model.predict_many(rows), strict=True
        ):
            query = Row(family, batch, variant.type, count, tensor, framework)
            answer = self.transfer.predict(query, variant)
            if answer is None:
                out.append(mlp)
                continue
            ref = answer.reference
            detail = f"transfer {answer.kind}" + (
                f" from {ref.type} x{ref.count} batch {ref.batch} ({ref.source})"
                if ref is not None
                else " (roofline, efficiency from the tables)"
            )
            rate = predicted(math.exp(answer.log_rate), "samples/s", detail, answer.sd)
            out.append(Prediction(rate, mlp.device_watts))
        return out


@functools.cache
def _shipped_transfer() -> transfer.Transfer:
    """Fitted once per process: the shipped tables do not change under it."""
    return transfer.fit([Row.of(r) for r in shipped_records()])


def served(model: Model, records: Sequence[ProfileRecord] | None = None) -> Served:
    if records is None:
        return Served(model, _shipped_transfer())
    return Served(model, transfer.fit([Row.of(r) for r in records]))
