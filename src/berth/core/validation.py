"""Evaluate a CRD's structural schema offline, as the API server would.

Three steps, in the API server's order: apply the schema's defaults, check the structure
(types, bounds, patterns, required and unknown fields), then evaluate the CEL rules
(`x-kubernetes-validations`) with cel-python. Errors name the field path and the bad value.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

import celpy
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError
from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError as SchemaError

Schema = dict[str, Any]


@dataclass(frozen=True)
class FieldError:
    path: str
    value: Any
    message: str

    def __str__(self) -> str:
        shown = repr(self.value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        return f"{self.path or '<object>'}: {self.message} (got {shown})"


class InvalidObject(ValueError):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


def join_path(parent: str, child: str | int) -> str:
    if isinstance(child, int):
        return f"{parent}[{child}]"
    return f"{parent}.{child}" if parent else child


# --- defaults ----------------------------------------------------------------------------


def apply_defaults(schema: Schema, value: Any) -> Any:
    """Return `value` with the schema's defaults filled in, recursively (a parent's default
    is defaulted further), like the API server's structural defaulting."""
    if isinstance(value, dict):
        out = dict(value)
        for name, sub in schema.get("properties", {}).items():
            if name not in out and "default" in sub:
                out[name] = copy.deepcopy(sub["default"])
            if name in out:
                out[name] = apply_defaults(sub, out[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name in out.keys() - schema.get("properties", {}).keys():
                out[name] = apply_defaults(extra, out[name])
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], item) for item in value]
    return value


# --- structure ---------------------------------------------------------------------------


def _to_json_schema(schema: Schema) -> Schema:
    """Translate the Kubernetes dialect of OpenAPI v3 into JSON Schema draft 4 (whose boolean
    exclusiveMinimum matches OpenAPI 3.0). Unknown fields are errors, as with kubectl's strict
    field validation, except under x-kubernetes-preserve-unknown-fields."""
    out: Schema = {}
    for key, sub in schema.items():
        if key == "properties":
            out[key] = {name: _to_json_schema(s) for name, s in sub.items()}
        elif key in ("items", "additionalProperties") and isinstance(sub, dict):
            out[key] = _to_json_schema(sub)
        elif key in ("default", "description", "x-kubernetes-validations", "format", "anyOf"):
            continue
        else:
            out[key] = sub
    if schema.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if schema.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


# Keyed by identity: schemas are unhashable dicts, and the CRD's is loaded once and kept.
_VALIDATORS: dict[int, tuple[Schema, Draft4Validator]] = {}


def _validator(schema: Schema) -> Draft4Validator:
    if id(schema) not in _VALIDATORS:
        _VALIDATORS[id(schema)] = (schema, Draft4Validator(_to_json_schema(schema)))
    return _VALIDATORS[id(schema)][1]


def _path_of(error: SchemaError) -> str:
    path = ""
    for part in error.absolute_path:
        path = join_path(path, part)
    return path


def _field_errors(error: SchemaError) -> Iterator[FieldError]:
    path = _path_of(error)
    if error.validator == "required":
        instance = cast(dict[str, Any], error.instance)
        for missing in cast(list[str], error.validator_value):
            if missing not in instance:
                yield FieldError(join_path(path, missing), None, "required field is missing")
    elif error.validator == "additionalProperties":
        known = cast(Schema, error.schema).get("properties", {})
        instance = cast(dict[str, Any], error.instance)
        for name in sorted(set(instance) - set(known)):
            yield FieldError(join_path(path, name), instance[name], "unknown field")
    elif error.validator == "enum":
        yield FieldError(path, error.instance, f"must be one of {error.validator_value}")
    elif error.validator == "pattern":
        yield FieldError(path, error.instance, f"must match {error.validator_value}")
    elif error.validator == "uniqueItems":
        yield FieldError(path, error.instance, "duplicate entries in a set")
    else:
        yield FieldError(path, error.instance, str(error.message))


def check_structure(schema: Schema, value: Any) -> list[FieldError]:
    errors = sorted(
        _validator(schema).iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path]
    )
    return [fe for e in errors for fe in _field_errors(e)]


# --- CEL rules ---------------------------------------------------------------------------


# One environment for every rule: cel-python raises the recursion limit each time it makes one.
_CEL = celpy.Environment()


@cache
def _program(rule: str) -> Any:
    return _CEL.program(_CEL.compile(rule))


def _typed(schema: Schema, value: Any) -> Any:
    """JSON numbers in a `number` field are doubles in Kubernetes' CEL, even when written 1."""
    if schema.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        return {k: _typed(props.get(k, {}), v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(schema.get("items", {}), v) for v in value]
    return value


# A rule's outcome is a pure function of what it reads of `self` (Kubernetes' rules see no
# other variable here), and cel-python's tree-walking evaluation costs about 0.6 ms: outcomes
# are kept by rule and what it read, so a rule over fields many objects share (a count range,
# a precision, a quantity) is evaluated once for all of them.
OUTCOMES = 65536  # kept before the memo starts again
_outcomes: dict[tuple[str, str], bool | str] = {}
_HAS = re.compile(r"\bhas\(\s*self((?:\.[A-Za-z_]\w*)+)\s*\)")
_MEMBERS = re.compile(r"\bself((?:\.[A-Za-z_]\w*)*)(\s*\()?")
Members = tuple[str, ...]  # self.a.b as ("a", "b")


@cache
def _reads(rule: str) -> tuple[tuple[Members, ...], tuple[Members, ...]] | None:
    """(paths whose presence the rule tests, paths whose values it reads) of `self`; None
    when it reads `self` otherwise (whole, indexed, in a string), so all of it counts."""
    present = tuple(tuple(m.group(1)[1:].split(".")) for m in _HAS.finditer(rule))
    values = []
    for m in _MEMBERS.finditer(_HAS.sub("", rule)):
        parts = m.group(1)[1:].split(".") if m.group(1) else []
        if m.group(2):  # self.a.b.matches(...): a method of self.a.b
            parts = parts[:-1]
        if not parts:
            return None
        values.append(tuple(parts))
    return present, tuple(values)


def _at(value: Any, path: Members, whole: bool = True) -> list[Any]:
    """[1, the value at path] ([1] when only its presence counts); [0, depth] where it is
    absent; [2, depth, it] where a non-object is met (a rule's error names what was missing or
    what could not be selected from, and where)."""
    for depth, part in enumerate(path):
        if not isinstance(value, dict):
            return [2, depth, value]
        if part not in value:
            return [0, depth]
        value = value[part]
    return [1, value] if whole else [1]


def _read(rule: str, value: Any) -> str:
    reads = _reads(rule)
    if reads is None:
        return json.dumps(value, sort_keys=True, default=repr)
    present, values = reads
    shown = [[_at(value, p, whole=False) for p in present], [_at(value, p) for p in values]]
    return json.dumps(shown, sort_keys=True, default=repr)


def _pruned(rule: str, value: Any) -> Any:
    """`self` cut to what the rule reads (the root rule reads one name of a whole object)."""
    reads = _reads(rule)
    if reads is None or not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for path in reads[0] + reads[1]:
        source, target = value, out
        for i, part in enumerate(path):
            if part not in source or target.get(part) is source[part]:  # absent, or copied whole
                break
            if i == len(path) - 1 or not isinstance(source[part], dict):
                target[part] = source[part]
                break
            source, target = source[part], target.setdefault(part, {})
    return out


def _evaluate(rule: str, value: Any) -> bool | str:
    """True or False; a string says why the rule could not be evaluated."""
    try:
        key = (rule, _read(rule, value))
    except (RecursionError, ValueError):  # past what a key can be made of: evaluate it
        return _evaluated(rule, value)
    if key not in _outcomes:
        if len(_outcomes) >= OUTCOMES:
            _outcomes.clear()
        _outcomes[key] = _evaluated(rule, _pruned(rule, value))
    return _outcomes[key]


def _evaluated(rule: str, value: Any) -> bool | str:
    try:
        result = _program(rule).evaluate({"self": json_to_cel(value)})
    except Exception as exc:  # cel-python raises its own family of errors
        return f"rule {rule!r} could not be evaluated: {exc}"
    if isinstance(result, CELEvalError):
        return f"rule {rule!r} could not be evaluated: {result}"
    return bool(result)


def check_rules(schema: Schema, value: Any, path: str = "") -> list[FieldError]:
    """Evaluate every x-kubernetes-validations rule whose field is present."""
    errors: list[FieldError] = []
    for rule in schema.get("x-kubernetes-validations", ()):
        outcome = _evaluate(rule["rule"], _typed(schema, value))
        if outcome is not True:
            where = path + rule.get("fieldPath", "")
            message = rule["message"] if outcome is False else str(outcome)
            errors.append(FieldError(where, _lookup(value, rule.get("fieldPath", "")), message))
    if isinstance(value, dict):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                errors += check_rules(sub, value[name], join_path(path, name))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errors += check_rules(schema["items"], item, join_path(path, i))
    return errors


def _lookup(value: Any, field_path: str) -> Any:
    for part in filter(None, field_path.split(".")):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


INT64 = (-(2**63), 2**63 - 1)


def check_int64(value: Any, path: str = "") -> list[FieldError]:
    """Integers past int64: the API server cannot decode them, so none reaches a rule."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not INT64[0] <= value <= INT64[1]:
            shown = (
                str(value)
                if len(str(value)) <= 24
                else f"{str(value)[:20]}... ({len(str(value))} digits)"
            )
            return [FieldError(path, shown, "must fit in a 64-bit integer")]
        return []
    if isinstance(value, dict):
        return [e for k, v in value.items() for e in check_int64(v, join_path(path, str(k)))]
    if isinstance(value, list):
        return [e for i, v in enumerate(value) for e in check_int64(v, join_path(path, i))]
    return []


def validate(schema: Schema, value: Any) -> Any:
    """Default, then check structure, then CEL. Returns the defaulted value or raises
    InvalidObject listing every error. CEL runs only on a structurally valid object, since its
    rules assume the schema's types."""
    defaulted = apply_defaults(schema, value)
    errors = check_int64(defaulted) or check_structure(schema, defaulted)
    if not errors:
        errors = check_rules(schema, defaulted)
    if errors:
        raise InvalidObject(errors)
    return defaulted
