"""schemathesis against the live recommender from its own /openapi.json: positive and negative
requests for every route, derandomised: no 5xx, every status, content type and answer as the
document says, schema-invalid requests refused, strict JSON.

Driven through schemathesis' strategies (its pytest plugin does not load under this pytest)."""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from berth.recommender.model import SHIPPED
from berth.recommender.schemas import openapi
from berth.recommender.service import MODEL_NAME
from tests.test_recommender_server import serving

# Per route and mode: the three POST routes alone make >= 5,000 requests. A longer hunt, as
# the 55,000: BERTH_FUZZ_EXAMPLES=9000 scripts/test.sh tests/test_recommender_openapi.py
EXAMPLES = int(os.environ.get("BERTH_FUZZ_EXAMPLES", "900"))


def _operations() -> list[Any]:
    out = []
    for result in schemathesis.openapi.from_dict(openapi(MODEL_NAME)).get_all_operations():
        if not isinstance(result, Ok):
            raise AssertionError(f"the document does not load: {result}")
        out.append(result.ok())
    return out


OPERATIONS = _operations()
SENT: list[str] = []


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("openapi")
    model = tmp / "recommender.onnx"
    shutil.copy(SHIPPED, model)
    shutil.copy(f"{SHIPPED}.sha256", f"{model}.sha256")
    with serving(Path(model)) as (host, port, _):
        yield f"http://{host}:{port}"


def test_the_served_document_is_the_one_fuzzed(url: str) -> None:
    with urllib.request.urlopen(f"{url}/openapi.json", timeout=5) as response:
        assert json.loads(response.read()) == openapi(MODEL_NAME)


def _strict(name: str) -> Any:
    raise AssertionError(f"{name} in an answer: not strict JSON")


# Negative requests for the routes with a body; the others take no input to break.
CASES = [(o, m) for o in OPERATIONS for m in GenerationMode
         if m is GenerationMode.POSITIVE or o.method.upper() == "POST"]  # fmt: skip


@pytest.mark.parametrize(("operation", "mode"), CASES,
                         ids=[f"{o.label} {m.value}" for o, m in CASES])  # fmt: skip
def test_every_generated_request_is_answered_as_the_document_says(
    url: str, operation: Any, mode: GenerationMode
) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(operation.as_strategy(generation_mode=mode))
    def answered(case: Any) -> None:
        response = case.call(base_url=url, timeout=10)
        SENT.append(operation.label)
        # Every check but two, said here instead: schema-valid data may still be refused with a
        # 400 (a name the catalog must know, the served model's row width: what a schema cannot
        # say), and invalid data may be refused with any 4xx (413 for a body over 1 MiB).
        case.validate_response(
            response, excluded_checks=[positive_data_acceptance, negative_data_rejection]
        )
        if mode is GenerationMode.NEGATIVE:
            assert 400 <= response.status_code < 500, response.text
        if response.headers.get("Content-Type", "").startswith("application/json"):
            json.loads(response.text, parse_constant=_strict)

    answered()


def test_the_fuzzing_sent_at_least_5000_requests(capsys: pytest.CaptureFixture[str]) -> None:
    with capsys.disabled():
        print(f"\nschemathesis: {len(SENT)} requests over {len(set(SENT))} routes, none failed")
    assert len(SENT) >= 5000
