"""The collector against a real Prometheus scraping `berth exporter` (replay backend) and a
workload serving its progress counter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from berth.profiler.collector import Collector, connect, increase, parse_since, pod_selector
from tests.kube import free_port
from tests.prometheus import Prometheus, binaries, wait_http
from tests.recordings import busy_run, write

RATE = 1000.0  # samples/s the workload reports, paced by the wall clock
WATTS = 250.0
WORKLOAD = f"""
import time
from berth.profiler.progress import Progress
p, start = Progress("resnet50", 64), time.time()
while True:
    time.sleep(0.05)
    p.advance(int((time.time() - start) * {RATE}) - p.done)
"""


def test_a_counters_increase_spans_a_restart() -> None:
    assert increase([(0, 5.0), (1, 15.0), (2, 3.0), (3, 10.0)]) == 10 + 3 + 7


def test_durations_read_like_prometheus_ones() -> None:
    assert parse_since("7d") == 7 * 86400 and parse_since("90s") == 90
    with pytest.raises(ValueError, match="duration"):
        parse_since("a week")


def test_pods_are_selected_by_exact_name() -> None:
    assert pod_selector("ml", ["b.1", "a"]) == '{namespace="ml",pod=~"a|b\\\\.1"}'


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Prometheus, float]]:
    """Prometheus scraping the exporter (two replayed H100s at 250 W running pod ml/train-w0)
    and the workload (as pod ml/train-w0) for about ten seconds."""
    tmp = tmp_path_factory.mktemp("prometheus")
    bin_dir = binaries()
    recording = write(tmp / "gpu.jsonl", busy_run(600, WATTS, devices=2, pod="train-w0", per_s=2))
    exporter_port, workload_port = free_port(), free_port()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "berth",
                "exporter",
                "--replay",
                str(recording),
                "--port",
                str(exporter_port),
                "--interval",
                "0.5",
            ],
            stdout=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [sys.executable, "-c", WORKLOAD],
            env=os.environ
            | {
                "BERTH_METRICS_PORT": str(workload_port),
                "BERTH_JOB": "train",
                "BERTH_ACCELERATOR": "h100",
                "BERTH_WORLD_SIZE": "2",
            },
        ),
    ]
    prometheus = None
    try:
        wait_http(f"http://127.0.0.1:{exporter_port}/metrics")
        wait_http(f"http://127.0.0.1:{workload_port}/metrics")
        start = time.time()
        prometheus = Prometheus(
            bin_dir,
            tmp,
            [
                ("gpu", f"127.0.0.1:{exporter_port}", {}),
                ("workload", f"127.0.0.1:{workload_port}", {"namespace": "ml", "pod": "train-w0"}),
            ],
        )
        time.sleep(12)
        yield prometheus, start
    finally:
        for p in procs:
            p.kill()
            p.wait()
        if prometheus is not None:
            prometheus.stop()


@pytest.mark.prometheus
@pytest.mark.slow
def test_the_collector_turns_promql_answers_into_the_replayed_profile(
    scraped: tuple[Prometheus, float],
) -> None:
    prometheus, start = scraped
    (run,) = connect(prometheus.url).runs(start - 60, time.time())
    assert (run.namespace, run.job, run.pods) == ("ml", "train", ("train-w0",))
    assert (run.family, run.batch_size, run.accelerator, run.world_size) == (
        "resnet50",
        64,
        "h100",
        2,
    )
    assert run.end - run.start >= 5
    # Within the scrape resolution: one 1 s scrape interval over the span measured.
    tolerance = 1.0 / (run.end - run.start)
    assert run.throughput == pytest.approx(RATE, rel=tolerance)
    assert run.power_from == "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
    assert run.watts_per_device == pytest.approx(WATTS, rel=tolerance)
    record = run.record(prometheus.url)
    assert (record.count, record.accelerator) == (2, "h100")
    assert record.source.startswith(f"prometheus {prometheus.url} ml/train")


@pytest.mark.prometheus
@pytest.mark.slow
def test_retraining_from_prometheus_writes_its_comparison(
    scraped: tuple[Prometheus, float], tmp_path: Path
) -> None:
    prometheus, _ = scraped
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "berth",
            "train",
            "--from-prometheus",
            prometheus.url,
            "--since",
            "5m",
            "--members",
            "1",
            "--epochs",
            "1",
            "--quiet",
            "--out",
            "m.onnx",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "1 measured job run(s)" in done.stderr
    report = json.loads((tmp_path / "m.onnx.comparison.json").read_text())
    assert report["new_rows"] == 1  # two devices: throughput only (power rows are per device)
    assert report["promote"] is False and not (tmp_path / "m.onnx").exists()


@pytest.mark.prometheus
@pytest.mark.slow
def test_the_recommender_serves_its_drift_on_the_measured_runs(
    scraped: tuple[Prometheus, float],
) -> None:
    prometheus, _ = scraped
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "berth",
            "serve-recommender",
            "--port",
            str(port),
            "--drift-prometheus",
            prometheus.url,
            "--drift-window",
            "5m",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
                if "berth_recommender_drift_runs 1.0" in text:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "no drift measured in 30 s"
            time.sleep(0.2)
        (line,) = [
            x for x in text.splitlines() if x.startswith("berth_recommender_drift_throughput")
        ]
        assert 0 < float(line.split()[1]) < 10  # a real error, whatever its size
    finally:
        server.kill()
        server.wait()


@pytest.mark.prometheus
def test_the_exporters_metrics_pass_promtool(tmp_path: Path) -> None:
    from berth.profiler.exporter import Exporter
    from berth.profiler.replay import ReplayBackend

    recording = write(tmp_path / "gpu.jsonl", busy_run(10, WATTS, devices=2, pod="train-w0"))
    exporter = Exporter(ReplayBackend(recording), interval_s=1.0)
    exporter.take()
    text = exporter.text()
    assert 'DCGM_FI_DEV_POWER_USAGE{gpu="1",' in text and 'pod="train-w0"' in text
    done = subprocess.run(
        [str(binaries() / "promtool"), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_prometheus_that_does_not_answer_is_a_clear_error() -> None:
    with pytest.raises(ConnectionError, match="no Prometheus answers"):
        connect(f"http://127.0.0.1:{free_port()}")


def test_the_collector_needs_only_range_queries() -> None:
    class Empty:
        def custom_query_range(self, *args: object, **kw: object) -> list[dict[str, object]]:
            return []

        def custom_query(self, *args: object, **kw: object) -> list[dict[str, object]]:
            return []

    assert Collector(Empty(), "http://x").runs(0, 60) == []
