"""parse_job turns a manifest into typed data, checking what CEL cannot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from berth.core.job import check_deadline, parse_duration, parse_job
from berth.core.validation import InvalidObject
from tests.conftest import EXAMPLES, load_example

EXAMPLE_FILES = sorted(str(p.relative_to(EXAMPLES)) for p in EXAMPLES.glob("**/*.yaml"))


def test_there_are_examples_of_each_kind_a_user_writes() -> None:
    jobs = [parse_job(load_example(name)) for name in EXAMPLE_FILES]
    assert any(j.elastic and j.workload.kind == "training" for j in jobs)
    assert any(j.accelerators.count.rigid and j.accelerators.count.min > 1 for j in jobs)
    assert any(j.workload.kind == "inference" for j in jobs)
    assert any(j.accelerators.allows("cpu") and j.workload.kind == "hpc" for j in jobs)


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_every_example_validates(name: str) -> None:
    job = parse_job(load_example(name))
    assert job.name and job.template["spec"]["containers"]


def test_iterations_become_samples_through_the_batch_size(elastic_job: dict[str, Any]) -> None:
    assert parse_job(elastic_job).workload.total_samples == 450_000 * 256


def test_quantities_become_bytes(elastic_job: dict[str, Any]) -> None:
    elastic_job["spec"]["accelerators"]["minDeviceMemory"] = "40Gi"
    job = parse_job(elastic_job)
    assert job.workload.memory_per_replica_bytes == 14 * 2**30
    assert job.accelerators.min_device_memory_bytes == 40 * 2**30


def test_unknown_accelerator_type_is_rejected_listing_the_known_ones(
    elastic_job: dict[str, Any],
) -> None:
    elastic_job["spec"]["accelerators"]["types"] = ["a100", "b300"]
    with pytest.raises(InvalidObject) as caught:
        parse_job(elastic_job)
    (error,) = caught.value.errors
    assert (error.path, error.value) == ("spec.accelerators.types[1]", "b300")
    assert "h100" in error.message


def test_empty_types_mean_any_gpu_but_not_cpu(elastic_job: dict[str, Any]) -> None:
    elastic_job["spec"]["accelerators"]["types"] = []
    request = parse_job(elastic_job).accelerators
    assert request.allows("t4") and not request.allows("cpu")


def test_balanced_objective_weighs_energy_half_by_default(elastic_job: dict[str, Any]) -> None:
    elastic_job["spec"]["objective"] = {"type": "balanced"}
    assert parse_job(elastic_job).objective.energy_weight == 0.5


@pytest.mark.parametrize(
    ("text", "seconds"), [("36h", 129600), ("90m", 5400), ("1h30m", 5400), ("2.5h", 9000)]
)
def test_durations_read_like_kubernetes_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_a_duration_deadline_counts_from_creation(elastic_job: dict[str, Any]) -> None:
    elastic_job["metadata"]["creationTimestamp"] = "2026-11-20T00:00:00Z"
    job = parse_job(elastic_job)
    assert job.deadline is not None and job.created is not None
    assert job.deadline.resolve(job.created) == datetime(2026, 11, 21, 12, tzinfo=UTC)
    assert check_deadline(job, datetime(2026, 11, 21, 11, tzinfo=UTC)) is None


def test_a_passed_deadline_is_reported_on_its_field(elastic_job: dict[str, Any]) -> None:
    elastic_job["spec"]["deadline"] = "2026-01-01T00:00:00Z"
    error = check_deadline(parse_job(elastic_job), datetime(2026, 11, 24, tzinfo=UTC))
    assert error is not None and error.path == "spec.deadline" and "has passed" in error.message


def test_an_impossible_date_is_rejected_on_the_deadline(elastic_job: dict[str, Any]) -> None:
    elastic_job["spec"]["deadline"] = "2026-02-30T00:00:00Z"
    with pytest.raises(InvalidObject) as caught:
        parse_job(elastic_job)
    assert caught.value.errors[0].path == "spec.deadline"


def test_wrong_kind_or_missing_name_is_named(elastic_job: dict[str, Any]) -> None:
    elastic_job["kind"] = "Job"
    del elastic_job["metadata"]["name"]
    with pytest.raises(InvalidObject) as caught:
        parse_job(elastic_job)
    assert [e.path for e in caught.value.errors] == ["kind", "metadata.name"]


def test_numbers_are_read_as_kubectl_reads_them() -> None:
    job = parse_job(load_example("rigid-lammps-hpc.yaml"))
    assert job.workload.flops_per_sample == 2.1e9


def test_the_torchrun_example_runs_the_script_beside_it() -> None:
    job = parse_job(load_example("torchrun/elastic-training.yaml"))
    (container,) = job.template["spec"]["containers"]
    assert job.elastic and container["command"][0] == "torchrun"
    script = container["command"][1].rsplit("/", 1)[1]
    assert (EXAMPLES / "torchrun" / script).exists()
