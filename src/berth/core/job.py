"""The AcceleratorJob as typed, validated data.

`parse_job` takes the dict the Kubernetes API returns (or a manifest) and returns an
AcceleratorJob, or raises InvalidObject naming every bad field with its value. It evaluates the
CRD's own schema and CEL rules first (crds/acceleratorjob.yaml), then what CEL cannot check.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from berth.core.catalog import CPU, TYPE_IDS
from berth.core.quantity import QuantityError, to_int
from berth.core.validation import FieldError, InvalidObject, validate
from berth.crds import API_VERSION, KIND, acceleratorjob_schema


class WorkloadKind(StrEnum):
    TRAINING = "training"
    INFERENCE = "inference"
    HPC = "hpc"


class Precision(StrEnum):
    FP32 = "fp32"
    TF32 = "tf32"
    FP16 = "fp16"
    BF16 = "bf16"
    FP64 = "fp64"


class ObjectiveKind(StrEnum):
    ENERGY = "energy"
    TIME = "time"
    BALANCED = "balanced"


@dataclass(frozen=True)
class Work:
    amount: int
    unit: str  # "samples" or "iterations"


@dataclass(frozen=True)
class Workload:
    kind: WorkloadKind
    model: str | None
    parameters: int | None
    flops_per_sample: float | None
    batch_size: int | None
    precision: Precision
    total_work: Work | None
    memory_per_replica_bytes: int | None

    @property
    def total_samples(self) -> int | None:
        if self.total_work is None:
            return None
        if self.total_work.unit == "samples":
            return self.total_work.amount
        assert self.batch_size is not None  # the CRD's CEL rule guarantees it
        return self.total_work.amount * self.batch_size


@dataclass(frozen=True)
class CountRange:
    min: int
    max: int

    @property
    def rigid(self) -> bool:
        return self.min == self.max


@dataclass(frozen=True)
class AcceleratorRequest:
    types: tuple[str, ...]  # canonical type ids; empty means any GPU type
    count: CountRange
    min_device_memory_bytes: int | None

    def allows(self, type_id: str) -> bool:
        """cpu only when listed; an empty list means any GPU type."""
        if not self.types:
            return type_id != CPU
        return type_id in self.types


@dataclass(frozen=True)
class Objective:
    kind: ObjectiveKind
    energy_weight: float  # 1 for energy, 0 for time, the user's weight (0.5 default) balanced


@dataclass(frozen=True)
class Deadline:
    """Either an absolute time or a duration counted from the job's creation."""

    text: str
    at: datetime | None = None
    within: timedelta | None = None

    def resolve(self, created: datetime) -> datetime:
        if self.at is not None:
            return self.at
        assert self.within is not None
        return created + self.within


@dataclass(frozen=True)
class AcceleratorJob:
    namespace: str
    name: str
    uid: str | None
    generation: int | None
    created: datetime | None
    workload: Workload
    accelerators: AcceleratorRequest
    objective: Objective
    deadline: Deadline | None
    priority: int
    elastic: bool
    template: Mapping[str, Any]
    restart_s: float | None = None  # spec.checkpoint.restartSeconds: resumable when declared


def _work(total: Mapping[str, int]) -> Work:
    unit = "samples" if "samples" in total else "iterations"
    return Work(total[unit], unit)


_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> timedelta:
    """Go-style durations as Kubernetes users write them: 36h, 90m, 1h30m, 2.5h."""
    pos, seconds = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match[1]) * _UNIT_SECONDS[match[2]]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a duration: {text!r}")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"{text!r} is longer than any deadline can be") from None


def parse_time(text: str) -> datetime:
    """RFC 3339 time; a time without an offset is refused rather than guessed."""
    value = datetime.fromisoformat(text.upper())
    if value.tzinfo is None:
        raise ValueError(f"time without a UTC offset: {text!r}")
    return value


def parse_deadline(text: str) -> Deadline:
    if re.match(r"^[0-9]{4}-", text):
        return Deadline(text, at=parse_time(text))
    return Deadline(text, within=parse_duration(text))


def check_deadline(job: AcceleratorJob, now: datetime) -> FieldError | None:
    """What CEL cannot check at admission: the deadline must still lie ahead."""
    if job.deadline is None:
        return None
    due = job.deadline.resolve(job.created or now)
    if due <= now:
        return FieldError(
            "spec.deadline", job.deadline.text, f"deadline {due.isoformat()} has passed"
        )
    return None


def parse_job(obj: Any, admitted: bool = False) -> AcceleratorJob:
    """Validate a manifest or API object and return it typed; raises InvalidObject.

    `admitted`: the object was read from the API server, which applied this same schema's
    defaults and CEL rules when it was stored; they are not evaluated again (the checks CEL
    cannot make still are)."""
    if not isinstance(obj, dict):
        raise InvalidObject([FieldError("", obj, "an AcceleratorJob must be a mapping")])
    header = [
        FieldError(field, obj.get(field), f"must be {want}")
        for field, want in (("apiVersion", API_VERSION), ("kind", KIND))
        if obj.get(field) != want
    ]
    metadata = obj.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidObject([FieldError("metadata", metadata, "must be a mapping")])
    name = (metadata or {}).get("name")
    if not isinstance(name, str) or not name:
        header.append(FieldError("metadata.name", name, "required: the job's name"))
    if header:
        raise InvalidObject(header)
    if not admitted:
        obj = validate(acceleratorjob_schema(), obj)
    errors: list[FieldError] = []
    spec = obj["spec"]
    meta = obj.get("metadata") or {}

    def quantity(path: str, raw: Any) -> int | None:
        if raw is None:
            return None
        try:
            return to_int(raw)
        except QuantityError as exc:
            errors.append(FieldError(path, raw, str(exc)))
            return None

    wl = spec["workload"]
    total = wl.get("totalWork")
    workload = Workload(
        kind=WorkloadKind(wl["kind"]),
        model=wl.get("model"),
        parameters=wl.get("parameters"),
        flops_per_sample=wl.get("flopsPerSample"),
        batch_size=wl.get("batchSize"),
        precision=Precision(wl["precision"]),
        total_work=None if total is None else _work(total),
        memory_per_replica_bytes=quantity(
            "spec.workload.memoryPerReplica", wl.get("memoryPerReplica")
        ),
    )

    acc = spec["accelerators"]
    for i, type_id in enumerate(acc["types"]):
        if type_id not in TYPE_IDS and type_id != CPU:
            known = ", ".join(sorted(TYPE_IDS | {CPU}))
            errors.append(
                FieldError(
                    f"spec.accelerators.types[{i}]", type_id, f"unknown type; known: {known}"
                )
            )
    accelerators = AcceleratorRequest(
        types=tuple(acc["types"]),
        count=CountRange(acc["count"]["min"], acc["count"]["max"]),
        min_device_memory_bytes=quantity(
            "spec.accelerators.minDeviceMemory", acc.get("minDeviceMemory")
        ),
    )

    kind = ObjectiveKind(spec["objective"]["type"])
    weight = {ObjectiveKind.ENERGY: 1.0, ObjectiveKind.TIME: 0.0}.get(
        kind, float(spec["objective"].get("weight", 0.5))
    )

    deadline = None
    if "deadline" in spec:
        try:
            deadline = parse_deadline(spec["deadline"])
        except ValueError as exc:
            errors.append(FieldError("spec.deadline", spec["deadline"], str(exc)))

    created = None
    if "creationTimestamp" in meta:
        try:
            created = parse_time(str(meta["creationTimestamp"])).astimezone(UTC)
        except ValueError as exc:
            errors.append(
                FieldError("metadata.creationTimestamp", meta["creationTimestamp"], str(exc))
            )

    if errors:
        raise InvalidObject(errors)
    return AcceleratorJob(
        namespace=meta.get("namespace", "default"),
        name=meta["name"],
        uid=meta.get("uid"),
        generation=meta.get("generation"),
        created=created,
        workload=workload,
        accelerators=accelerators,
        objective=Objective(kind, weight),
        deadline=deadline,
        priority=spec["priority"],
        elastic=spec["elastic"],
        template=spec["template"],
        restart_s=(spec.get("checkpoint") or {}).get("restartSeconds"),
    )
