"""berth's API on a real control plane (e2e/cluster): the CRD's schema and CEL rules, the
status subresource, watches, garbage collection, and GPU scheduling onto simulated nodes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.resources import files
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from berth.core.manifest import load_documents
from berth.crds import GROUP, VERSION, acceleratorjob_crd
from tests.conftest import load_example
from tests.kube import Cluster, eventually

pytestmark = pytest.mark.controlplane

PLURAL = "acceleratorjobs"


@pytest.fixture(scope="module")
def crd(control_plane: Cluster) -> Iterator[client.CustomObjectsApi]:
    ext = client.ApiextensionsV1Api(control_plane.api)
    ext.create_custom_resource_definition(acceleratorjob_crd())

    def established() -> bool:
        got = ext.read_custom_resource_definition("acceleratorjobs.berth.dev")
        return any(
            c.type == "Established" and c.status == "True" for c in got.status.conditions or []
        )

    eventually(established, what="the CRD Established")
    yield client.CustomObjectsApi(control_plane.api)


@pytest.fixture(scope="module")
def jobs_ns(control_plane: Cluster) -> str:
    return control_plane.namespace("berth-jobs")


def create_job(api: client.CustomObjectsApi, ns: str, job: dict[str, Any]) -> dict[str, Any]:
    job["metadata"]["namespace"] = ns
    created: dict[str, Any] = api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, job)
    return created


def test_a_valid_job_is_stored_with_the_schema_defaults(
    crd: client.CustomObjectsApi, jobs_ns: str
) -> None:
    job = load_example("bert-inference.yaml")
    del job["spec"]["objective"]
    created = create_job(crd, jobs_ns, job)
    assert created["spec"]["objective"] == {"type": "energy"}
    assert (created["spec"]["priority"], created["spec"]["elastic"]) == (0, False)


def test_an_invalid_job_is_rejected_with_its_cel_message(
    crd: client.CustomObjectsApi, jobs_ns: str
) -> None:
    job = load_example("rigid-lammps-hpc.yaml")
    job["spec"]["accelerators"]["count"] = {"min": 8, "max": 4}
    with pytest.raises(ApiException) as caught:
        create_job(crd, jobs_ns, job)
    assert caught.value.status == 422
    message = json.loads(caught.value.body)["message"]
    assert "spec.accelerators.count.min must be less than or equal to" in message


@pytest.mark.parametrize(
    ("field", "value"), [("workload.memoryPerReplica", -1), ("accelerators.minDeviceMemory", -20)]
)
def test_a_negative_quantity_is_rejected_on_its_field(
    crd: client.CustomObjectsApi, jobs_ns: str, field: str, value: int
) -> None:
    job = load_example("elastic-resnet50-training.yaml")
    job["metadata"]["name"] = f"negative-{field.split('.')[1].lower()}"
    part, name = field.split(".")
    job["spec"][part][name] = value
    with pytest.raises(ApiException) as caught:
        create_job(crd, jobs_ns, job)
    assert caught.value.status == 422
    assert f"spec.{field} must not be negative" in json.loads(caught.value.body)["message"]


def test_status_is_written_only_through_the_status_subresource(
    crd: client.CustomObjectsApi, jobs_ns: str
) -> None:
    job = load_example("gpt2-finetune-deadline.yaml")
    name = create_job(crd, jobs_ns, job)["metadata"]["name"]
    patch = {"status": {"phase": "Placed", "placement": {"type": "a100", "count": 4}}}
    crd.patch_namespaced_custom_object(GROUP, VERSION, jobs_ns, PLURAL, name, patch)
    assert "status" not in crd.get_namespaced_custom_object(GROUP, VERSION, jobs_ns, PLURAL, name)
    crd.patch_namespaced_custom_object_status(GROUP, VERSION, jobs_ns, PLURAL, name, patch)
    stored = crd.get_namespaced_custom_object(GROUP, VERSION, jobs_ns, PLURAL, name)
    assert stored["status"]["placement"] == {"type": "a100", "count": 4}


def test_a_watch_sees_an_event_on_a_job_arrive(
    control_plane: Cluster, crd: client.CustomObjectsApi, jobs_ns: str
) -> None:
    job = create_job(crd, jobs_ns, load_example("cpu-capable-hpc.yaml"))
    events = control_plane.core.list_namespaced_event(jobs_ns)
    stream = watch.Watch().stream(
        control_plane.core.list_namespaced_event,
        jobs_ns,
        resource_version=events.metadata.resource_version,
        timeout_seconds=20,
    )
    control_plane.core.create_namespaced_event(
        jobs_ns,
        client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name="hpcg-solver-"),
            involved_object=client.V1ObjectReference(
                api_version=f"{GROUP}/{VERSION}",
                kind="AcceleratorJob",
                name=job["metadata"]["name"],
                namespace=jobs_ns,
                uid=job["metadata"]["uid"],
            ),
            reason="Placed",
            message="placed on 2 x a100",
            type="Normal",
        ),
    )
    for item in stream:
        if item["object"].involved_object.name == "hpcg-solver":
            assert (item["type"], item["object"].reason) == ("ADDED", "Placed")
            break
    else:
        pytest.fail("no event arrived on the watch")


def test_deleting_a_job_garbage_collects_what_it_owns(
    control_plane: Cluster, crd: client.CustomObjectsApi, jobs_ns: str
) -> None:
    job = create_job(crd, jobs_ns, load_example("elastic-resnet50-training.yaml"))
    owner = client.V1OwnerReference(
        api_version=f"{GROUP}/{VERSION}",
        kind="AcceleratorJob",
        name=job["metadata"]["name"],
        uid=job["metadata"]["uid"],
    )
    control_plane.core.create_namespaced_config_map(
        jobs_ns,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="resnet50-owned", owner_references=[owner]),
            data={"rendezvous": "resnet50-imagenet:29400"},
        ),
    )
    crd.delete_namespaced_custom_object(GROUP, VERSION, jobs_ns, PLURAL, job["metadata"]["name"])

    def collected() -> bool:
        names = [
            c.metadata.name for c in control_plane.core.list_namespaced_config_map(jobs_ns).items
        ]
        return "resnet50-owned" not in names

    eventually(collected, timeout=60, what="the garbage collector to delete the ConfigMap")


@pytest.fixture(scope="module")
def gpu_nodes(control_plane: Cluster) -> list[str]:
    small = load_documents(files("berth").joinpath("clusters/small.yaml").read_text())[0]
    return control_plane.add_nodes(small)


def gpu_pod(name: str, gpus: int, product: str) -> client.V1Pod:
    term = client.V1NodeSelectorTerm(
        match_expressions=[
            client.V1NodeSelectorRequirement(
                key="nvidia.com/gpu.product", operator="In", values=[product]
            )
        ]
    )
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name="worker",
                    image="nvcr.io/nvidia/pytorch:24.05-py3",
                    resources=client.V1ResourceRequirements(limits={"nvidia.com/gpu": str(gpus)}),
                )
            ],
            affinity=client.V1Affinity(
                node_affinity=client.V1NodeAffinity(
                    required_during_scheduling_ignored_during_execution=client.V1NodeSelector(
                        node_selector_terms=[term]
                    )
                )
            ),
        ),
    )


def test_the_scheduler_binds_a_gpu_pod_to_an_a100_node_and_kwok_runs_it(
    control_plane: Cluster, gpu_nodes: list[str]
) -> None:
    ns = control_plane.namespace("berth-gpu")
    control_plane.core.create_namespaced_pod(ns, gpu_pod("two-gpus", 2, "NVIDIA-A100-SXM4-80GB"))

    def running() -> client.V1Pod | None:
        pod = control_plane.core.read_namespaced_pod("two-gpus", ns)
        return pod if pod.status.phase == "Running" else None

    pod = eventually(running, what="the pod Running")
    assert pod.spec.node_name in {"a100-0", "a100-1"}


def test_a_pod_asking_for_more_gpus_than_any_node_has_stays_pending_with_the_reason(
    control_plane: Cluster, gpu_nodes: list[str]
) -> None:
    ns = control_plane.namespace("berth-too-big")
    control_plane.core.create_namespaced_pod(ns, gpu_pod("sixteen", 16, "NVIDIA-A100-SXM4-80GB"))

    def unschedulable() -> client.V1PodCondition | None:
        pod = control_plane.core.read_namespaced_pod("sixteen", ns)
        for condition in pod.status.conditions or []:
            if condition.type == "PodScheduled" and condition.reason == "Unschedulable":
                return condition
        return None

    condition = eventually(unschedulable, what="the scheduler's verdict")
    assert "Insufficient nvidia.com/gpu" in condition.message
    assert control_plane.core.read_namespaced_pod("sixteen", ns).status.phase == "Pending"
