"""The control plane leaves no process behind: not when stopped, not when its runner is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.cluster.controlplane import ControlPlane, build
from tests.conftest import ROOT
from tests.kube import eventually

pytestmark = pytest.mark.controlplane


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains `text` (our workdir is in every component's flags)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(int(entry.name))
    return found


def test_stop_ends_every_process_it_started(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path, build())
    try:
        plane.start()
        pids = [p.pid for p in plane.processes.values()]
        assert len(pids) == 5
    finally:
        plane.stop()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_killed_runner_takes_its_control_plane_with_it() -> None:
    runner = subprocess.Popen(
        [sys.executable, "-m", "e2e.cluster"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert runner.stdout is not None
    first = runner.stdout.readline()  # "control plane up in ... ; logs in <workdir>"
    assert "control plane up" in first, first
    workdir = first.rsplit(" ", 1)[-1].strip()
    assert processes_mentioning(workdir)
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    eventually(lambda: not processes_mentioning(workdir), timeout=10, what="no process left")
