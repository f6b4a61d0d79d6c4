"""Predictions for a job's candidates, from the best source that answers.

1. The recommender (HTTP), for GPU candidates of a job that names its model and batch size.
2. When it cannot be reached: the spec-ratio fallback over the shipped measured tables.
3. Whatever is still missing (CPU nodes, HPC jobs, families nobody measured): the roofline
   estimate from datasheet peaks.

Every prediction keeps its provenance; `source` names where each candidate's came from and
`degraded` says why the recommender was not used, for the job's status. Pure apart from the
injected `ask`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from berth.core.catalog import CPU, DEFAULT_VARIANT, VARIANTS, CpuClass, Variant
from berth.core.job import AcceleratorJob
from berth.core.prediction import Key, Prediction
from berth.core.provenance import predicted
from berth.core.snapshot import ClusterSnapshot
from berth.placement.fallback import SpecTransfer
from berth.placement.roofline import Roofline, cpu_class
from berth.recommender.client import RecommenderRefused, RecommenderUnavailable

Ask = Callable[[dict[str, Any], list[dict[str, Any]]], dict[str, Any]]

ASKED_PRECISIONS = ("fp32", "tf32", "fp16", "bf16")  # the recommender's job.precision


@dataclass(frozen=True)
class Offer:
    """An allocation the cluster could hold for the job: what a predictor is asked about."""

    type: str
    device: Variant | CpuClass
    count: int


@dataclass(frozen=True)
class Predicted:
    predictions: dict[Key, Prediction]
    sources: dict[Key, str]
    degraded: str | None  # why the recommender's answer is missing, when it is


def devices(snapshot: ClusterSnapshot) -> dict[str, tuple[Variant | CpuClass, int]]:
    """Per type on usable nodes: the device (the first node's variant or CPU class) and how
    many there are (GPUs, or CPU nodes)."""
    out: dict[str, tuple[Variant | CpuClass, int]] = {}
    for node in snapshot.nodes:
        acc = node.accelerator
        if not node.usable or acc.type is None:
            continue
        if acc.type == CPU:
            device: Variant | CpuClass = cpu_class(node.cpu_class)
            n = 1
        else:
            device = VARIANTS[acc.variant] if acc.variant else DEFAULT_VARIANT[acc.type]
            n = node.allocatable.gpus
        first, total = out.get(acc.type, (device, 0))
        out[acc.type] = (first, total + n)
    return out


Devices = Mapping[str, tuple[Variant | CpuClass, int]]  # devices(snapshot)


def offers(job: AcceleratorJob, found: Devices) -> list[Offer]:
    """Every allowed (type, count) the cluster could ever hold (`found`: its devices); counts
    beyond the type's devices are not asked about."""
    count = job.accelerators.count
    out = []
    for type_id, (device, total) in sorted(found.items()):
        if not job.accelerators.allows(type_id):
            continue
        out += [Offer(type_id, device, n) for n in range(count.min, min(count.max, total) + 1)]
    return out


def _from_answer(answer: Mapping[str, Any]) -> dict[Key, Prediction]:
    version = str(answer.get("model", "recommender"))
    out = {}
    for r in answer.get("ranked") or ():
        unc = r.get("throughput_uncertainty")
        out[(str(r["type"]), int(r["count"]))] = Prediction(
            predicted(float(r["throughput"]), "samples/s", version, float(unc or 0.0)),
            predicted(float(r["watts_per_device"]), "W", version, float(unc or 0.0)),
        )
    return out


def predict(
    job: AcceleratorJob,
    rows: Sequence[Offer],
    ask: Ask | None,
    spec_transfer: SpecTransfer,
    roofline: Roofline,
    skipped: str = "no recommender configured",  # why, when `ask` is None
) -> Predicted:
    predictions: dict[Key, Prediction] = {}
    sources: dict[Key, str] = {}
    degraded = None
    w = job.workload
    gpu_rows = [c for c in rows if c.type != CPU and isinstance(c.device, Variant)]
    if w.model is not None and w.batch_size is not None and gpu_rows:
        answered = False
        if ask is None:
            degraded = skipped
        else:
            body = {
                "model": w.model,
                "batchSize": w.batch_size,
                "objective": _objective(job),
            }
            if w.precision.value in ASKED_PRECISIONS:  # fp64 has no tensor path to transfer by
                body["precision"] = w.precision.value
            asked = [{"accelerator": c.device.id, "count": c.count} for c in gpu_rows]
            try:
                answer = ask(body, asked)
            except (RecommenderUnavailable, RecommenderRefused) as exc:
                degraded = f"recommender: {exc}"
            else:
                try:
                    found = _from_answer(answer)
                except (KeyError, ValueError, TypeError) as exc:  # its answer, not its absence
                    degraded = f"recommender: an answer berth cannot read ({exc!r})"
                else:
                    predictions |= found
                    sources |= dict.fromkeys(found, f"recommender model {answer.get('model')}")
                    answered = True
        if not answered:
            for c in gpu_rows:
                assert isinstance(c.device, Variant)
                p = spec_transfer.predict(w.model, w.batch_size, c.device, c.count)
                if p is not None:
                    predictions[(c.type, c.count)] = p
                    sources[(c.type, c.count)] = spec_transfer.name
    missing = [c for c in rows if (c.type, c.count) not in predictions]
    found = roofline.predict_all(job, [(c.type, c.device, c.count) for c in missing])
    predictions |= found
    sources |= dict.fromkeys(found, roofline.name)
    return Predicted(predictions, sources, degraded)


def _objective(job: AcceleratorJob) -> dict[str, Any]:
    kind = job.objective.kind.value
    if kind == "balanced":
        return {"type": kind, "weight": job.objective.energy_weight}
    return {"type": kind}
