"""The closed loop on a real control plane with a real Prometheus: a running job's progress
counter is scraped, the operator reads it back, shows it in the job's status and decides its
next resize on it. The workload serves the real progress contract (profiler/progress.py) as a
process of its own, restarted with its new world size after each resize, as a worker is."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from berth.crds import GROUP, VERSION
from tests.conftest import ROOT, own_control_plane
from tests.kube import (
    PROGRESSING,
    BerthProcess,
    eventually,
    free_port,
    grown_to_meet_its_deadline,
    operator,
    training_job,
)
from tests.prometheus import Prometheus, binaries, wait_http

pytestmark = [pytest.mark.controlplane, pytest.mark.operator, pytest.mark.prometheus]
NS = "measured"
NODES = {
    "name": "one-a100",
    "pools": [{"name": "a100", "accelerator": "a100-sxm4-80gb", "gpusPerNode": 8, "nodes": 1,
               "cpuCores": 64, "memory": "512Gi"}],
}  # fmt: skip
PERIOD_S, WINDOW_S = 3, 4  # resize period and measured window: short, for a test


class Workload:
    """The job's workers as Prometheus sees them: one counter on one port, served by a process
    that is restarted, counter at zero, with the allocation's labels whenever it changes."""

    def __init__(self, port: int) -> None:
        self.port, self.held = port, ("", 0)
        self.proc: subprocess.Popen[bytes] | None = None

    def run(self, type_id: str, count: int, rate: float) -> None:
        if (type_id, count) == self.held:
            return
        self.stop()
        labels = {"BERTH_JOB": "late", "BERTH_ACCELERATOR": type_id, "BERTH_WORLD_SIZE": str(count)}
        env = os.environ | labels | {"BERTH_METRICS_PORT": str(self.port)}
        self.proc = subprocess.Popen([sys.executable, "-c", PROGRESSING, str(rate)], env=env)
        self.held = (type_id, count)
        wait_http(f"http://127.0.0.1:{self.port}/metrics")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


class Env:
    def __init__(
        self, jobs: client.CustomObjectsApi, op: BerthProcess, work: Workload, prom: Prometheus
    ) -> None:
        self.jobs, self.operator, self.workload, self.prometheus = jobs, op, work, prom

    def status(self, name: str) -> dict[str, Any]:
        got = self.jobs.get_namespaced_custom_object(GROUP, VERSION, NS, "acceleratorjobs", name)
        return dict(got.get("status") or {})

    def until(self, what: str, check: Any, timeout: float = 60) -> Any:
        try:
            return eventually(check, timeout, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.operator.tail()}") from None


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("measured")
    bin_dir = binaries()
    workload = Workload(free_port())
    for cluster in own_control_plane(tmp / "plane"):
        cluster.add_nodes(NODES)
        cluster.install_crd()
        identity = cluster.service_account(ROOT / "operator" / "rbac.yaml", "berth-operator",
                                           "berth-system")  # fmt: skip
        cluster.namespace(NS)
        target = ("workload", f"127.0.0.1:{workload.port}", {"namespace": NS})
        prometheus = Prometheus(bin_dir, tmp, [target])
        flags = ["--resize-period", str(PERIOD_S), "--resize-min-interval", "0",
                 "--prometheus-url", prometheus.url, "--measure-window", str(WINDOW_S)]  # fmt: skip
        op = operator(identity, tmp / "operator.log", None, flags).start()
        try:
            yield Env(client.CustomObjectsApi(cluster.api), op, workload, prometheus)
        finally:
            op.stop()
            workload.stop()
            prometheus.stop()


def late_job(samples: int, deadline_s: int) -> dict[str, Any]:
    job = training_job("late", 1, 8)
    job["spec"]["workload"]["totalWork"] = {"samples": samples}
    job["spec"] |= {"elastic": True, "objective": {"type": "energy"},
                    "deadline": f"{deadline_s}s"}  # fmt: skip
    return job


def test_a_job_running_at_half_its_predicted_rate_is_corrected_and_grown_to_meet_its_deadline(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    """On its prediction the job meets its deadline where it is placed; at the rate it really
    runs it would not. Within two measurement periods its status shows the measured rate and
    the plan uses it; the next resize grows it to meet the deadline."""
    probe = late_job(10**6, 10**6)  # what berth predicts for one device, read from a probe
    probe["metadata"]["name"] = "probe"
    env.jobs.create_namespaced_custom_object(GROUP, VERSION, NS, "acceleratorjobs", probe)
    placed = env.until("the probe placed", lambda: env.status("probe").get("placement"))
    assert placed["count"] == 1, placed  # energy first: one device, when in time
    rate = float(placed["predicted"]["throughput"])
    deadline_s = 600
    job = late_job(int(0.6 * deadline_s * rate), deadline_s)  # 60 % of its deadline, predicted
    env.jobs.create_namespaced_custom_object(GROUP, VERSION, NS, "acceleratorjobs", job)
    first = env.until("the job running", lambda: (s := env.status("late")).get("phase")
                      == "Running" and s["placement"])  # fmt: skip
    assert first["count"] == 1
    env.workload.run(first["type"], 1, rate / 2)  # its worker runs, and serves its counter
    began = time.monotonic()

    def measured() -> dict[str, Any] | None:
        progress = env.status("late").get("progress") or {}
        return progress if progress.get("measuredThroughput") else None

    progress = env.until("its progress measured", measured, timeout=60)
    took = time.monotonic() - began
    assert progress["measuredThroughput"] == pytest.approx(rate / 2, rel=0.2)
    assert progress["predictedThroughput"] == pytest.approx(rate)
    assert progress["plannedThroughput"] == pytest.approx(rate / 2, rel=0.25)
    assert progress["workLeft"] == "measured" and progress["samplesDone"] > 0

    resize = grown_to_meet_its_deadline(env.until, env.status, "late")
    with capsys.disabled():  # the figures belong in CI's log
        print(
            f"\nmeasured {progress['measuredThroughput']:.0f}/s against {rate:.0f}/s predicted, "
            f"shown {took:.1f} s after its counter was first served; "
            f"grown x1 -> x{resize['toCount']}"
        )
