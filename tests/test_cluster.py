"""Cluster descriptions become Node objects labelled as the GPU operator labels real nodes."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

import pytest

from berth.core.cluster import node_objects, parse_cluster
from berth.core.manifest import load_documents
from berth.core.snapshot import build_snapshot
from berth.core.validation import InvalidObject


def small() -> dict[str, Any]:
    text = files("berth").joinpath("clusters/small.yaml").read_text()
    doc = load_documents(text)[0]
    assert isinstance(doc, dict)
    return doc


def test_the_bundled_small_cluster_parses() -> None:
    cluster = parse_cluster(small())
    assert [(p.name, p.nodes, p.gpus_per_node) for p in cluster.pools] == [
        ("a100", 2, 8),
        ("v100", 2, 4),
        ("t4", 2, 4),
        ("cpu", 2, 0),
    ]


def test_nodes_carry_gpu_operator_labels_and_gpu_capacity() -> None:
    a100 = node_objects(parse_cluster(small()))[0]
    assert a100["metadata"]["name"] == "a100-0"
    labels = a100["metadata"]["labels"]
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"
    assert (labels["nvidia.com/gpu.count"], labels["nvidia.com/gpu.memory"]) == ("8", "81920")
    assert a100["status"]["allocatable"]["nvidia.com/gpu"] == "8"


def test_the_snapshot_reads_back_what_the_description_says() -> None:
    snap = build_snapshot(node_objects(parse_cluster(small())), [])
    by_type: dict[str, int] = {}
    for node in snap.nodes:
        assert node.usable is False  # no Ready condition until a kubelet (or kwok) reports
        by_type[str(node.accelerator.type)] = (
            by_type.get(str(node.accelerator.type), 0) + node.free.gpus
        )
    assert by_type == {"a100": 16, "v100": 8, "t4": 8, "cpu": 0}
    assert snap.node("cpu-1").cpu_class == "epyc-7763"


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"accelerator": "a100"}, "pools[0].accelerator"),  # a type, not a variant
        ({"accelerator": "b300"}, "pools[0].accelerator"),
        ({"nodes": -1}, "pools[0].nodes"),
        ({"gpusPerNode": "eight"}, "pools[0].gpusPerNode"),
        ({"memory": "lots"}, "pools[0].memory"),
        ({"cpuClass": "m1"}, "pools[0].cpuClass"),
        ({"idleWatts": -5}, "pools[0].idleWatts"),
        ({"idleWatts": "900W"}, "pools[0].idleWatts"),
    ],
)
def test_a_bad_pool_is_rejected_naming_the_field(change: dict[str, Any], path: str) -> None:
    doc = small()
    doc["pools"][0].update(change)
    with pytest.raises(InvalidObject) as caught:
        parse_cluster(doc)
    assert [e.path for e in caught.value.errors] == [path]


def test_pool_names_must_be_unique() -> None:
    doc = small()
    doc["pools"][1]["name"] = "a100"
    with pytest.raises(InvalidObject, match="unique"):
        parse_cluster(doc)


def test_declared_idle_power_reaches_the_node_as_the_exporters_annotation() -> None:
    doc = small()
    doc["pools"][0]["idleWatts"] = 900
    snap = build_snapshot(node_objects(parse_cluster(doc)), [])
    assert snap.node("a100-0").idle_watts == 900
    assert snap.node("v100-0").idle_watts is None


def test_mixed_64_has_pai_proportions_in_64_nodes() -> None:
    text = files("berth").joinpath("clusters/mixed-64.yaml").read_text()
    cluster = parse_cluster(load_documents(text)[0])
    nodes = {p.name: p.nodes for p in cluster.pools}
    assert sum(nodes.values()) == 64
    assert (nodes["p100"], nodes["t4"], nodes["v100m32"], nodes["v100"]) == (27, 17, 5, 3)
    assert nodes["a100"] + nodes["k80"] == 9 and nodes["cpu"] == 3  # PAI's MISC and CPU
