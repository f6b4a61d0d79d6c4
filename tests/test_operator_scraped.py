"""The closed loop without Prometheus: the operator scrapes its workers' progress counters at
their pod IPs itself (operator/scraping.py). The workers are real processes run by the process
harness on the real control plane, each serving the real progress contract
(profiler/progress.py) at half the rate berth predicts; the operator reaches them over the
harness's Pod network, as it would in a cluster."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from e2e.cluster.kubelet import missing_capabilities
from tests.kube import PROGRESSING, grown_to_meet_its_deadline, training_job
from tests.torchrun import Env, start

pytestmark = [pytest.mark.controlplane, pytest.mark.operator, pytest.mark.torchrun]
ONE_A100 = {"name": "a100", "accelerator": "a100-sxm4-80gb", "gpusPerNode": 8, "nodes": 1,
            "cpuCores": 64, "memory": "512Gi"}  # fmt: skip
FLAGS = ["--resize-period", "3", "--resize-min-interval", "0", "--measure-window", "4"]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    problem = missing_capabilities()
    if problem and os.environ.get("CI"):
        pytest.fail(f"CI runs the process harness as root: {problem}")
    if problem:
        pytest.skip(problem)
    yield from start(tmp_path_factory.mktemp("scraped"), [ONE_A100], FLAGS)


def job(name: str, command: list[str], samples: int, deadline_s: int) -> dict[str, Any]:
    out = training_job(name, 1, 8)
    out["spec"]["workload"]["totalWork"] = {"samples": samples}
    out["spec"] |= {"elastic": True, "objective": {"type": "energy"},
                    "deadline": f"{deadline_s}s"}  # fmt: skip
    (container,) = out["spec"]["template"]["spec"]["containers"]
    container["command"] = command
    container["env"] = [{"name": "BERTH_METRICS_PORT", "value": "9100"}]
    return out


def test_a_job_measured_at_its_workers_is_corrected_grown_and_counted_across_a_restart(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    env.create(job("probe", ["sleep", "600"], 10**6, 10**6))  # what berth predicts for one
    placed = env.until("the probe placed", lambda: env.status("probe").get("placement"))
    rate = float(placed["predicted"]["throughput"])
    env.delete("probe")
    deadline_s = 600  # 60 % of it predicted on one device; at half the rate, too late
    command = ["python", "-c", PROGRESSING, str(rate / 2)]
    env.create(job("late", command, int(0.6 * deadline_s * rate), deadline_s))

    def measured() -> dict[str, Any] | None:
        progress = env.status("late").get("progress") or {}
        return progress if progress.get("measuredThroughput") else None

    progress = env.until("its progress measured at its worker", measured, timeout=90)
    assert progress["measuredThroughput"] == pytest.approx(rate / 2, rel=0.2)
    assert progress["plannedThroughput"] == pytest.approx(rate / 2, rel=0.25)
    assert progress["workLeft"] == "measured" and progress["samplesDone"] > 0
    assert [k.split("/")[1:] for k in progress["counters"]] == [[placed["type"], "1"]]

    resize = grown_to_meet_its_deadline(env.until, env.status, "late")

    before = env.status("late")["progress"]
    env.operator.stop()
    env.operator.start()

    def counted_on() -> dict[str, Any] | None:
        now = env.status("late")["progress"]
        return now if now["measuredAt"] > before["measuredAt"] and "samplesDone" in now else None

    after = env.until("measured again after a restart", counted_on, timeout=60)
    # The restarted operator counts on from the status: nothing done before it is lost.
    assert after["samplesDone"] > before["samplesDone"]
    with capsys.disabled():
        print(
            f"\nscraped at the worker: {progress['measuredThroughput']:.0f}/s against "
            f"{rate:.0f}/s predicted; grown x1 -> x{resize['toCount']}; samples done "
            f"{before['samplesDone']:.0f} before a restart, {after['samplesDone']:.0f} after"
        )
