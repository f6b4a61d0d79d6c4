"""The recommender API's request and answer bodies as JSON Schemas: `requests.py` validates every
body against them first, and `/openapi.json` is built from the same dicts, so the document
cannot drift from what the server accepts. What a schema cannot say (names the catalog must
resolve, a row width that is the served model's, shapes that must agree) `requests.py` checks
after them."""

from __future__ import annotations

from typing import Any

MAX_ROWS = 4096
MAX_COUNT = 1024
Schema = dict[str, Any]

NUMBER: Schema = {"type": "number"}
NULLABLE_NUMBER: Schema = {"type": ["number", "null"]}
ERROR: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "what was wrong, naming the field"}},
}
OBJECTIVE: Schema = {
    "type": "object",
    "properties": {
        "type": {"enum": ["energy", "time", "balanced"], "default": "energy"},
        "weight": {"type": "number", "minimum": 0, "maximum": 1,
                   "description": "energy's weight; balanced only (default 0.5)"},
    },
}  # fmt: skip
JOB: Schema = {
    "type": "object",
    "required": ["model", "batchSize"],
    "properties": {
        "model": {"type": "string", "minLength": 1, "maxLength": 100,
                  "description": "the model family (e.g. resnet50)"},
        "batchSize": {"type": "integer", "minimum": 1, "maximum": 10_000_000},
        "totalWork": {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": False,
            "properties": {
                "samples": {"type": "integer", "minimum": 1, "maximum": 10**15},
                "iterations": {"type": "integer", "minimum": 1, "maximum": 10**15},
            },
        },
        "deadlineSeconds": {"type": "number", "exclusiveMinimum": 0},
        "objective": OBJECTIVE,
        "precision": {"enum": ["fp32", "tf32", "fp16", "bf16"], "default": "fp32",
                      "description": "the maths the job trains in; fp16/bf16: mixed precision"},
        "framework": {"type": "string", "minLength": 1, "maxLength": 50, "default": "pytorch",
                      "description": "e.g. pytorch, tensorflow: measurements of the same "
                                     "framework are preferred"},
    },
}  # fmt: skip
RECOMMEND: Schema = {
    "type": "object",
    "required": ["job", "candidates"],
    "properties": {
        "job": JOB,
        "candidates": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_ROWS,
            "items": {
                "type": "object",
                "required": ["accelerator", "count"],
                "properties": {
                    "accelerator": {"type": "string", "minLength": 1,
                                    "description": "a GPU the catalog knows (e.g. a100, Tesla T4)"},
                    "count": {"type": "integer", "minimum": 1, "maximum": MAX_COUNT},
                },
            },
        },
    },
}  # fmt: skip
ROWS: Schema = {
    "type": "array",
    "minItems": 1,
    "maxItems": MAX_ROWS,
    "items": {"type": "array", "items": NUMBER, "description": "one row of raw features"},
}
PREDICT: Schema = {"type": "object", "required": ["instances"], "properties": {"instances": ROWS}}
INFER: Schema = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "inputs": {
            "type": "array",
            "minItems": 1,
            "maxItems": 1,
            "items": {
                "type": "object",
                "required": ["name", "datatype", "shape", "data"],
                "properties": {
                    "name": {"const": "features"},
                    "datatype": {"enum": ["FP32", "FP64"]},
                    "shape": {"type": "array", "minItems": 2, "maxItems": 2,
                              "items": {"type": "integer"}},
                    "data": {"type": "array", "items": {"anyOf": [NUMBER, ROWS["items"]]}},
                },
            },
        },
        "outputs": {
            "type": "array",
            "items": {"type": "object", "required": ["name"],
                      "properties": {"name": {"enum": ["mean", "std"]}}},
        },
    },
}  # fmt: skip

# --- answers ----------------------------------------------------------------------------

RANKED: Schema = {
    "type": "object",
    "required": ["accelerator", "type", "count", "throughput", "watts_per_device",
                 "joules_per_sample", "score", "reason", "source"],
    "properties": {
        "accelerator": {"type": "string"}, "type": {"type": "string"},
        "count": {"type": "integer"}, "throughput": NUMBER,
        "throughput_uncertainty": NULLABLE_NUMBER, "watts_per_device": NUMBER,
        "joules_per_sample": NUMBER, "runtime_s": NULLABLE_NUMBER,
        "meets_deadline": {"type": ["boolean", "null"]}, "score": NUMBER,
        "reason": {"type": ["string", "null"]}, "source": {"type": "string"},
    },
}  # fmt: skip
MATRIX: Schema = {"type": "array", "items": {"type": "array", "items": NUMBER}}
ANSWERS: dict[str, Schema] = {
    "recommend": {"type": "object", "required": ["model", "ranked"],
                  "properties": {"model": {"type": "string"},
                                 "ranked": {"type": "array", "items": RANKED}}},
    "predict": {"type": "object", "required": ["model", "mean", "std"],
                "properties": {"model": {"type": "string"}, "mean": MATRIX, "std": MATRIX}},
    "infer": {
        "type": "object",
        "required": ["model_name", "model_version", "outputs"],
        "properties": {
            "model_name": {"type": "string"}, "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "items": {
                "type": "object", "required": ["name", "datatype", "shape", "data"],
                "properties": {"name": {"enum": ["mean", "std"]}, "datatype": {"const": "FP32"},
                               "shape": {"type": "array", "items": {"type": "integer"}},
                               "data": {"type": "array", "items": NUMBER}}}},
        },
    },
    "model": {"type": "object", "required": ["name", "sha256", "features"],
              "properties": {"name": {"type": "string"}, "sha256": {"type": "string"},
                             "features": {"type": "array", "items": {"type": "string"}}}},
    "live": {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}},
    "ready": {"type": "object", "required": ["ready"],
              "properties": {"ready": {"type": "boolean"}}},
    "v2_model": {"type": "object", "required": ["name", "versions", "platform"]},
}  # fmt: skip


def _json(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def _errors(*codes: int) -> dict[str, Any]:
    said = {
        400: "the body or a field is wrong",
        404: "no such route or model",
        405: "another method is allowed here (see Allow)",
        411: "no Content-Length",
        413: "the body is over 1 MiB",
        422: "the answer would not be a finite number",
    }
    return {str(c): {"description": said[c], "content": _json(ERROR)} for c in codes}


def openapi(model_name: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route, from the schemas above."""
    posts = (
        ("/v1/recommend", "recommend", RECOMMEND, "rank candidate allocations"),
        ("/v1/predict", "predict", PREDICT, "mean and std of the model's outputs"),
        (f"/v2/models/{model_name}/infer", "infer", INFER, "Open Inference Protocol v2"),
    )
    gets = (("/v1/model", "model"), ("/v2/health/live", "live"), ("/v2/health/ready", "ready"),
            (f"/v2/models/{model_name}", "v2_model"),
            (f"/v2/models/{model_name}/ready", "ready"))  # fmt: skip
    paths: dict[str, Any] = {}
    for path, answer, body, summary in posts:
        paths[path] = {"post": {
            "summary": summary, "operationId": answer,
            "requestBody": {"required": True, "content": _json(body)},
            "responses": {
                "200": {"description": "the answer", "content": _json(ANSWERS[answer])},
                **_errors(400, 404, 405, 411, 413, 422),
            },
        }}  # fmt: skip
    for path, answer in gets:
        paths[path] = {"get": {
            "operationId": path.strip("/").replace("/", "_"),
            "responses": {
                "200": {"description": "the answer", "content": _json(ANSWERS[answer])},
                **_errors(404, 405),
            },
        }}  # fmt: skip
    paths["/metrics"] = {"get": {
        "operationId": "metrics",
        "responses": {"200": {"description": "Prometheus text",
                              "content": {"text/plain": {"schema": {"type": "string"}}}},
                      **_errors(404, 405)},
    }}  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {"title": "berth recommender", "version": "1"},
        "paths": paths,
    }
