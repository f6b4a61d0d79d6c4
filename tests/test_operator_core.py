"""The operator's pure core, on plain data: worker objects, status, capacity stand-ins and the
choice of predictor."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from berth.core import tables
from berth.core.allocation import Allocation, Share
from berth.core.catalog import VARIANTS
from berth.core.cluster import node_objects, parse_cluster
from berth.core.job import parse_job
from berth.core.prediction import Prediction
from berth.core.provenance import measured
from berth.core.snapshot import build_snapshot, with_claims
from berth.operator import predictions, resizing, state, status
from berth.operator.workers import needs_service, service, worker_pods
from berth.placement.elastic import Resize
from berth.placement.fallback import SpecTransfer
from berth.placement.roofline import Roofline
from berth.recommender.client import RecommenderUnavailable
from tests.conftest import load_example

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
SMALL = {
    "name": "t",
    "pools": [
        {"name": "a100", "accelerator": "a100-sxm4-80gb", "gpusPerNode": 8, "nodes": 2,
         "cpuCores": 64, "memory": "512Gi"},
        {"name": "cpu", "accelerator": "cpu", "cpuClass": "epyc-7763", "nodes": 1,
         "cpuCores": 128, "memory": "512Gi"},
    ],
}  # fmt: skip


def api_job(example: str) -> dict[str, Any]:
    """An example as the API server returns it: namespace, uid, generation."""
    job = copy.deepcopy(load_example(example))
    job["metadata"] |= {"namespace": "ns", "uid": "uid-1", "generation": 1}
    return job


def nodes() -> list[dict[str, Any]]:
    out = node_objects(parse_cluster(SMALL))
    for n in out:
        n["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    return out


TWO_NODES = Allocation("a100", (Share("a100-0", 4), Share("a100-1", 2)))


def test_each_share_is_one_worker_named_after_the_job_and_pinned_to_its_node() -> None:
    job = api_job("elastic-resnet50-training.yaml")
    pods = worker_pods(job, TWO_NODES, {"a100-0": "NVIDIA-A100-SXM4-80GB"})
    assert [p["metadata"]["name"] for p in pods] == ["resnet50-imagenet-w0", "resnet50-imagenet-w1"]
    term = pods[0]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"][0]
    assert term["matchFields"][0]["values"] == ["a100-0"]
    assert term["matchExpressions"][0]["values"] == ["NVIDIA-A100-SXM4-80GB"]
    limits = [p["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] for p in pods]
    assert limits == ["4", "2"]


def test_workers_are_the_same_objects_every_time() -> None:
    job = api_job("elastic-resnet50-training.yaml")
    assert worker_pods(job, TWO_NODES, {}) == worker_pods(job, TWO_NODES, {})


def test_building_workers_leaves_the_job_template_untouched() -> None:
    job = api_job("elastic-resnet50-training.yaml")
    before = copy.deepcopy(job)
    worker_pods(job, TWO_NODES, {})
    assert job == before


def test_training_workers_get_torchrun_rendezvous_env() -> None:
    job = api_job("gpt2-finetune-deadline.yaml")
    env = {
        e["name"]: e["value"]
        for e in worker_pods(job, TWO_NODES, {})[1]["spec"]["containers"][0]["env"]
    }
    assert env["PET_NNODES"] == "2:2"  # rigid: exactly the placed workers
    assert env["PET_NPROC_PER_NODE"] == "2"
    assert env["PET_RDZV_ENDPOINT"] == "gpt2-finetune-w0.gpt2-finetune.ns.svc:29400"
    assert env["PET_MAX_RESTARTS"] == "3"
    assert env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] == "1"
    assert "WORLD_SIZE" not in env  # torchrun's, per rendezvous round


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}


def dns_name(pod: dict[str, Any]) -> str:
    """What cluster DNS serves for a pod of a headless Service: hostname.subdomain.ns.svc."""
    spec, meta = pod["spec"], pod["metadata"]
    return f"{spec['hostname']}.{spec['subdomain']}.{meta['namespace']}.svc"


@pytest.mark.parametrize(
    ("example", "workers"),
    [("elastic-resnet50-training.yaml", n) for n in (1, 2, 5)]
    + [("gpt2-finetune-deadline.yaml", n) for n in (2, 5)],
)
def test_the_rendezvous_endpoint_names_one_pod_and_only_it_hosts_the_store(
    example: str, workers: int
) -> None:
    job = api_job(example)
    # A template's own hostname or subdomain would make the endpoint name no pod, or several.
    job["spec"]["template"]["spec"] |= {"hostname": "mine", "subdomain": "shared"}
    shares = tuple(Share(f"a100-{i}", 1) for i in range(workers))
    pods = worker_pods(job, Allocation("a100", shares), {})
    host = env_of(pods[0])["PET_RDZV_ENDPOINT"].rsplit(":", 1)[0]
    assert [dns_name(p) for p in pods].count(host) == 1
    assert host != f"{service(job)['metadata']['name']}.ns.svc"  # resolves to every worker
    hosts = [p for p in pods if "is_host=1" in env_of(p)["PET_RDZV_CONF"].split(",")]
    assert hosts == [pods[0]] and dns_name(pods[0]) == host
    assert all("is_host=0" in env_of(p)["PET_RDZV_CONF"].split(",") for p in pods[1:])


def test_a_rigid_training_job_on_one_node_is_its_own_rendezvous_without_a_service() -> None:
    job = api_job("gpt2-finetune-deadline.yaml")
    alone = Allocation("a100", (Share("a100-0", 4),))
    env = env_of(worker_pods(job, alone, {})[0])
    assert env["PET_RDZV_ENDPOINT"] == "localhost:29400" and env["PET_NNODES"] == "1:1"
    assert not needs_service(job, alone)
    assert needs_service(job, TWO_NODES)  # and a move to two workers makes both anew


def test_an_elastic_workers_rendezvous_admits_down_to_one_worker_with_a_restart_budget() -> None:
    env = env_of(worker_pods(api_job("elastic-resnet50-training.yaml"), TWO_NODES, {})[0])
    assert env["PET_NNODES"].startswith("1:")  # survivors of a shrink keep their agent
    assert int(env["PET_MAX_RESTARTS"]) >= 8  # each shrink costs the survivors one


def test_an_inference_worker_gets_no_rendezvous_and_restarts_always() -> None:
    pod = worker_pods(api_job("bert-inference.yaml"), TWO_NODES, {})[0]
    names = {e["name"] for e in pod["spec"]["containers"][0]["env"]}
    assert "PET_NNODES" not in names
    assert pod["spec"]["restartPolicy"] == "Always"


def test_a_cpu_worker_asks_for_no_gpu() -> None:
    pod = worker_pods(api_job("cpu-capable-hpc.yaml"), Allocation("cpu", (Share("cpu-0", 1),)), {})[
        0
    ]
    assert "nvidia.com/gpu" not in pod["spec"]["containers"][0]["resources"].get("limits", {})
    assert "tolerations" not in pod["spec"]


def test_the_rendezvous_service_is_headless_and_owned_by_the_job() -> None:
    svc = service(api_job("elastic-resnet50-training.yaml"))
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_a_recorded_but_unbound_worker_holds_its_devices() -> None:
    job = api_job("elastic-resnet50-training.yaml")
    pods = state.capacity_pods([], [(job, TWO_NODES)])
    snap = build_snapshot(nodes(), pods)
    assert (snap.node("a100-0").free.gpus, snap.node("a100-1").free.gpus) == (4, 6)


def test_a_bound_worker_is_not_counted_twice() -> None:
    job = api_job("elastic-resnet50-training.yaml")
    bound = state.stand_ins(job, TWO_NODES)[0]
    pods = state.capacity_pods([bound], [(job, TWO_NODES)])
    assert len(pods) == 2


def test_claims_update_the_snapshot_as_a_rebuild_would() -> None:
    job = api_job("elastic-resnet50-training.yaml")
    empty = build_snapshot(nodes(), [])
    rebuilt = build_snapshot(nodes(), state.stand_ins(job, TWO_NODES))
    assert with_claims(empty, state.claims(job, TWO_NODES)) == rebuilt


def test_a_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    first = status.conditions([], [status.Condition("Placed", False, "Unschedulable", "a")], NOW, 1)
    later = datetime(2026, 11, 25, tzinfo=UTC)
    same = status.conditions(
        first, [status.Condition("Placed", False, "Unschedulable", "b")], later, 1
    )
    flipped = status.conditions(first, [status.Condition("Placed", True, "Placed", "c")], later, 1)
    assert same[0]["lastTransitionTime"] == first[0]["lastTransitionTime"]
    assert flipped[0]["lastTransitionTime"] == "2026-11-25T00:00:00Z"


def pod(name: str, phase: str, **state_: Any) -> dict[str, Any]:
    statuses = [{"name": "main", "state": state_}] if state_ else []
    return {"metadata": {"name": name}, "status": {"phase": phase, "containerStatuses": statuses}}


@pytest.mark.parametrize(
    ("phases", "expected"),
    [
        (["Running"], "Placed"),  # one of two workers exists
        (["Running", "Pending"], "Placed"),
        (["Running", "Running"], "Running"),
        (["Succeeded", "Running"], "Running"),
        (["Succeeded", "Succeeded"], "Succeeded"),
        (["Failed", "Running"], "Failed"),
    ],
)
def test_the_job_phase_follows_its_workers(phases: list[str], expected: str) -> None:
    pods = {f"j-w{k}": pod(f"j-w{k}", p) for k, p in enumerate(phases)}
    assert status.workers_phase("j", TWO_NODES, pods).phase == expected


def test_a_failed_job_names_the_worker_and_its_exit() -> None:
    failed = pod("j-w1", "Failed", terminated={"exitCode": 137, "reason": "OOMKilled"})
    found = status.workers_phase("j", TWO_NODES, {"j-w0": pod("j-w0", "Running"), "j-w1": failed})
    assert found.message == "j-w1: container main: OOMKilled: exit code 137"


# --- predictions ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spec_transfer() -> SpecTransfer:
    return SpecTransfer(tables.read()[0])


def ask_fails(job: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    raise RecommenderUnavailable("http://recommender: connection refused")


def test_candidates_are_the_allowed_types_present_at_every_count_they_can_hold() -> None:
    job = parse_job(load_example("cpu-capable-hpc.yaml"))
    rows = predictions.offers(job, predictions.devices(build_snapshot(nodes(), [])))
    assert [(c.type, c.count) for c in rows] == [
        ("a100", 1), ("a100", 2), ("a100", 3), ("a100", 4), ("cpu", 1),
    ]  # fmt: skip


def test_the_recommender_answer_is_used_and_named(spec_transfer: SpecTransfer) -> None:
    job = parse_job(load_example("gpt2-finetune-deadline.yaml"))
    rows = predictions.offers(job, predictions.devices(build_snapshot(nodes(), [])))

    def ask(body: dict[str, Any], asked: list[dict[str, Any]]) -> dict[str, Any]:
        assert body["model"] == "gpt2" and asked == [{"accelerator": "a100-sxm4-80gb", "count": 4}]
        ranked = [{"type": "a100", "count": 4, "throughput": 100.0, "watts_per_device": 300.0,
                   "throughput_uncertainty": 0.1}]  # fmt: skip
        return {"model": "m1", "ranked": ranked}

    got = predictions.predict(job, rows, ask, spec_transfer, Roofline())
    assert got.degraded is None
    assert got.sources[("a100", 4)] == "recommender model m1"
    assert got.predictions[("a100", 4)].throughput.value == 100.0


def test_an_unreachable_recommender_falls_back_to_spec_transfer_and_says_why(
    spec_transfer: SpecTransfer,
) -> None:
    job = parse_job(load_example("elastic-resnet50-training.yaml"))
    rows = predictions.offers(job, predictions.devices(build_snapshot(nodes(), [])))
    got = predictions.predict(job, rows, ask_fails, spec_transfer, Roofline())
    assert got.degraded == "recommender: http://recommender: connection refused"
    assert set(got.sources.values()) == {spec_transfer.name}
    assert got.predictions[("a100", 2)].throughput.provenance.origin.value == "modelled"


def test_an_answer_berth_cannot_read_is_told_apart_from_an_unreachable_recommender(
    spec_transfer: SpecTransfer,
) -> None:
    job = parse_job(load_example("elastic-resnet50-training.yaml"))
    rows = predictions.offers(job, predictions.devices(build_snapshot(nodes(), [])))
    garbled = {"model": "m1", "ranked": [{"type": "a100", "count": 2}]}  # no throughput
    got = predictions.predict(job, rows, lambda *_: garbled, spec_transfer, Roofline())
    assert got.degraded == "recommender: an answer berth cannot read (KeyError('throughput'))"
    assert set(got.sources.values()) == {spec_transfer.name}


def test_a_job_without_a_model_is_estimated_by_the_roofline_on_gpus_and_cpus(
    spec_transfer: SpecTransfer,
) -> None:
    job = parse_job(load_example("cpu-capable-hpc.yaml"))
    rows = predictions.offers(job, predictions.devices(build_snapshot(nodes(), [])))
    got = predictions.predict(job, rows, ask_fails, spec_transfer, Roofline())
    assert got.degraded is None  # the recommender was not asked: nothing it could answer
    assert set(got.sources) == {("a100", n) for n in range(1, 5)} | {("cpu", 1)}
    assert set(got.sources.values()) == {Roofline.name}


def test_the_roofline_scales_sublinearly_with_devices() -> None:
    job = parse_job(load_example("rigid-lammps-hpc.yaml"))
    one = Roofline().predict(job, VARIANTS["a100-sxm4-80gb"], 1)
    eight = Roofline().predict(job, VARIANTS["a100-sxm4-80gb"], 8)
    assert one is not None and eight is not None
    assert one.throughput.value * 8 * 0.9**3 == pytest.approx(eight.throughput.value)


# --- resizing ------------------------------------------------------------------------------


def rate(samples_per_s: float) -> Prediction:
    return Prediction(measured(samples_per_s, "samples/s", "t"), measured(300.0, "W", "t"))


def on_node(name: str) -> dict[str, Any]:
    return {"spec": {"nodeName": name}}


def test_stale_workers_are_only_this_jobs_workers_beyond_its_count() -> None:
    own = {n: on_node("n0") for n in ("job-w0", "job-w1", "job-w2", "job-w1x", "job-w01")}
    placement = Allocation("a100", (Share("n0", 2),))
    assert resizing.stale_workers("job", placement, own) == ["job-w1", "job-w2"]


def test_stale_workers_include_those_on_nodes_a_moved_job_left() -> None:
    own = {"job-w0": on_node("a0"), "job-w1": on_node("t1"), "other-w0": on_node("a0")}
    placement = Allocation("t4", (Share("t1", 2), Share("t1", 2)))
    assert resizing.stale_workers("job", placement, own) == ["job-w0", "job-w1"]


def test_when_worker_0_is_stale_every_worker_is() -> None:
    own = {"job-w0": on_node("a0"), "job-w1": on_node("a1"), "job-w2": on_node("a2")}
    placement = Allocation("a100", (Share("a1", 1), Share("a2", 1)))  # a0 given back
    assert resizing.stale_workers("job", placement, own) == ["job-w0", "job-w1", "job-w2"]


def test_a_worker_whose_share_changed_its_device_count_is_stale() -> None:
    def worker(node: str, gpus: int) -> dict[str, Any]:
        limits = {"nvidia.com/gpu": str(gpus)}
        return {"spec": {"nodeName": node, "containers": [{"resources": {"limits": limits}}]}}

    own = {"job-w0": worker("a0", 2), "job-w1": worker("a1", 2)}
    placement = Allocation("a100", (Share("a0", 2), Share("a1", 4)))
    assert resizing.stale_workers("job", placement, own) == ["job-w1"]


def test_an_unbound_worker_keeps_the_node_it_was_pinned_to_in_the_cache() -> None:
    job = api_job("elastic-resnet50-training.yaml")
    pod = state.slim_pod(worker_pods(job, TWO_NODES, {})[1])
    moved = Allocation("a100", (Share("a100-0", 4), Share("a100-9", 2)))
    assert resizing.stale_workers("resnet50-imagenet", moved, {"resnet50-imagenet-w1": pod}) == [
        "resnet50-imagenet-w1"
    ]


def test_work_left_is_modelled_from_each_allocations_predicted_rate() -> None:
    job = parse_job(api_job("gpt2-finetune-deadline.yaml"))  # 12.8M samples
    running = {"type": "Running", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    st = {
        "placement": {"type": "a100", "count": 4},
        "conditions": [running],
        "resizes": [{"time": "2026-01-01T01:00:00Z", "fromType": "t4", "toType": "a100",
                     "fromCount": 2, "toCount": 4}],
    }  # fmt: skip
    now = datetime(2026, 1, 1, 2, tzinfo=UTC).timestamp()
    found = {("t4", 2): rate(100.0), ("a100", 2): rate(150.0), ("a100", 4): rate(190.0)}
    left = resizing.remaining_samples(job, st, found, now)
    assert left == 12_800_000 - 100.0 * 3600 - 190.0 * 3600


def test_a_resize_replaces_the_placement_and_appends_to_a_bounded_history() -> None:
    old = [{"time": "t", "fromCount": 1, "toCount": 2}] * resizing.MAX_RESIZES_KEPT
    st = {"placement": {"type": "a100", "count": 2, "nodes": [{"name": "n0", "count": 2}]},
          "resizes": old}  # fmt: skip
    r = Resize("uid", "a100", (("n0", 2), ("n1", 2)), 2, 4, "use idle devices", "+90%")
    placement, history = resizing.resized(st, r, datetime(2026, 1, 1, tzinfo=UTC))
    assert placement["count"] == 4 and placement["nodeNames"] == "n0,n1"
    assert len(history) == resizing.MAX_RESIZES_KEPT
    assert dict(history[-1]) | {"time": ""} == {
        "time": "", "fromType": "a100", "toType": "a100", "fromCount": 2, "toCount": 4,
        "reason": "use idle devices", "predictedGain": "+90%",
    }  # fmt: skip


def test_energy_facts_with_a_bad_value_are_refused_naming_it(tmp_path: Path) -> None:
    from berth.operator.commands import read_energy_facts

    path = tmp_path / "energy.yaml"
    path.write_text("idleWatts:\n  NVIDIA-A100-SXM4-80GB: 420\n  T4: -3\n")
    with pytest.raises(ValueError, match=r"idleWatts\['T4'\] = -3"):
        read_energy_facts(str(path))
    path.write_text("idleWatts:\n  NVIDIA-A100-SXM4-80GB: 420\n")
    assert read_energy_facts(str(path)) == {"NVIDIA-A100-SXM4-80GB": 420.0}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("idleWatts: {T4: 70}\nidleWatts: {T4: 7}\n", "duplicate key 'idleWatts'"),
        ("idleWatts: &a {T4: *a}\n", "refers to itself"),
        ("idleWatts: {T4: [\n", "expected"),
    ],
)
def test_an_energy_facts_file_berth_cannot_read_is_an_error_not_a_traceback(
    tmp_path: Path, text: str, says: str
) -> None:
    from berth.operator.commands import read_energy_facts

    path = tmp_path / "energy.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=says):
        read_energy_facts(str(path))


def test_an_allocation_survives_the_status_boundary_unchanged() -> None:
    a = Allocation("a100", (Share("n0", 2), Share("n0", 2), Share("n1", 4)))
    written = status.allocation_status(a)
    assert written["count"] == 8 and written["nodeNames"] == "n0,n1"  # each node once
    assert status.allocation_of(written) == a
