"""Free capacity is allocatable minus what non-terminated pods request, counted the way
kube-scheduler counts it; node facts come from GPU-operator labels and berth annotations."""

from __future__ import annotations

from typing import Any

from berth.core.snapshot import Health, build_snapshot, pod_requests


def node(
    name: str = "gpu-1",
    gpus: int = 8,
    product: str | None = "NVIDIA-A100-SXM4-80GB",
    ready: bool = True,
    unschedulable: bool = False,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    all_labels = dict(labels or {})
    if product:
        all_labels["nvidia.com/gpu.product"] = product
        all_labels["nvidia.com/gpu.memory"] = "81920"
    allocatable = {"cpu": "96", "memory": "1000Gi", "pods": "110"}
    if gpus:
        allocatable["nvidia.com/gpu"] = str(gpus)
    return {
        "metadata": {"name": name, "labels": all_labels, "annotations": annotations or {}},
        "spec": {"unschedulable": unschedulable, "taints": taints or []},
        "status": {
            "allocatable": allocatable,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def container(gpus: int = 0, cpu: str = "0", **extra: Any) -> dict[str, Any]:
    requests = {"cpu": cpu}
    limits = {"nvidia.com/gpu": str(gpus)} if gpus else {}
    return {
        "name": "c",
        "image": "i",
        "resources": {"requests": requests, "limits": limits},
        **extra,
    }


def pod(
    node_name: str | None = "gpu-1",
    phase: str = "Running",
    containers: list[dict[str, Any]] | None = None,
    init: list[dict[str, Any]] | None = None,
    owner_kind: str | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p"}
    if owner_kind:
        meta["ownerReferences"] = [{"kind": owner_kind, "name": "o"}]
    spec: dict[str, Any] = {"containers": containers or [container(gpus=1)]}
    if node_name:
        spec["nodeName"] = node_name
    if init:
        spec["initContainers"] = init
    return {"metadata": meta, "spec": spec, "status": {"phase": phase}}


def test_free_gpus_are_allocatable_minus_running_pods() -> None:
    snap = build_snapshot([node()], [pod(containers=[container(gpus=2)]), pod()])
    assert snap.node("gpu-1").free.gpus == 5


def test_terminated_pods_free_their_gpus() -> None:
    pods = [pod(phase="Succeeded"), pod(phase="Failed"), pod(phase="Pending"), pod()]
    assert build_snapshot([node()], pods).node("gpu-1").free.gpus == 6


def test_pods_not_yet_bound_to_a_node_use_nothing() -> None:
    assert build_snapshot([node()], [pod(node_name=None)]).node("gpu-1").free.gpus == 8


def test_init_containers_count_at_their_peak_not_their_sum() -> None:
    # Init containers run one at a time before the app containers: the pod needs the larger
    # of the biggest init container (3 GPUs) and the app containers' sum (1 GPU).
    p = pod(containers=[container(gpus=1)], init=[container(gpus=3), container(gpus=2)])
    assert pod_requests(p).gpus == 3
    assert build_snapshot([node()], [p]).node("gpu-1").free.gpus == 5


def test_sidecar_init_containers_add_to_the_app_containers() -> None:
    sidecar = container(cpu="500m", restartPolicy="Always")
    p = pod(containers=[container(gpus=1, cpu="2")], init=[sidecar, container(cpu="4")])
    # app 2 + sidecar 0.5 = 2.5 CPUs; init step 4 + sidecar 0.5 = 4.5 CPUs: the peak wins.
    assert pod_requests(p).cpu_millis == 4500


def test_a_limit_without_a_request_requests_the_limit() -> None:
    p = pod(containers=[{"name": "c", "image": "i", "resources": {"limits": {"cpu": "3"}}}])
    assert pod_requests(p).cpu_millis == 3000


def test_cordoned_node_keeps_its_arithmetic_but_is_not_usable() -> None:
    state = build_snapshot([node(unschedulable=True)], [pod()]).node("gpu-1")
    assert (state.cordoned, state.usable, state.free.gpus) == (True, False, 7)


def test_not_ready_and_unhealthy_nodes_are_not_usable() -> None:
    nodes = [
        node("a", ready=False),
        node("b", annotations={"berth.dev/health": "unhealthy"}),
        node("c", annotations={"berth.dev/health": "degraded"}),
    ]
    snap = build_snapshot(nodes, [])
    assert [n.usable for n in snap.nodes] == [False, False, True]
    assert snap.node("c").health is Health.DEGRADED


def test_gpu_node_facts_come_from_gpu_operator_labels() -> None:
    state = build_snapshot([node(product="Tesla-V100-SXM2-32GB")], []).node("gpu-1")
    assert state.accelerator.type == "v100"
    assert state.accelerator.variant == "v100-sxm2-32gb"
    assert (state.allocatable.gpus, state.gpu_memory_mib) == (8, 81920)


def test_unknown_accelerator_is_kept_raw_excluded_and_explained() -> None:
    state = build_snapshot([node(product="NVIDIA-B300")], []).node("gpu-1")
    assert state.accelerator.raw == "NVIDIA-B300"
    assert not state.usable
    assert [p.reason for p in state.problems] == ["UnknownAccelerator"]
    assert "unknown accelerator" in state.problems[0].message


def test_cpu_only_node_has_cores_and_a_cpu_class() -> None:
    cpu = node("cpu-1", gpus=0, product=None, labels={"berth.dev/cpu-class": "epyc-7763"})
    state = build_snapshot([cpu], []).node("cpu-1")
    assert state.cpu_only and state.usable
    assert (state.allocatable.cpu_millis, state.cpu_class) == (96000, "epyc-7763")


def test_daemonset_pods_use_capacity_but_do_not_keep_a_node_awake() -> None:
    daemon = pod(containers=[container(cpu="1")], owner_kind="DaemonSet")
    state = build_snapshot([node()], [daemon]).node("gpu-1")
    assert (state.free.cpu_millis, state.awake) == (95000, False)
    assert build_snapshot([node()], [pod()]).node("gpu-1").awake


def test_measured_idle_power_and_taints_are_read() -> None:
    taint = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    n = node(annotations={"berth.dev/idle-watts": "412.5"}, taints=[taint])
    state = build_snapshot([n], []).node("gpu-1")
    assert state.idle_watts == 412.5
    assert state.taints[0].effect == "NoSchedule"


def test_bad_annotations_are_ignored_with_a_reason() -> None:
    bad = {"berth.dev/idle-watts": "-3", "berth.dev/health": "fine"}
    state = build_snapshot([node(annotations=bad)], []).node("gpu-1")
    assert (state.idle_watts, state.health) == (None, Health.UNKNOWN)
    assert len(state.problems) == 2


def test_snapshot_is_ordered_by_node_name() -> None:
    snap = build_snapshot([node("b"), node("a")], [])
    assert [n.name for n in snap.nodes] == ["a", "b"]


def test_the_clusters_energy_facts_give_idle_watts_where_no_exporter_measured() -> None:
    facts = {"NVIDIA-A100-SXM4-80GB": 420.0, "epyc-7763": 180.0}
    cpu = node("cpu-1", gpus=0, product=None, labels={"berth.dev/cpu-class": "epyc-7763"})
    measured = node("gpu-2", annotations={"berth.dev/idle-watts": "400"})
    got = {n.name: n.idle_watts for n in build_snapshot([node(), cpu, measured], [], facts).nodes}
    assert got == {"gpu-1": 420.0, "cpu-1": 180.0, "gpu-2": 400.0}  # measured wins
