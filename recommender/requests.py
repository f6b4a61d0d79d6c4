"""Request bodies of the recommender's HTTP API: checked against their JSON Schemas
(schemas.py, the same the OpenAPI document is made of), then parsed and checked for what a
schema cannot say, or refused with a message that names the field. Pure."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import fastjsonschema
import numpy as np
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from berth.core.catalog import CPU, DEFAULT_VARIANT, VARIANTS, Variant, resolve
from berth.core.job import Objective, ObjectiveKind
from berth.recommender import schemas
from berth.recommender.recommend import Candidate, Ranked
from berth.recommender.schemas import MAX_COUNT, MAX_ROWS


def _where(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def conform(schema: schemas.Schema, body: Any) -> None:
    """The first of the body's faults against its schema, naming the field; none: returns.
    fastjsonschema's compiled check (microseconds) passes a good body; jsonschema, 20x slower
    but the one whose best match names the right field, has the last word on the rest."""
    fast, full = _validators[id(schema)]
    try:
        fast(body)
        return
    except fastjsonschema.JsonSchemaException:
        pass
    except RecursionError:
        raise RequestError("the body is nested too deeply") from None
    error = best_match(full.iter_errors(body))
    if error is None:
        return
    where = _where(error.absolute_path)
    if not where:
        if error.validator == "type":
            raise RequestError("the body must be a JSON object")
        raise RequestError(f"the body: {error.message}")
    raise RequestError(f"{where}: {error.message}")


_validators = {
    id(s): (fastjsonschema.compile(s, use_default=False), Draft202012Validator(s))
    for s in (schemas.RECOMMEND, schemas.PREDICT, schemas.INFER)
}


_BY_MEMORY: dict[tuple[str, float | None], Variant] = {
    (v.type, v.memory_gib): v
    for v in reversed(VARIANTS.values())  # the first listed wins
}


class RequestError(ValueError):
    """The caller's mistake: answered with 400 and this message."""


@dataclass(frozen=True)
class JobAsk:
    model: str
    batch_size: int
    objective: Objective
    total_samples: int | None
    deadline_s: float | None
    precision: str = "fp32"
    framework: str = "pytorch"


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RequestError(f"{where} must be a JSON object")
    return value


def _int(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RequestError(f"{where} must be a whole number in [{low}, {high}], got {value!r}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RequestError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _variant(name: Any, where: str) -> tuple[str, Variant]:
    if not isinstance(name, str) or not name:
        raise RequestError(f"{where} must be an accelerator name")
    found = _named(name)
    if isinstance(found, str):
        raise RequestError(f"{where}: {found}")
    return found


@functools.lru_cache(maxsize=4096)  # bounded: the names are the caller's
def _named(name: str) -> tuple[str, Variant] | str:
    """(type, variant) a name means, or why it is refused."""
    found = resolve(name)
    if found.type is None:
        return f"unknown accelerator {name!r}"
    if found.type == CPU:
        return "cpu is not scored by the model"
    if found.variant is not None:
        return found.type, VARIANTS[found.variant]
    # "A100 80GB": the type's first variant with that memory, else its default.
    return found.type, _BY_MEMORY.get((found.type, found.memory_gib), DEFAULT_VARIANT[found.type])


def _objective(value: Any) -> Objective:
    if value is None:
        return Objective(ObjectiveKind.ENERGY, 1.0)
    value = _object(value, "job.objective")
    try:
        kind = ObjectiveKind(value.get("type", "energy"))
    except ValueError:
        raise RequestError("job.objective.type must be energy, time or balanced") from None
    if kind is ObjectiveKind.BALANCED:
        weight = _number(value.get("weight", 0.5), "job.objective.weight")
        if not 0 <= weight <= 1:
            raise RequestError("job.objective.weight must be in [0, 1]")
        return Objective(kind, weight)
    if "weight" in value:
        raise RequestError("job.objective.weight is only for balanced")
    return Objective(kind, 1.0 if kind is ObjectiveKind.ENERGY else 0.0)


def recommend_request(body: Any) -> tuple[JobAsk, list[Candidate], list[Variant]]:
    conform(schemas.RECOMMEND, body)
    body = _object(body, "the body")
    job = _object(body.get("job"), "job")
    model = job.get("model")
    if not isinstance(model, str) or not 0 < len(model) <= 100:
        raise RequestError("job.model must be a model family name (e.g. resnet50)")
    batch = _int(job.get("batchSize"), "job.batchSize", 1, 10_000_000)
    samples = None
    work = job.get("totalWork")
    if work is not None:
        work = _object(work, "job.totalWork")
        if len(work) != 1 or not set(work) <= {"samples", "iterations"}:
            raise RequestError("job.totalWork must hold exactly one of samples, iterations")
        ((unit, amount),) = work.items()
        amount = _int(amount, f"job.totalWork.{unit}", 1, 10**15)
        samples = amount * batch if unit == "iterations" else amount
    deadline = job.get("deadlineSeconds")
    if deadline is not None and _number(deadline, "job.deadlineSeconds") <= 0:
        raise RequestError("job.deadlineSeconds must be > 0")
    precision, framework = job.get("precision", "fp32"), job.get("framework", "pytorch")
    ask = JobAsk(
        model, batch, _objective(job.get("objective")), samples, deadline, precision, framework
    )

    raw = body.get("candidates")
    if not isinstance(raw, list) or not 0 < len(raw) <= MAX_ROWS:
        raise RequestError(f"candidates must be a list of 1 to {MAX_ROWS} objects")
    candidates, variants = [], []
    for i, item in enumerate(raw):
        item = _object(item, f"candidates[{i}]")
        type_id, variant = _variant(item.get("accelerator"), f"candidates[{i}].accelerator")
        count = _int(item.get("count"), f"candidates[{i}].count", 1, MAX_COUNT)
        candidates.append(Candidate(item["accelerator"], type_id, count))
        variants.append(variant)
    return ask, candidates, variants


def feature_rows(body: Any, key: str, width: int) -> np.ndarray:
    conform(schemas.PREDICT, body)
    rows = _object(body, "the body").get(key)
    if not isinstance(rows, list) or not 0 < len(rows) <= MAX_ROWS:
        raise RequestError(f"{key} must be a list of 1 to {MAX_ROWS} feature rows")
    return _matrix(rows, key, len(rows), width)


def _matrix(rows: list[Any], where: str, n: int, width: int) -> np.ndarray:
    try:
        x = np.array(rows, dtype=np.float64)
    except (TypeError, ValueError):
        raise RequestError(f"{where} must hold numbers only") from None
    if x.shape != (n, width):
        raise RequestError(f"{where} must have shape [{n}, {width}], got {list(x.shape)}")
    if not np.isfinite(x).all():
        raise RequestError(f"{where} must hold finite numbers (no NaN or infinity)")
    return x


def v2_inputs(body: Any, width: int) -> tuple[np.ndarray, set[str] | None, str | None]:
    """An Open Inference Protocol v2 request with one FP32 (or FP64) tensor "features"."""
    conform(schemas.INFER, body)
    body = _object(body, "the body")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        raise RequestError('inputs must be a list of one tensor named "features"')
    tensor = _object(inputs[0], "inputs[0]")
    if tensor.get("name") != "features":
        raise RequestError(f'inputs[0].name must be "features", got {tensor.get("name")!r}')
    if tensor.get("datatype") not in ("FP32", "FP64"):
        raise RequestError("inputs[0].datatype must be FP32 or FP64")
    shape = tensor.get("shape")
    if not (isinstance(shape, list) and len(shape) == 2 and shape[1] == width):
        raise RequestError(f"inputs[0].shape must be [n, {width}], got {shape!r}")
    n = _int(shape[0], "inputs[0].shape[0]", 1, MAX_ROWS)
    data = tensor.get("data")
    if not isinstance(data, list):
        raise RequestError("inputs[0].data must be a list")
    flat = (
        np.array(data, dtype=object).ravel().tolist()
        if data and isinstance(data[0], list)
        else data
    )
    if len(flat) != n * width:
        raise RequestError(f"inputs[0].data holds {len(flat)} values, shape says {n * width}")
    x = _matrix([flat[i * width : (i + 1) * width] for i in range(n)], "inputs[0].data", n, width)
    wanted = None
    if body.get("outputs") is not None:
        outs = body["outputs"]
        if not isinstance(outs, list):
            raise RequestError("outputs must be a list")
        names = [_object(o, f"outputs[{i}]").get("name") for i, o in enumerate(outs)]
        if not all(isinstance(n, str) for n in names) or not set(names) <= {"mean", "std"}:
            raise RequestError(f"outputs may name mean and std only, got {names}")
        wanted = {str(n) for n in names}
    request_id = body.get("id")
    return x, wanted, request_id if isinstance(request_id, str) else None


def ranked_json(r: Ranked) -> dict[str, Any]:
    p = r.prediction
    return {
        "accelerator": r.candidate.accelerator,
        "type": r.candidate.type,
        "count": r.candidate.count,
        "throughput": p.throughput.value,
        "throughput_uncertainty": p.throughput.provenance.uncertainty,
        "watts_per_device": p.device_watts.value,
        "joules_per_sample": r.joules_per_sample,
        "runtime_s": r.runtime_s,
        "meets_deadline": r.meets_deadline,
        "score": r.score,
        "reason": r.reason,
        "source": p.throughput.provenance.describe(),
    }
