"""berth's training workers under real torchrun (gloo, CPU), run as processes by the process
harness (e2e/cluster/kubelet.py) on the real control plane: one group per job, resized by the
elastic policy through the operator, resumed from the checkpoint, progress counted once.

Each case prints the world sizes its workers reported and the seconds from berth's decision
(job creation, status.resizes' time) to the workers reporting the new world."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from berth.crds import GROUP, VERSION
from e2e.cluster.kubelet import ProcessKubelet, missing_capabilities
from tests.conftest import ROOT, own_control_plane
from tests.kube import BerthProcess, eventually, operator, training_job
from tests.torchrun import Generation, generations, since

pytestmark = [pytest.mark.controlplane, pytest.mark.operator, pytest.mark.torchrun]
PLURAL = "acceleratorjobs"
NS = "torchrun"
RESIZE = ["--resize-period", "2", "--resize-min-interval", "0"]
A100S = {"name": "a100", "accelerator": "a100-sxm4-80gb", "gpusPerNode": 1, "nodes": 3,
         "cpuCores": 16, "memory": "64Gi"}  # fmt: skip
# Eight T4s on one node: a move onto two of them leaves the type idle enough to be allowed.
T4 = {"name": "t4", "accelerator": "t4", "gpusPerNode": 8, "nodes": 1, "cpuCores": 16,
      "memory": "64Gi"}  # fmt: skip
TIMEOUT = 150  # s for a group to form: torch imports and rendezvous on two shared cores


@pytest.fixture(scope="module", autouse=True)
def capable() -> None:
    problem = missing_capabilities()
    if problem and os.environ.get("CI"):
        pytest.fail(f"CI runs the torchrun tests as root: {problem}")
    if problem:
        pytest.skip(problem)


class Env:
    def __init__(self, core: client.CoreV1Api, api: client.ApiClient, op: BerthProcess,
                 kubelet: ProcessKubelet, tmp: Path) -> None:  # fmt: skip
        self.core, self.operator, self.kubelet, self.tmp = core, op, kubelet, tmp
        self.jobs = client.CustomObjectsApi(api)

    def create(self, job: dict[str, Any]) -> None:
        self.jobs.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, job)

    def delete(self, name: str) -> None:
        self.jobs.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)

    def status(self, name: str) -> dict[str, Any]:
        got = self.jobs.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
        return dict(got.get("status") or {})

    def created(self, name: str) -> str:
        got = self.jobs.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
        return str(got["metadata"]["creationTimestamp"])

    def pods(self, name: str) -> list[client.V1Pod]:
        return list(self.core.list_namespaced_pod(NS, label_selector=f"berth.dev/job={name}").items)

    def until(self, what: str, check: Any, timeout: float = TIMEOUT) -> Any:
        try:
            return eventually(check, timeout, what=what)
        except AssertionError as exc:
            logs = "\n".join(
                f"--- {p.metadata.name}\n{self.kubelet.log(NS, p.metadata.name)[-3000:]}"
                for p in self.core.list_namespaced_pod(NS).items
            )
            raise AssertionError(
                f"{exc}\nharness errors: {self.kubelet.errors[-5:]}\n{logs}\n{self.operator.tail()}"
            ) from None

    def world(self, job: str, size: int, after: float = 0.0) -> Generation:
        """The first group of `size` workers formed after `after` (unix time)."""
        reports = self.tmp / job / "reports"

        def formed() -> Generation | None:
            found = [g for g in generations(reports) if g.formed > after and g.world == size]
            return found[0] if found else None

        return self.until(f"{job}: a world of {size}", formed)  # type: ignore[no-any-return]


def start(tmp: Path, pools: list[dict[str, Any]]) -> Iterator[Env]:
    for cluster in own_control_plane(tmp / "plane"):
        cluster.install_crd()
        identity = cluster.service_account(ROOT / "operator" / "rbac.yaml", "berth-operator",
                                           "berth-system")  # fmt: skip
        cluster.namespace(NS)
        kubelet = ProcessKubelet(cluster.core, tmp / "kubelet", cwd=ROOT)
        try:
            kubelet.start({"name": "harness", "pools": pools})
            op = operator(identity, tmp / "operator.log", None, RESIZE).start()
            try:
                yield Env(cluster.core, cluster.api, op, kubelet, tmp)
            finally:
                op.stop()
        finally:
            kubelet.stop()


@pytest.fixture(scope="module")
def a100s(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield from start(tmp_path_factory.mktemp("torchrun-elastic"), [A100S])


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield from start(tmp_path_factory.mktemp("torchrun-move"), [{**A100S, "nodes": 2}, T4])


def trainer(env: Env, name: str, low: int, high: int) -> dict[str, Any]:
    """A training job whose workers run examples/elastic_train.py under torchrun."""
    folder = env.tmp / name
    for sub in ("checkpoints", "reports"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    job = training_job(name, low, high)
    job["spec"]["workload"]["totalWork"] = {"samples": 10**9}
    (container,) = job["spec"]["template"]["spec"]["containers"]
    container["command"] = ["torchrun", "examples/elastic_train.py"]
    container["args"] = [
        "--checkpoint-dir", str(folder / "checkpoints"), "--report-dir", str(folder / "reports"),
        "--progress-dir", str(folder / "reports"), "--total-samples", str(10**9),
        "--step-seconds", "0.05", "--checkpoint-every", "20",
    ]  # fmt: skip
    return job


def holder(env: Env, name: str, count: int, types: list[str], priority: int = 0) -> dict[str, Any]:
    """A rigid job whose one worker holds its devices until its release file appears."""
    job = training_job(name, count)
    job["spec"] |= {"priority": priority}
    job["spec"]["accelerators"]["types"] = types
    (container,) = job["spec"]["template"]["spec"]["containers"]
    done = env.tmp / f"{name}.release"
    container["command"] = ["sh", "-c", f"until [ -e {done} ]; do sleep 0.2; done"]
    return job


def release(env: Env, name: str) -> None:
    (env.tmp / f"{name}.release").touch()
    env.until(f"{name} succeeded", lambda: env.status(name).get("phase") == "Succeeded")


def accounted(env: Env, job: str) -> list[Generation]:
    """Delete the job (every worker saves on SIGTERM), then check its progress: each group
    resumed where the one before stopped, and every sample counted once, beyond the work since
    the last checkpoint that a crash repeats (none here: every change was graceful)."""
    env.delete(job)
    env.until(f"{job}'s workers gone", lambda: not env.pods(job), timeout=90)
    seen = generations(env.tmp / job / "reports")
    for before, after in itertools.pairwise(seen):
        assert after.formed >= before.last, f"two groups at once: {before} and {after}"
        assert after.resumed == before.reached, f"{before} stopped where {after} did not resume"
    import torch

    final = torch.load(env.tmp / job / "checkpoints" / "latest.pt", weights_only=True)
    assert int(final["samples"]) == seen[-1].reached
    assert sum(g.counted for g in seen) == int(final["samples"])
    return seen


def test_an_elastic_job_forms_one_group_and_berth_grows_and_shrinks_it(a100s: Env) -> None:
    env = a100s
    env.create(holder(env, "blocker", 1, ["a100"]))
    env.until("blocker running", lambda: env.status("blocker").get("phase") == "Running")
    # At least 2: the policy shrinks a donor to its floor.
    job = trainer(env, "stretch", 2, 3)
    job["spec"] |= {"elastic": True, "objective": {"type": "time"}}
    env.create(job)
    first = env.world("stretch", 2)
    assert first.ranks == (0, 1) and first.hosts == ("stretch-w0", "stretch-w1")
    assert first.resumed == 0
    formed_s = since(env.created("stretch"), first.formed)

    release(env, "blocker")  # its node frees: the policy grows the job into it
    grown = env.world("stretch", 3, after=first.formed)
    (grow,) = env.status("stretch")["resizes"]
    assert (grow["fromCount"], grow["toCount"]) == (2, 3)
    assert grown.ranks == (0, 1, 2) and grown.resumed > 0
    grow_s = since(grow["time"], grown.formed)

    env.create(holder(env, "urgent", 1, ["a100"], priority=10))  # the policy gives a node back
    shrunk = env.world("stretch", 2, after=grown.formed)
    shrink = env.status("stretch")["resizes"][-1]
    assert (shrink["toCount"], shrink["reason"]) == (2, "make room for urgent")
    assert shrunk.ranks == (0, 1) and shrunk.resumed >= grown.resumed
    shrink_s = since(shrink["time"], shrunk.formed)
    env.until("urgent running", lambda: env.status("urgent").get("phase") == "Running")

    seen = accounted(env, "stretch")
    print(f"\ntorchrun elastic: worlds seen {[g.world for g in seen]}; from berth's decision to "
          f"training at the new world: form {formed_s:.1f} s, grow {grow_s:.1f} s, "
          f"shrink {shrink_s:.1f} s; {sum(g.counted for g in seen)} samples counted, "
          f"each once")  # fmt: skip
    assert [g.world for g in seen] == [2, 3, 2]
    assert "forbidden" not in env.operator.log.read_text().lower()


def test_a_rigid_job_forms_one_group_of_two_and_resumes_from_its_save_after_a_move(
    mixed: Env,
) -> None:
    env = mixed
    env.create(holder(env, "t4-blocker", 8, ["t4"]))
    env.until("t4 blocker running", lambda: env.status("t4-blocker").get("phase") == "Running")
    job = trainer(env, "mover", 2, 2)
    job["spec"] |= {"objective": {"type": "energy"}, "checkpoint": {"restartSeconds": 30}}
    job["spec"]["accelerators"]["types"] = ["a100", "t4"]
    env.create(job)
    first = env.world("mover", 2)
    assert first.ranks == (0, 1) and first.hosts == ("mover-w0", "mover-w1")
    formed_s = since(env.created("mover"), first.formed)

    release(env, "t4-blocker")  # the T4s free: better for energy, the policy moves the job
    moved = env.world("mover", 2, after=first.formed)
    (move,) = env.status("mover")["resizes"]
    assert (move["fromType"], move["toType"]) == ("a100", "t4")
    assert moved.hosts == ("mover-w0",) and moved.resumed > 0  # two ranks in one t4 worker
    assert all(p.spec.node_name == "t4-0" for p in env.pods("mover"))
    move_s = since(move["time"], moved.formed)

    seen = accounted(env, "mover")
    print(f"\ntorchrun rigid: worlds seen {[g.world for g in seen]}; form {formed_s:.1f} s, "
          f"move to t4 {move_s:.1f} s")  # fmt: skip
    assert [g.world for g in seen] == [2, 2]
