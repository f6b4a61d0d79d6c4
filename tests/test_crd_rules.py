"""Each schema rule and CEL rule of crds/acceleratorjob.yaml rejects a bad object with its
message, evaluated offline the way the API server would (cel-python for CEL)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from berth.core import validation
from berth.core.job import parse_job
from berth.core.validation import InvalidObject
from berth.crds import acceleratorjob_crd, acceleratorjob_schema

Mutation = Callable[[dict[str, Any]], None]


def rejected(job: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(InvalidObject) as caught:
        parse_job(job)
    return [(e.path, e.message) for e in caught.value.errors]


def _set(path: str, value: Any) -> Mutation:
    def mutate(job: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = job
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    return mutate


def _drop(path: str) -> Mutation:
    def mutate(job: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = job
        for part in parents:
            node = node[part]
        del node[last]

    return mutate


def _both(*mutations: Mutation) -> Mutation:
    def mutate(job: dict[str, Any]) -> None:
        for m in mutations:
            m(job)

    return mutate


CEL_CASES: dict[str, tuple[Mutation, str]] = {
    "metadata.name must be a DNS-1035 label": (
        _set("metadata.name", "9-starts-with-a-digit"),
        "",
    ),
    "spec.elastic requires": (
        _set("spec.accelerators.count", {"min": 4, "max": 4}),
        "spec.elastic",
    ),
    "spec.accelerators.types may include cpu only": (
        _both(_set("spec.accelerators.types", ["cpu"]), _set("spec.workload.precision", "tf32")),
        "spec.accelerators.types",
    ),
    "spec.workload.batchSize is required": (
        _drop("spec.workload.batchSize"),
        "spec.workload.batchSize",
    ),
    "spec.workload.totalWork must set exactly one": (
        _set("spec.workload.totalWork", {"samples": 10, "iterations": 10}),
        "spec.workload.totalWork",
    ),
    "spec.accelerators.count.min must be less than or equal": (
        _set("spec.accelerators.count", {"min": 9, "max": 8}),
        "spec.accelerators.count",
    ),
    "spec.objective.weight applies only": (
        _set("spec.objective", {"type": "time", "weight": 0.2}),
        "spec.objective.weight",
    ),
    "spec.workload.memoryPerReplica must not be negative": (
        _set("spec.workload.memoryPerReplica", -1),
        "spec.workload.memoryPerReplica",
    ),
    "spec.accelerators.minDeviceMemory must not be negative": (
        _set("spec.accelerators.minDeviceMemory", -20),
        "spec.accelerators.minDeviceMemory",
    ),
    "spec.template.spec.nodeName must be empty": (
        _set("spec.template.spec.nodeName", "gpu-node-1"),
        "spec.template.spec.nodeName",
    ),
}


def _crd_rules(schema: dict[str, Any]) -> Iterator[dict[str, str]]:
    """Every x-kubernetes-validations entry of the schema, nested ones too."""
    yield from schema.get("x-kubernetes-validations", ())
    for sub in schema.get("properties", {}).values():
        yield from _crd_rules(sub)
    if isinstance(schema.get("items"), dict):
        yield from _crd_rules(schema["items"])


def test_every_cel_rule_in_the_crd_has_a_rejection_case() -> None:
    messages = [rule["message"] for rule in _crd_rules(acceleratorjob_schema())]
    assert len(messages) == len(CEL_CASES)
    for message in messages:
        assert any(message.startswith(prefix) for prefix in CEL_CASES), message


@pytest.mark.parametrize("prefix", sorted(CEL_CASES))
def test_cel_rule_rejects_with_its_message(prefix: str, elastic_job: dict[str, Any]) -> None:
    mutate, path = CEL_CASES[prefix]
    mutate(elastic_job)
    errors = rejected(elastic_job)
    assert any(p == path and m.startswith(prefix) for p, m in errors), errors


SCHEMA_CASES: list[tuple[str, Mutation, str, str]] = [
    ("enum", _set("spec.workload.kind", "batch"), "spec.workload.kind", "must be one of"),
    ("required", _drop("spec.workload.kind"), "spec.workload.kind", "required field"),
    ("required template", _drop("spec.template"), "spec.template", "required field"),
    ("unknown field", _set("spec.accelerator", {}), "spec.accelerator", "unknown field"),
    ("minimum", _set("spec.accelerators.count.min", 0), "spec.accelerators.count.min", "less"),
    (
        "maximum",
        _set("spec.objective", {"type": "balanced", "weight": 1.5}),
        "spec.objective.weight",
        "greater",
    ),
    (
        "exclusive minimum",
        _set("spec.workload.flopsPerSample", 0),
        "spec.workload.flopsPerSample",
        "less than or equal to the minimum",
    ),
    ("type", _set("spec.priority", "high"), "spec.priority", "is not of type"),
    ("deadline pattern", _set("spec.deadline", "tomorrow"), "spec.deadline", "must match"),
    (
        "quantity pattern",
        _set("spec.workload.memoryPerReplica", "lots"),
        "spec.workload.memoryPerReplica",
        "must match",
    ),
    (
        "type pattern",
        _set("spec.accelerators.types", ["A100"]),
        "spec.accelerators.types[0]",
        "must match",
    ),
    (
        "set uniqueness",
        _set("spec.accelerators.types", ["a100", "a100"]),
        "spec.accelerators.types",
        "duplicate",
    ),
    (
        "max items",
        _set("spec.accelerators.types", [f"t{i}" for i in range(17)]),
        "spec.accelerators.types",
        "too long",
    ),
    (
        "containers",
        _set("spec.template.spec.containers", []),
        "spec.template.spec.containers",
        "should be non-empty",
    ),
    (
        "image",
        _set("spec.template.spec.containers", [{"name": "x"}]),
        "spec.template.spec.containers[0].image",
        "required field",
    ),
]


@pytest.mark.parametrize(
    ("case", "mutate", "path", "message"), SCHEMA_CASES, ids=[c[0] for c in SCHEMA_CASES]
)
def test_schema_rule_rejects_naming_the_field(
    case: str, mutate: Mutation, path: str, message: str, elastic_job: dict[str, Any]
) -> None:
    mutate(elastic_job)
    errors = rejected(elastic_job)
    assert any(p == path and message in m for p, m in errors), errors


def test_schema_defaults_are_applied_like_the_api_server(elastic_job: dict[str, Any]) -> None:
    for field in ("accelerators", "objective", "elastic", "priority"):
        elastic_job["spec"].pop(field, None)
    del elastic_job["spec"]["workload"]["precision"]
    job = parse_job(elastic_job)
    assert (job.accelerators.count.min, job.accelerators.count.max) == (1, 8)
    assert job.accelerators.types == ()
    assert job.objective.kind == "energy"
    assert job.workload.precision == "fp32"
    assert (job.priority, job.elastic) == (0, False)


def _walk(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")


def test_crd_preserves_unknown_fields_only_inside_the_pod_template() -> None:
    open_paths = [
        p
        for p, s in _walk(acceleratorjob_schema(), "")
        if s.get("x-kubernetes-preserve-unknown-fields")
    ]
    assert open_paths == [".spec.template.spec", ".spec.template.spec.containers[]"]


def test_crd_schema_is_structural() -> None:
    for path, schema in _walk(acceleratorjob_schema(), ""):
        assert "$ref" not in schema, path
        assert "type" in schema or schema.get("x-kubernetes-int-or-string"), path


def test_crd_names_printer_columns_and_status_subresource() -> None:
    crd = acceleratorjob_crd()
    assert crd["metadata"]["name"] == "acceleratorjobs.berth.dev"
    assert crd["spec"]["names"]["shortNames"] == ["aj"]
    assert crd["spec"]["names"]["categories"] == ["berth"]
    (version,) = crd["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Phase", "Type", "Count", "Nodes", "Energy-kWh", "Measured", "Age"]


RULES = sorted({rule["rule"] for rule in _crd_rules(acceleratorjob_schema())})
# Values shaped like what the rules read: the names they use, nested, of every JSON type.
_NAMES = st.sampled_from(["metadata", "name", "elastic", "accelerators", "count", "min", "max",
                          "types", "workload", "precision", "totalWork", "iterations", "samples",
                          "batchSize", "type", "weight", "nodeName", "other"])  # fmt: skip
_SCALARS = st.one_of(
    st.booleans(), st.integers(-3, 3), st.sampled_from([0.5, -1.0, 2.0]),
    st.sampled_from(["cpu", "tf32", "balanced", "energy", "a-b", "Bad_Name", "1Gi"]),
)  # fmt: skip
_VALUES = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_NAMES, inner, max_size=4)
)


@settings(max_examples=300, deadline=None)
@given(rule=st.sampled_from(RULES), value=st.dictionaries(_NAMES, _VALUES, max_size=5) | _SCALARS)
def test_a_remembered_rule_outcome_is_the_one_evaluating_it_gives(rule: str, value: Any) -> None:
    # What a rule reads decides its outcome: another object that reads the same is answered
    # from memory, and on the rule's own cut of the object.
    assert validation._evaluate(rule, value) == validation._evaluated(rule, value)
