"""Counting a job's progress from its workers' own endpoints (operator/scraping.py): the
accounting on plain readings, the contract's text, the targets in the pod cache, and a scraper
over a fake network and clock."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from berth.core.posterior import Measured
from berth.operator.scraping import (
    MAX_BYTES,
    Counted,
    Reading,
    WorkerScraper,
    fetch,
    readings,
    targets,
)
from berth.operator.workers import LABEL_JOB
from berth.profiler.progress import ENV_PORT

T0 = datetime(2026, 12, 1, tzinfo=UTC).timestamp()


def reading(samples: float, pod: str = "u0", type_id: str = "a100", count: int = 1) -> Reading:
    return Reading(f"{pod}/{type_id}/{count}", samples, type_id, count)


def steady(count: Counted, rate: float, seconds: int, start: float = 0.0, **kw: Any) -> float:
    """One round a second at `rate`; the counter's value at the end."""
    value = start
    for s in range(seconds):
        value = start + rate * s
        count.add(T0 + s, [reading(value, **kw)], complete=True)
    return value


def written(done: float, **counters: float) -> dict[str, Any]:
    """status.progress as the last period wrote it."""
    return {"samplesDone": done, "counters": {f"{k}/a100/1": v for k, v in counters.items()}}


def test_a_steady_counter_gives_its_rate_per_window_without_the_first() -> None:
    count = Counted(window_s=4)
    steady(count, 100.0, 17)  # rounds at 0..16 s: windows 0-4, 4-8, 8-12, 12-16
    assert count.measured() == (Measured("a100", 1, (100.0, 100.0, 100.0)),)


def test_a_job_never_counted_has_done_what_its_workers_say() -> None:
    count = Counted(window_s=4)
    count.add(T0, [reading(700, pod="a"), reading(300, pod="b")], complete=True)
    assert count.done(None) == 1000.0


def test_samples_done_count_on_from_what_the_status_says() -> None:
    """Whoever wrote it (this operator a period ago, one before a restart, a replica that
    has handed over): 5,000 done when the worker's counter read 700; it reads 900 now."""
    count = Counted(window_s=4)
    count.add(T0, [reading(900)], complete=True)
    assert count.done(written(5000, u0=700)) == 5200.0


def test_a_counter_that_began_again_since_the_status_counts_from_zero() -> None:
    count = Counted(window_s=4)
    count.add(T0, [reading(30)], complete=True)  # below the 500 written: it restarted
    assert count.done(written(500, u0=500)) == 530.0


def test_a_worker_made_anew_under_its_name_is_a_new_series() -> None:
    count = Counted(window_s=4)
    count.add(T0, [reading(600, pod="new")], complete=True)  # higher than the old one's, yet new
    assert count.done(written(500, old=500)) == 1100.0


def test_an_incomplete_round_keeps_the_last_reading_of_who_did_not_answer() -> None:
    count = Counted(window_s=4)
    count.add(T0, [reading(0, pod="a"), reading(0, pod="b")], complete=True)
    count.add(T0 + 5, [reading(500, pod="a")], complete=False)  # b did not answer
    assert count.last == {"a/a100/1": 500.0, "b/a100/1": 0.0} and count.measured() == ()
    assert count.done(written(0, a=0, b=0)) == 500.0


def test_rounds_under_two_allocations_at_once_close_no_window() -> None:
    count = Counted(window_s=1)
    for s in range(6):
        mixed = [reading(100 * s, pod="a", count=1), reading(100 * s, pod="b", count=2)]
        count.add(T0 + s, mixed, complete=True)
    assert count.measured() == ()


def test_a_restart_inside_a_stretch_closes_no_window_across_it() -> None:
    count = Counted(window_s=2)
    for s, value in enumerate([0, 100, 200, 300, 10, 110, 210, 310, 410, 510]):
        count.add(T0 + s, [reading(value)], complete=True)
    # 0-2 (dropped), 2-... then the restart at 4 s; 4-6 (dropped), 6-8 at 100/s
    assert count.measured() == (Measured("a100", 1, (100.0,)),)


CONTRACT = """# HELP berth_job_samples_total Samples this worker has processed.
# TYPE berth_job_samples_total counter
berth_job_samples_total{accelerator="a100",berth_job="train",world_size="2"} 1234.0
berth_job_samples_total{accelerator="a100",berth_job="other",world_size="2"} 99.0
berth_job_samples_total{accelerator="",berth_job="train",world_size="2"} 5.0
berth_job_samples_total{accelerator="a100",berth_job="train",world_size="x"} 5.0
berth_job_samples_total{accelerator="t4",berth_job="train",world_size="1"} NaN
berth_job_samples_total{accelerator="t4",berth_job="train",world_size="1"} -3
"""


def test_readings_are_the_jobs_series_of_the_contract_only() -> None:
    assert readings(CONTRACT, "train", "uid") == [Reading("uid/a100/2", 1234.0, "a100", 2)]


def test_a_worker_answering_no_exposition_text_is_an_error() -> None:
    with pytest.raises(ValueError):
        readings("berth_job_samples_total{ 12\n", "train", "uid")


def pod(name: str, uid: str, phase: str = "Running", ip: str | None = "10.0.0.5",
        port: str | None = "9100", job: str | None = "train") -> dict[str, Any]:  # fmt: skip
    env = [] if port is None else [{"name": ENV_PORT, "value": port}]
    return {
        "metadata": {"name": name, "uid": uid, "namespace": "ml",
                     "labels": {} if job is None else {LABEL_JOB: job}},
        "spec": {"containers": [{"resources": {}, "env": env}]},
        "status": {"phase": phase, "podIP": ip},
    }  # fmt: skip


def test_targets_are_the_running_workers_that_serve_the_counter() -> None:
    pods = [
        pod("train-w0", "u0"),
        pod("train-w1", "u1", ip="fd00::7"),
        pod("train-w2", "u2", phase="Pending"),
        pod("train-w3", "u3", ip=None),
        pod("train-w4", "u4", port=None),
        pod("train-w5", "u5", port="99999"),
        pod("web", "u6", job=None),
    ]
    assert [(t.uid, t.url) for t in targets(pods)] == [
        ("u0", "http://10.0.0.5:9100/metrics"),
        ("u1", "http://[fd00::7]:9100/metrics"),
    ]


class Network:
    """Each URL's answer (text, or an exception to raise), on a clock the test moves."""

    def __init__(self) -> None:
        self.answers: dict[str, str | Exception] = {}
        self.now = T0

    def get(self, url: str, timeout_s: float) -> str:
        answer = self.answers[url]
        if isinstance(answer, Exception):
            raise answer
        return answer


def counter(samples: float, job: str = "train", count: int = 2) -> str:
    return (
        f'berth_job_samples_total{{accelerator="a100",berth_job="{job}",'
        f'world_size="{count}"}} {samples}\n'
    )


def test_the_scraper_answers_a_jobs_progress_from_its_workers() -> None:
    net, pods = Network(), [pod("train-w0", "u0"), pod("train-w1", "u1", ip="10.0.0.6")]
    scraper = WorkerScraper(lambda: pods, window_s=4, get=net.get, clock=lambda: net.now)
    for s in range(13):
        net.now = T0 + s
        net.answers = {"http://10.0.0.5:9100/metrics": counter(50.0 * s),
                       "http://10.0.0.6:9100/metrics": counter(50.0 * s)}  # fmt: skip
        scraper.round()
    now = datetime.fromtimestamp(net.now, UTC)
    got = scraper.of("ml", "train", now - timedelta(minutes=1), now)
    assert got is not None and got.samples_done == 1200.0
    assert got.measured == (Measured("a100", 2, (100.0, 100.0)),)
    assert dict(got.counters) == {"u0/a100/2": 600.0, "u1/a100/2": 600.0}
    before = {"samplesDone": 1000.0, "counters": {"u0/a100/2": 500.0, "u1/a100/2": 500.0}}
    again = scraper.of("ml", "train", now - timedelta(minutes=1), now, before)
    assert again is not None and again.samples_done == 1200.0


def test_a_worker_that_does_not_answer_leaves_its_round_incomplete() -> None:
    net, pods = Network(), [pod("train-w0", "u0"), pod("train-w1", "u1", ip="10.0.0.6")]
    failures: list[int] = []
    scraper = WorkerScraper(lambda: pods, window_s=1, get=net.get, clock=lambda: net.now,
                            failed=lambda: failures.append(1))  # fmt: skip
    for s in range(6):
        net.now = T0 + s
        net.answers = {"http://10.0.0.5:9100/metrics": counter(50.0 * s),
                       "http://10.0.0.6:9100/metrics": TimeoutError("timed out")}  # fmt: skip
        scraper.round()
    now = datetime.fromtimestamp(net.now, UTC)
    got = scraper.of("ml", "train", now - timedelta(minutes=1), now)
    assert got is not None and got.samples_done == 250.0 and got.measured == ()
    assert len(failures) == 6  # one a round, each counted


def test_a_job_without_running_workers_is_forgotten_and_not_measured() -> None:
    net, pods = Network(), [pod("train-w0", "u0")]
    scraper = WorkerScraper(lambda: pods, window_s=1, get=net.get, clock=lambda: net.now)
    net.answers = {"http://10.0.0.5:9100/metrics": counter(10.0, count=1)}
    scraper.round()
    pods.clear()
    scraper.round()
    now = datetime.fromtimestamp(net.now, UTC)
    assert scraper.of("ml", "train", now - timedelta(minutes=1), now) is None


@pytest.fixture
def server() -> Iterator[tuple[str, list[bytes]]]:
    """A real HTTP server answering what the test puts in its list."""
    body: list[bytes] = [b""]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body[0])))
            self.end_headers()
            self.wfile.write(body[0])

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/metrics", body
    finally:
        httpd.shutdown()


def test_fetch_reads_a_workers_answer(server: tuple[str, list[bytes]]) -> None:
    url, body = server
    body[0] = counter(5.0).encode()
    assert fetch(url, 2.0) == counter(5.0)


def test_fetch_refuses_an_answer_past_its_bound(server: tuple[str, list[bytes]]) -> None:
    url, body = server
    body[0] = b"#" * (MAX_BYTES + 1)
    with pytest.raises(ValueError, match="bytes"):
        fetch(url, 2.0)
