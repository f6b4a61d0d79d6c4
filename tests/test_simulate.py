"""`berth simulate` replays a trace under every policy and writes the table, report and plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from berth.cli import main
from berth.core import tables
from berth.simulator.engine import Ran, Run
from berth.simulator.report import slowdowns
from berth.simulator.run import POLICIES, assign_workloads
from berth.simulator.traces import load_itp, load_philly
from berth.simulator.truth import GroundTruth

REPORT_KEYS = {"energy_kwh", "avg_jct_s", "p99_jct_s", "makespan_s", "deadlines_met", "jobs"}


def simulate(tmp_path: Path, *args: str) -> int:
    out = ["--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png")]
    return main(["simulate", "--quiet", *out, *args])


def test_simulate_writes_every_policy_to_the_report_and_the_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert simulate(tmp_path, "--jobs", "40") == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report["policies"]) == set(POLICIES)
    for figures in report["policies"].values():
        assert set(figures) >= REPORT_KEYS and figures["jobs"] == 40
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    out = capsys.readouterr().out
    assert "kube-default" in out and "1.00x" in out and "MODELLED" in out


def test_only_the_elastic_policies_resize_and_each_resize_pays_the_restart_given(
    tmp_path: Path,
) -> None:
    assert simulate(tmp_path, "--policies", "berth,berth-rigid", "--restart-s", "30,gpt2=90") == 0
    report = json.loads((tmp_path / "r.json").read_text())
    elastic, rigid = report["policies"]["berth"], report["policies"]["berth-rigid"]
    assert elastic["resizes"] > 0 and rigid["resizes"] == rigid["restart_overhead_s"] == 0
    assert 30 * elastic["resizes"] <= elastic["restart_overhead_s"] <= 90 * elastic["resizes"]
    assert report["restart_s"] == {"default": 30, "gpt2": 90}


@pytest.mark.slow
def test_on_the_itp_sample_berth_meets_more_deadlines_than_rigid_and_twice_kube_default_sooner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert simulate(tmp_path, "--policies", "berth,berth-rigid,kube-default") == 0
    policies = json.loads((tmp_path / "r.json").read_text())["policies"]
    met = {name: m["deadlines_met"] for name, m in policies.items()}
    assert met["berth"] > met["berth-rigid"] and met["berth"] >= 2 * met["kube-default"]
    # A job late whatever it gets is no longer parked on the device that wastes least.
    assert policies["berth"]["makespan_s"] <= policies["berth-rigid"]["makespan_s"]
    assert "onto another type" in capsys.readouterr().out


def test_berth_cold_is_told_by_a_predictor_that_saw_none_of_the_traces_families(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert simulate(tmp_path, "--policies", "berth-cold,kube-default", "--window", "0:12") == 0
    assert "berth-cold's model saw" not in capsys.readouterr().err
    assert json.loads((tmp_path / "r.json").read_text())["policies"]["berth-cold"]["jobs"] > 0


def test_simulate_runs_the_chosen_policies_on_a_window_of_the_trace(tmp_path: Path) -> None:
    assert simulate(tmp_path, "--policies", "berth,kube-default", "--window", "0:6") == 0
    report = json.loads((tmp_path / "r.json").read_text())
    first = min(j.submitted_s for j in load_itp(Path(report["trace"])))
    in_window = [j for j in load_itp(Path(report["trace"])) if j.submitted_s - first < 6 * 3600]
    assert set(report["policies"]) == {"berth", "kube-default"}
    assert report["policies"]["berth"]["jobs"] == len(in_window)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policies", "berth,slurm"], "unknown ['slurm']"),
        (["--window", "6:1"], "want 0 <= START < END"),
        (["--jobs", "0"], "--jobs must be at least 1"),
        (["--cluster", "nowhere"], "no such file or bundled cluster"),
        (["--restart-s", "60,gpt2=soon"], "'soon' is not seconds"),
        (["--restart-s", "-5"], "-5 is negative"),
    ],
)
def test_simulate_refuses_bad_options_with_a_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert simulate(tmp_path, *args) == 2
    assert message in capsys.readouterr().err


def test_simulate_names_each_bad_field_of_a_cluster_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("name: c\npools:\n- {name: a, accelerator: a100-sxm4-80gb, gpusPerNode: 8,"
                   " nodes: 1, cpuCores: 8, idleWatts: lots}\n")  # fmt: skip
    assert simulate(tmp_path, "--cluster", str(bad)) == 2
    assert "pools[0].idleWatts" in capsys.readouterr().err


def test_philly_jobs_get_a_seeded_model_and_the_work_of_their_duration(
    shared_data: Path,
) -> None:
    truth = GroundTruth(*tables.read())
    philly = load_philly(shared_data / "pollux/philly.csv")[:200]
    mix = load_itp(shared_data / "elasticflow/traces/195job.csv")
    first, again = (assign_workloads(philly, mix, truth, seed=7) for _ in range(2))
    assert first == again
    job = next(j for j in first if j.iterations is not None and j.gpus == 1)
    assert job.model is not None and job.batch_size is not None
    rate = truth.throughput(job.model, "a100", 1, job.batch_size)
    assert rate is not None
    assert job.iterations == max(1, round(job.duration_s * rate.value / job.batch_size))


def ran(job: str, hours: float) -> Ran:
    return Ran(job, "a100", 1, (), 0.0, 0.0, hours * 3600, 0.0, None, False)


def test_a_jobs_slowdown_is_its_jct_over_its_jct_under_the_baseline() -> None:
    runs = {
        "kube-default": Run(ran=[ran("a", 1), ran("b", 2), ran("c", 4)]),
        "berth": Run(ran=[ran("a", 3), ran("b", 1), ran("c", 4)]),
    }
    fate = slowdowns(runs, "kube-default")
    assert fate["berth"] == {"slowdown_p99": 3.0, "slowdown_max": 3.0, "slowest_job": "a"}
    assert fate["kube-default"]["slowdown_max"] == 1.0
    assert slowdowns(runs, "gavel-like") == {}  # no baseline run: nothing to compare with


def test_open_loop_berth_measures_nothing_and_the_report_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert simulate(tmp_path, "--policies", "berth", "--jobs", "40", "--open-loop") == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["measuring"] is None
    assert not any(k.startswith("rate_error_after") for k in report["policies"]["berth"])
    assert "decide on their predictions alone (--open-loop)" in capsys.readouterr().out


def test_closed_loop_berth_acts_on_measured_rates_and_says_the_noise_is_modelled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert simulate(tmp_path, "--policies", "berth", "--jobs", "40", "--measure-noise", "0.1") == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["measuring"] == {"delay_s": 60.0, "noise": 0.1, "modelled": True}
    assert "rate_error_after_measurement_p50" in report["policies"]["berth"]
    assert "MODELLED 10% noise" in capsys.readouterr().out


def test_berth_explores_unless_told_not_to_and_the_report_says_which(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert simulate(tmp_path, "--policies", "berth", "--jobs", "40") == 0
    assert json.loads((tmp_path / "r.json").read_text())["explore"] is True
    assert "They explore: a trial at an unmeasured count" in capsys.readouterr().out
    assert simulate(tmp_path, "--policies", "berth", "--jobs", "40", "--no-explore") == 0
    assert json.loads((tmp_path / "r.json").read_text())["explore"] is False
    assert "They explore" not in capsys.readouterr().out
