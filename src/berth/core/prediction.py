"""What a predictor (the recommender, a fallback, the roofline) says of a job on a type."""

from __future__ import annotations

from dataclasses import dataclass

from berth.core.provenance import Figure

Key = tuple[str, int]  # (accelerator type, device count): what a prediction is of


@dataclass(frozen=True)
class Prediction:
    """What a predictor says of a job on `count` devices of one type."""

    throughput: Figure  # samples/s of the whole job
    device_watts: Figure  # average power per device (per node for cpu)
