"""Trace loaders read every row of the raw traces in seconds, and each trace job becomes an
AcceleratorJob the operator's own parser accepts. Counts were taken with csv.DictReader."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from berth.core import tables
from berth.core.cluster import node_objects, parse_cluster
from berth.core.job import parse_job
from berth.core.snapshot import build_snapshot
from berth.simulate import CLUSTERS
from berth.simulator.engine import EPOCH
from berth.simulator.run import prepare
from berth.simulator.traces import TraceError, TraceJob, as_manifest, load_itp, load_philly
from berth.simulator.truth import GroundTruth


def test_the_itp_traces_hold_every_job(shared_data: Path) -> None:
    traces = shared_data / "elasticflow/traces"
    assert len(load_itp(traces / "cluster01.csv")) == 1595
    assert len(load_itp(traces / "195job.csv")) == 195
    assert sum(len(load_itp(p)) for p in sorted(traces.glob("cluster*.csv"))) == 69351


def test_an_itp_job_keeps_its_units(shared_data: Path) -> None:
    jobs = load_itp(shared_data / "elasticflow/traces/cluster01.csv")
    (job,) = [j for j in jobs if j.id == "965d744f-0445-c1a8-12af-97e4c536c66e"]
    assert (job.submitted_s, job.deadline_s, job.duration_s) == (1932025, 1933904, 2429)
    assert (job.model, job.iterations, job.batch_size, job.gpus) == ("resnet50", 45775, 256, 64)


def test_itp_jobs_come_in_submission_order_with_deadlines_after_submission(
    shared_data: Path,
) -> None:
    jobs = load_itp(shared_data / "elasticflow/traces/cluster01.csv")
    assert [j.submitted_s for j in jobs] == sorted(j.submitted_s for j in jobs)
    assert all(j.deadline_s is not None and j.deadline_s > j.submitted_s for j in jobs)


def test_philly_times_count_from_the_first_submission(shared_data: Path) -> None:
    jobs = load_philly(shared_data / "pollux/philly.csv")
    assert len(jobs) == 82247  # the data README's 82,248 counts the header line
    assert jobs[0].submitted_s == 0
    assert min(j.gpus for j in jobs) == 1 and max(j.gpus for j in jobs) == 128
    assert all(j.model is None and j.deadline_s is None for j in jobs)


def test_every_trace_job_becomes_a_valid_accelerator_job(shared_data: Path) -> None:
    jobs = load_itp(shared_data / "elasticflow/traces/195job.csv")
    parsed = [parse_job(as_manifest(j)) for j in jobs]
    assert len({p.name for p in parsed}) == len(jobs)
    first = parsed[0]
    assert first.accelerators.count.max == jobs[0].gpus and first.workload.total_work is not None
    assert first.deadline is not None and first.deadline.within is not None


def test_a_bad_row_is_named_by_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "job_id,submission_time,num_iteration,model_name,deadline,batch_size,num_gpu,duration\n"
        "a,10,100,bert,20,32,two,5\n"
    )
    with pytest.raises(TraceError, match=r"bad.csv:2: num_gpu='two' is not a int"):
        load_itp(bad)


def test_berths_view_of_a_trace_job_is_the_manifest_with_the_count_left_to_it() -> None:
    trace = [TraceJob("j", 0, 2, 100, "resnet50", 1000, 64, 5000)]
    nodes = [replace(n, ready=True) for n in build_snapshot(node_objects(parse_cluster(
        yaml.safe_load((CLUSTERS / "small.yaml").read_text()))), []).nodes]  # fmt: skip
    records, power = tables.read()
    work = prepare(trace, nodes, GroundTruth(records, power))
    (berth,) = work.berth_jobs
    up_to = berth.job.accelerators.count.max
    assert up_to > 2 and berth.job == parse_job(as_manifest(trace[0], EPOCH, up_to=up_to))
