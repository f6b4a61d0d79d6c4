"""The operator on a real control plane: `berth operator` and `berth serve-recommender` run as
processes, the examples are applied, and what a user sees (status, Events, worker Pods on the
simulated GPU nodes) is checked through the API."""

from __future__ import annotations

import copy
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from berth.core.manifest import load_documents
from berth.crds import GROUP, VERSION
from tests.conftest import EXAMPLES, ROOT, load_example, own_control_plane
from tests.kube import BerthProcess, Cluster, eventually, operator, port_of, recommender

pytestmark = [pytest.mark.controlplane, pytest.mark.operator]
PLURAL = "acceleratorjobs"
RBAC = ROOT / "operator" / "rbac.yaml"


class Env:
    def __init__(
        self, cluster: Cluster, jobs: client.CustomObjectsApi, op: BerthProcess, identity: Path
    ) -> None:
        self.cluster, self.jobs, self.operator = cluster, jobs, op
        self.operator_kubeconfig = identity
        self.core = cluster.core

    def create(self, job: dict[str, Any], ns: str) -> None:
        job["metadata"]["namespace"] = ns
        self.jobs.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, job)

    def get(self, name: str, ns: str) -> dict[str, Any]:
        got: dict[str, Any] = self.jobs.get_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, name
        )
        return got

    def status(self, name: str, ns: str, phase: str, timeout: float = 30) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def reached() -> dict[str, Any] | None:
            last.update(self.get(name, ns).get("status") or {})
            return last if last.get("phase") == phase else None

        try:
            return eventually(reached, timeout, what=f"{ns}/{name} {phase}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; status: {last}\n{self.operator.tail()}") from None

    def workers(self, name: str, ns: str) -> list[client.V1Pod]:
        pods = self.core.list_namespaced_pod(ns, label_selector=f"berth.dev/job={name}").items
        return sorted(pods, key=lambda p: p.metadata.name)

    def events(self, name: str, ns: str) -> list[client.CoreV1Event]:
        return [
            e
            for e in self.core.list_namespaced_event(ns).items
            if e.involved_object.kind == "AcceleratorJob" and e.involved_object.name == name
        ]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("operator")
    for cluster in own_control_plane(tmp / "plane"):
        small = load_documents(files("berth").joinpath("clusters/small.yaml").read_text())[0]
        for pool in small["pools"]:
            pool["nodes"] = 4 if pool["name"] == "a100" else pool["nodes"]  # room for all
        cluster.add_nodes(small)
        jobs = cluster.install_crd()
        rec, url = recommender(tmp / "recommender.log")
        identity = cluster.service_account(RBAC, "berth-operator", "berth-system")
        op = operator(identity, tmp / "operator.log", url).start()
        try:
            yield Env(cluster, jobs, op, identity)
        finally:
            op.stop()
            rec.stop()


def checkpoint_volume(env: Env, ns: str) -> None:
    """The PersistentVolumeClaim the elastic example mounts, bound to a hostPath volume."""
    env.core.create_persistent_volume(
        {
            "metadata": {"name": f"{ns}-ckpt"},
            "spec": {
                "capacity": {"storage": "10Gi"},
                "accessModes": ["ReadWriteMany"],
                "hostPath": {"path": "/tmp/ckpt"},
                "storageClassName": "",
                "claimRef": {"namespace": ns, "name": "resnet50-ckpt"},
            },
        }
    )
    env.core.create_namespaced_persistent_volume_claim(
        ns,
        {
            "metadata": {"name": "resnet50-ckpt"},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "volumeName": f"{ns}-ckpt",
                "resources": {"requests": {"storage": "10Gi"}},
            },
        },
    )


@pytest.fixture(scope="module")
def examples(env: Env) -> dict[str, str]:
    """Every example, applied to a namespace of its own; name -> namespace."""
    out = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        job = load_example(path.name)
        name = job["metadata"]["name"]
        ns = env.cluster.namespace(f"ex-{name}")
        if "resnet50-ckpt" in path.read_text():
            checkpoint_volume(env, ns)
        env.create(job, ns)
        out[name] = ns
    return out


def test_every_example_is_placed_on_an_allowed_type_with_one_worker_per_node(
    env: Env, examples: dict[str, str]
) -> None:
    for name, ns in examples.items():
        st = env.status(name, ns, "Running")
        placement = st["placement"]
        spec = env.get(name, ns)["spec"]
        allowed = spec["accelerators"]["types"]
        assert placement["type"] in allowed if allowed else placement["type"] != "cpu"
        count = spec["accelerators"]["count"]
        assert count["min"] <= placement["count"] <= count["max"]
        pods = env.workers(name, ns)
        assert [p.metadata.name for p in pods] == [
            f"{name}-w{k}" for k in range(len(placement["nodes"]))
        ]
        for pod, share in zip(pods, placement["nodes"], strict=True):
            assert pod.spec.node_name == share["name"]
            term = (
                pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
            )
            assert term.node_selector_terms[0].match_fields[0].values == [share["name"]]
            if placement["type"] != "cpu":
                gpus = pod.spec.containers[0].resources.limits["nvidia.com/gpu"]
                assert int(gpus) == share["count"]
            assert pod.metadata.owner_references[0].name == name


def test_status_explains_the_choice_with_predictions_alternatives_and_source(
    env: Env, examples: dict[str, str]
) -> None:
    st = env.status("gpt2-finetune", examples["gpt2-finetune"], "Running")
    placement = st["placement"]
    assert placement["source"].startswith("recommender model berth-recommender")
    assert placement["predicted"]["joulesPerSample"] > 0
    assert placement["alternatives"] and all(a["reason"] for a in placement["alternatives"])
    conditions = {c["type"]: c for c in st["conditions"]}
    assert conditions["Placed"]["status"] == "True"
    assert conditions["Running"]["status"] == "True"


def test_an_hpc_job_without_a_model_is_placed_by_the_named_roofline_estimate(
    env: Env, examples: dict[str, str]
) -> None:
    st = env.status("lammps-lj-8gpu", examples["lammps-lj-8gpu"], "Running")
    assert st["placement"]["source"].startswith("fallback: roofline")
    assert "modelled" in st["placement"]["predicted"]["provenance"]


def test_each_decision_is_an_event_on_the_job(env: Env, examples: dict[str, str]) -> None:
    name, ns = "bert-base-serving", examples["bert-base-serving"]
    env.status(name, ns, "Running")
    reasons = [e.reason for e in env.events(name, ns)]
    assert reasons.count("Placed") == 1
    assert "Running" in reasons


def test_the_training_workers_get_torchrun_rendezvous_through_a_headless_service(
    env: Env, examples: dict[str, str]
) -> None:
    name, ns = "resnet50-imagenet", examples["resnet50-imagenet"]
    env.status(name, ns, "Running")
    env_vars = {e.name: e.value for e in env.workers(name, ns)[0].spec.containers[0].env}
    assert env_vars["PET_RDZV_ENDPOINT"] == f"{name}-w0.{name}.{ns}.svc:29400"
    assert env_vars["PET_NNODES"].startswith("1:")  # elastic: workers may come and go
    svc = env.core.read_namespaced_service(name, ns)
    assert svc.spec.cluster_ip == "None"


def short_job(name: str, types: list[str], count: int, succeed: bool = True) -> dict[str, Any]:
    job = copy.deepcopy(load_example("gpt2-finetune-deadline.yaml"))
    job["metadata"] = {"name": name}
    job["spec"]["accelerators"] = {"types": types, "count": {"min": count, "max": count}}
    job["spec"].pop("deadline", None)
    job["spec"]["workload"].pop("memoryPerReplica")
    if succeed:
        job["spec"]["template"]["metadata"] = {"annotations": {"berth.dev/kwok-succeed": "true"}}
    return job


def test_a_job_whose_workers_finish_succeeds(env: Env) -> None:
    ns = env.cluster.namespace("finishes")
    env.create(short_job("quick", ["t4"], 1), ns)
    st = env.status("quick", ns, "Succeeded")
    assert {c["type"]: c["status"] for c in st["conditions"]}["Complete"] == "True"


def test_a_job_no_node_can_take_stays_pending_with_the_reason(env: Env) -> None:
    ns = env.cluster.namespace("unplaceable")
    env.create(short_job("wants-h100", ["h100"], 1), ns)
    st = env.status("wants-h100", ns, "Pending")
    placed = {c["type"]: c for c in st["conditions"]}["Placed"]
    assert (placed["status"], placed["reason"]) == ("False", "Unschedulable")
    assert "no usable node of an allowed accelerator type" in placed["message"]
    assert env.operator.proc is not None and env.operator.proc.poll() is None


def test_a_job_past_its_deadline_fails_validation(env: Env) -> None:
    ns = env.cluster.namespace("late")
    job = short_job("too-late", ["t4"], 1)
    job["spec"]["deadline"] = (datetime.now(UTC) - timedelta(hours=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    env.create(job, ns)
    st = env.status("too-late", ns, "Failed")
    validated = {c["type"]: c for c in st["conditions"]}["Validated"]
    assert validated["reason"] == "DeadlinePassed"
    assert env.workers("too-late", ns) == []


def test_a_deadline_no_allocation_can_meet_is_called_unreachable_at_admission(env: Env) -> None:
    ns = env.cluster.namespace("unreachable")
    job = short_job("hopeless", ["t4"], 1)
    job["spec"]["deadline"] = "1h"  # 12.8M GPT-2 samples on one T4 take days
    env.create(job, ns)
    st = env.status("hopeless", ns, "Succeeded")  # told, and still run: late beats never
    reachable = {c["type"]: c for c in st["conditions"]}["DeadlineReachable"]
    assert (reachable["status"], reachable["reason"]) == ("False", "Unreachable")
    assert "the fastest allocation this cluster holds, t4 x1" in reachable["message"]
    assert "DeadlineUnreachable" in {e.reason for e in env.events("hopeless", ns)}


def test_a_pending_job_is_placed_when_capacity_frees(env: Env) -> None:
    # P100 nodes of their own, so no example competes for them.
    pool = {"name": "p100", "accelerator": "p100-sxm2-16gb", "gpusPerNode": 4, "nodes": 2}
    env.cluster.add_nodes({"name": "p100s", "pools": [pool | {"cpuCores": 32, "memory": "256Gi"}]})
    ns = env.cluster.namespace("waits")
    env.create(short_job("hog", ["p100"], 8, succeed=False), ns)
    env.status("hog", ns, "Running")
    env.create(short_job("next", ["p100"], 4), ns)
    st = env.status("next", ns, "Pending")
    placed = {c["type"]: c for c in st["conditions"]}["Placed"]
    assert "needs 4, only 0 free p100 devices" in placed["message"]
    for pod in env.workers("hog", ns):  # the hog's workers finish (kwok's stage sees this)
        patch = {"metadata": {"annotations": {"berth.dev/kwok-succeed": "true"}}}
        env.core.patch_namespaced_pod(pod.metadata.name, ns, patch)
    env.status("hog", ns, "Succeeded")
    env.status("next", ns, "Succeeded")


def test_metrics_count_the_decisions(env: Env, examples: dict[str, str]) -> None:
    port = port_of(env.operator, "--metrics-port")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    placed = [
        line for line in text.splitlines() if line.startswith("berth_operator_decisions_total")
    ]
    assert any('outcome="placed"' in line and float(line.split()[-1]) >= 5 for line in placed)
    assert "berth_operator_decision_seconds_bucket" in text


def test_kopf_reports_health(env: Env) -> None:
    port = port_of(env.operator, "--health-port")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        assert response.status == 200


def test_the_operator_identity_may_do_nothing_outside_its_cluster_role(env: Env) -> None:
    identity = config.new_client_from_config(config_file=str(env.operator_kubeconfig))
    core = client.CoreV1Api(identity)
    core.list_node()  # granted
    forbidden: Callable[[], Any]
    for forbidden in (
        core.list_secret_for_all_namespaces,
        lambda: core.delete_node("t4-0"),
        lambda: client.CustomObjectsApi(identity).delete_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, "any"
        ),
    ):
        with pytest.raises(ApiException) as refused:
            forbidden()
        assert refused.value.status == 403


def test_the_operator_needs_no_right_beyond_its_cluster_role(
    env: Env, examples: dict[str, str]
) -> None:
    env.status("bert-base-serving", examples["bert-base-serving"], "Running")
    assert "forbidden" not in env.operator.log.read_text().lower()


def test_a_node_with_an_unknown_accelerator_is_left_out_and_told_why(env: Env) -> None:
    node = {
        "metadata": {
            "name": "mystery-0",
            "labels": {"nvidia.com/gpu.product": "NVIDIA-Z9000", "type": "kwok"},
            "annotations": {"kwok.x-k8s.io/node": "fake"},
        },
        "status": {"allocatable": {"nvidia.com/gpu": "8", "cpu": "64", "memory": "256Gi"}},
    }
    env.core.create_node(node)

    def told() -> list[client.CoreV1Event]:
        return [
            e
            for e in env.core.list_namespaced_event("default").items
            if e.involved_object.kind == "Node"
            and e.involved_object.name == "mystery-0"
            and e.reporting_component == "berth.dev/operator"  # not the node controller's
        ]

    event = eventually(told, what="berth's Event on node mystery-0")[0]
    assert event.reason == "UnknownAccelerator"
    assert "'NVIDIA-Z9000'" in event.message
