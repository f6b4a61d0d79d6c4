"""berth's training workers under real torchrun (gloo, CPU), run as processes by the process
harness (e2e/cluster/kubelet.py) on the real control plane: one group per job, resized by the
elastic policy through the operator, resumed from the checkpoint, progress counted once.

Each case prints the world sizes its workers reported and the seconds from berth's decision
(job creation, status.resizes' time) to the workers reporting the new world."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from e2e.cluster.kubelet import missing_capabilities
from tests.torchrun import (
    A100S,
    NS,
    T4,
    Env,
    accounted,
    generations,
    grow_and_shrink,
    holder,
    release,
    since,
    start,
    trainer,
)

pytestmark = [pytest.mark.controlplane, pytest.mark.operator, pytest.mark.torchrun]


@pytest.fixture(scope="module", autouse=True)
def capable() -> None:
    problem = missing_capabilities()
    if problem and os.environ.get("CI"):
        pytest.fail(f"CI runs the torchrun tests as root: {problem}")
    if problem:
        pytest.skip(problem)


@pytest.fixture(scope="module")
def a100s(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield from start(tmp_path_factory.mktemp("torchrun-elastic"), [A100S])


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield from start(tmp_path_factory.mktemp("torchrun-move"), [{**A100S, "nodes": 2}, T4])


def test_an_elastic_job_forms_one_group_and_berth_grows_and_shrinks_it(
    a100s: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    env = a100s
    run = grow_and_shrink(env)
    first, grown, shrunk = run.first, run.grown, run.shrunk
    assert first.ranks == (0, 1) and first.hosts == ("stretch-w0", "stretch-w1")
    assert first.resumed == 0
    assert [(r["fromCount"], r["toCount"]) for r in run.resizes] == [(2, 3), (3, 2)]
    assert grown.ranks == (0, 1, 2) and grown.resumed > 0
    assert run.resizes[-1]["reason"] == "make room for urgent"
    assert shrunk.ranks == (0, 1) and shrunk.resumed >= grown.resumed
    env.until("urgent running", lambda: env.status("urgent").get("phase") == "Running")
    formed_s, grow_s, shrink_s = run.seconds["form"], run.seconds["grow"], run.seconds["shrink"]

    seen = accounted(env, "stretch")
    with capsys.disabled():  # the figures belong in CI's log
        print(f"\ntorchrun elastic: worlds seen {[g.world for g in seen]}; from berth's decision "
              f"to training at the new world: form {formed_s:.1f} s, grow {grow_s:.1f} s, "
              f"shrink {shrink_s:.1f} s; {sum(g.counted for g in seen)} samples counted, "
              f"each once")  # fmt: skip
    assert [g.world for g in seen] == [2, 3, 2]
    assert "forbidden" not in env.operator.log.read_text().lower()


def test_the_harness_shows_the_split_that_the_services_name_as_endpoint_causes(
    a100s: Env,
) -> None:
    """The harness is faithful to what broke before: with the endpoint on the Service's name
    (which resolves to every worker) and no host named, each agent finds its own address in
    it, hosts a store of its own and trains alone."""
    env = a100s
    job = trainer(env, "split", 1, 2)
    job["spec"] |= {"elastic": True, "objective": {"type": "time"}}  # both free nodes
    (container,) = job["spec"]["template"]["spec"]["containers"]
    container["env"] = [  # after berth's: the last of a name wins, as in Kubernetes
        {"name": "PET_RDZV_ENDPOINT", "value": f"split.{NS}.svc:29400"},
        {"name": "PET_RDZV_CONF", "value": "last_call_timeout=5"},
    ]
    env.create(job)
    alone = env.until(
        "two groups of one",
        lambda: (
            len(found := [g for g in generations(env.tmp / "split" / "reports") if g.world == 1])
            >= 2
            and found
        ),
    )
    assert sorted(h for g in alone for h in g.hosts) == ["split-w0", "split-w1"]
    env.delete("split")


def test_a_rigid_job_forms_one_group_of_two_and_resumes_from_its_save_after_a_move(
    mixed: Env, capsys: pytest.CaptureFixture[str]
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
    with capsys.disabled():  # the figures belong in CI's log
        print(f"\ntorchrun rigid: worlds seen {[g.world for g in seen]}; form {formed_s:.1f} s, "
              f"move to t4 {move_s:.1f} s")  # fmt: skip
    assert [g.world for g in seen] == [2, 2]
