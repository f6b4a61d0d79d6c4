"""Each baseline on a hand-checked scenario: the user's count, and its own rule for type and
nodes."""

from __future__ import annotations

from typing import Any

from berth.core.prediction import Prediction
from berth.core.snapshot import build_snapshot
from berth.placement.eelas_like import eelas_like
from berth.placement.gavel_like import gavel_like
from berth.placement.kube_default import kube_default
from tests.test_placement import A100, NOW, V100, job, pred
from tests.test_snapshot import container, node, pod

T4 = "Tesla-T4"


def busy(name: str, gpus: int) -> dict[str, Any]:
    return pod(name, containers=[container(gpus=gpus)])


PREDS: dict[tuple[str, int], Prediction] = {
    ("a100", 4): pred(500, 400),  # 0.31 samples/J
    ("v100", 4): pred(300, 250),  # 0.30
    ("t4", 4): pred(100, 60),  # 0.42
}


def test_kube_default_takes_the_users_count_on_the_least_allocated_node() -> None:
    nodes = [node("a-busy", product=A100), node("a-idle", product=A100)]
    snapshot = build_snapshot(nodes, [busy("a-busy", 2)])
    p = kube_default(snapshot, job(["a100"], (1, 4)), PREDS, NOW)
    assert p.chosen is not None and p.chosen.nodes == (("a-idle", 4),)


def test_kube_default_spreads_over_types_blind_to_speed() -> None:
    nodes = [node("a", product=A100), node("v", product=V100)]
    snapshot = build_snapshot(nodes, [busy("a", 1)])
    p = kube_default(snapshot, job([], (4, 4)), PREDS, NOW)
    assert p.chosen is not None and p.chosen.type == "v100"


def test_kube_default_spreads_a_gang_over_the_emptiest_nodes() -> None:
    nodes = [node(f"t{i}", gpus=4, product=T4) for i in range(3)]
    snapshot = build_snapshot(nodes, [busy("t0", 1), busy("t1", 2)])
    p = kube_default(snapshot, job(["t4"], (6, 6)), {("t4", 6): pred(1, 1)}, NOW)
    assert p.chosen is not None and p.chosen.nodes == (("t2", 4), ("t0", 2))


def test_gavel_like_takes_the_fastest_type_and_packs_it() -> None:
    nodes = [node("a-idle", product=A100), node("a-busy", product=A100), node("t", product=T4)]
    snapshot = build_snapshot(nodes, [busy("a-busy", 2)])
    p = gavel_like(snapshot, job([], (1, 4)), PREDS, NOW)
    assert p.chosen is not None
    assert (p.chosen.type, p.chosen.count, p.chosen.nodes) == ("a100", 4, (("a-busy", 4),))


def test_eelas_like_takes_the_most_samples_per_joule() -> None:
    nodes = [node("a", product=A100), node("v", product=V100), node("t", product=T4)]
    p = eelas_like(build_snapshot(nodes, []), job([], (4, 4)), PREDS, NOW)
    assert p.chosen is not None and p.chosen.type == "t4"


def test_a_baseline_waits_when_the_users_count_does_not_fit() -> None:
    snapshot = build_snapshot([node("a", product=A100)], [busy("a", 6)])
    p = gavel_like(snapshot, job(["a100"], (1, 4)), PREDS, NOW)
    assert p.chosen is None and p.note == "no allowed type has 4 devices free now"
