"""Every figure berth shows says where it came from: measured, predicted or modelled."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Origin(StrEnum):
    MEASURED = "measured"
    PREDICTED = "predicted"
    MODELLED = "modelled"


@dataclass(frozen=True)
class Provenance:
    """Where one figure came from.

    measured: `detail` names the source (data set, exporter, profile run).
    predicted: `detail` names the model version; `uncertainty` is its relative std deviation.
    modelled: `detail` is the formula, and `inputs` the figures it was computed from.
    """

    origin: Origin
    detail: str
    uncertainty: float | None = None
    inputs: tuple[Figure, ...] = ()

    def describe(self) -> str:
        text = f"{self.origin.value} ({self.detail})"
        if self.uncertainty is not None:
            text += f" ±{self.uncertainty:.0%}"
        return text


@dataclass(frozen=True)
class Figure:
    value: float
    unit: str
    provenance: Provenance

    def describe(self) -> str:
        """One line a person can read: value, unit and origin, down to the measured and
        predicted inputs of a modelled figure."""
        return f"{self.value:.6g} {self.unit}, {self._origin()}"

    def _origin(self) -> str:
        text = self.provenance.describe()
        if self.provenance.inputs:
            parts = "; ".join(f"{f.unit}: {f._origin()}" for f in self.provenance.inputs)
            text += f" from [{parts}]"
        return text


def measured(value: float, unit: str, source: str) -> Figure:
    return Figure(value, unit, Provenance(Origin.MEASURED, source))


def predicted(value: float, unit: str, model_version: str, uncertainty: float) -> Figure:
    return Figure(value, unit, Provenance(Origin.PREDICTED, model_version, uncertainty))


def modelled(value: float, unit: str, formula: str, *inputs: Figure) -> Figure:
    return Figure(value, unit, Provenance(Origin.MODELLED, formula, inputs=inputs))
