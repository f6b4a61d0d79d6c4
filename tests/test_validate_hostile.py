"""`berth validate` and the other files berth loads, against hostile input: never a traceback,
always a message naming the file and why, and a bomb refused in well under a second."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from berth.cli import main
from berth.core import tables
from berth.core.manifest import ManifestError, load_documents
from berth.simulator.traces import TraceError, load_itp
from tests.conftest import EXAMPLES

GOOD = (EXAMPLES / "bert-inference.yaml").read_text()
BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
    for i in range(9)
)  # 10 x 8**9 values once expanded


YAML_BITS = [b"&a ", b"*a", b"!!int ", b"\n  ", b": ", b"- ", b"{", b"[", b"'", b"1e999", b"-1"]


def validate(tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]) -> str:
    path = tmp_path / "job.yaml"
    path.write_bytes(content)
    assert main(["validate", str(path)]) in (1, 2)
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"apiVersion: berth.dev/v1alpha1\nkind: \xff\n", "not UTF-8: byte 37 is 0xff"),
        (GOOD.replace("batchSize: 32", "batchSize: !!int twelve").encode(), "line 12, column 16"),
        (b"apiVersion: berth.dev/v1alpha1\nkind: AcceleratorJob\nmetadata: some-string\n",
         "metadata"),
        (GOOD.replace("kind: inference", "kind: inference\n    kind: training").encode(),
         "duplicate key 'kind'"),
        (BOMB.encode(), "expands to more than 100,000 values"),
        (b"a: &a [*a]\n", "alias"),
        (b"[" * 5000 + b"]" * 5000, "nested more than"),
        (GOOD.replace("count: {min: 1, max: 4}", f"count: {{min: 1{'0' * 5000}, max: 4}}").encode(),
         "line"),
    ],
    ids=["not-utf8", "bad-tag", "metadata-string", "duplicate", "bomb", "recursive", "deep",
         "huge-int"],
)  # fmt: skip
def test_a_hostile_file_is_refused_naming_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, says: str
) -> None:
    began = time.perf_counter()
    err = validate(tmp_path, content, capsys)
    assert says in err, err
    assert time.perf_counter() - began < 2.0  # the bound a file gets, on a loaded machine too


def test_an_alias_bomb_is_refused_before_it_expands() -> None:
    began = time.perf_counter()
    with pytest.raises(ManifestError, match="aliases nested in aliases"):
        load_documents(BOMB)
    assert time.perf_counter() - began < 1.0


def test_a_deadline_too_long_for_any_clock_is_an_error_on_its_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = (EXAMPLES / "gpt2-finetune-deadline.yaml").read_text()
    far = job.replace("deadline: 48h", "deadline: 99999999999999999999h")
    err = validate(tmp_path, far.encode(), capsys)
    assert "spec.deadline" in err


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_no_mangled_example_ends_in_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: st.DataObject
) -> None:
    """Bytes of a real example overwritten, inserted or cut at random places."""
    raw = bytearray(GOOD.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        what = data.draw(st.sampled_from(["put", "cut", "insert"]))
        junk = data.draw(st.binary(min_size=1, max_size=8) | st.sampled_from(YAML_BITS))
        if what == "put":
            raw[at : at + len(junk)] = junk
        elif what == "cut":
            del raw[at : at + len(junk)]
        else:
            raw[at:at] = junk
    path = tmp_path / "mangled.yaml"
    path.write_bytes(bytes(raw))
    began = time.perf_counter()
    tracemalloc.start()
    try:
        code = main(["validate", str(path)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    err = capsys.readouterr().err
    assert code in (0, 1, 2) and "Traceback" not in err
    assert peak < 200 << 20 and time.perf_counter() - began < 2.0  # the bounds a file gets


def test_an_integer_past_int64_is_blamed_on_its_own_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = (EXAMPLES / "elastic-resnet50-training.yaml").read_text()
    huge = job.replace("iterations: 450000", f"iterations: {2**63}")
    err = validate(tmp_path, huge.encode(), capsys)
    assert "spec.workload.totalWork.iterations" in err and "64-bit integer" in err
    assert "rule" not in err


def test_a_trace_that_is_not_utf8_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "trace.csv"
    path.write_bytes(b"job_id,num_gpu\n\xff\xfe,1\n")
    with pytest.raises(TraceError, match=r"trace.csv: not UTF-8"):
        load_itp(path)


def test_a_record_row_of_the_wrong_width_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    shipped = (tables.SHIPPED / tables.THROUGHPUT_FILE).read_text().splitlines()
    path = tmp_path / "records.csv"
    path.write_text("\n".join([*shipped[:3], "bert,1"]) + "\n")
    with pytest.raises(ValueError, match=r"records.csv:4: 2 fields, the header names"):
        tables.read_records(path)
