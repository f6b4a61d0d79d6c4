"""A placement as Kubernetes objects: one worker Pod per node share and a headless Service for
rendezvous. Pure: the same job and placement always give the same objects, so creating them
again after a restart is a no-op (409 AlreadyExists), never a second copy."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from berth.core.allocation import Allocation
from berth.core.catalog import CPU
from berth.core.snapshot import GPU_RESOURCE, LABEL_GPU_PRODUCT
from berth.crds import API_VERSION, KIND

LABEL_JOB = "berth.dev/job"
LABEL_WORKER = "berth.dev/worker"
RDZV_PORT = 29400  # torchrun's default c10d port


def worker_name(job_name: str, k: int) -> str:
    return f"{job_name}-w{k}"


def owner_reference(job: Mapping[str, Any]) -> dict[str, Any]:
    meta = job["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def service(job: Mapping[str, Any]) -> dict[str, Any]:
    """Headless: each worker resolves its peers; not-ready addresses are published so the
    rendezvous works before the workers pass readiness."""
    meta = job["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": {LABEL_JOB: meta["name"]},
            "ownerReferences": [owner_reference(job)],
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {LABEL_JOB: meta["name"]},
            "ports": [{"name": "c10d", "port": RDZV_PORT, "targetPort": RDZV_PORT}],
        },
    }


# torchrun's restart budget (PET_MAX_RESTARTS). A shrink costs each surviving agent one: its
# workers lose a peer, fail, and re-form at the smaller size. A grow costs none (a membership
# change) and neither does a move or a change of worker 0 (every worker is made anew). berth
# shrinks a job at most once per --resize-min-interval (15 min by default) and only after
# growing it, so 100 lasts more than two days of back-to-back resizes. When an agent runs out
# it closes the rendezvous for the whole job, so the budget must outlast berth's decisions.
ELASTIC_RESTARTS = 100
RIGID_RESTARTS = 3  # berth never shrinks a rigid job: these are for the job's own failures
# Seconds a rendezvous that has its minimum waits for more agents. berth creates all workers
# of a placement together, so they start within seconds of each other; a later one joins as a
# waiting node and the group re-forms with it (a membership change, no restart spent).
LAST_CALL_S = 5
# A shrunk job's survivors re-form only once the departed agent's heartbeats have lapsed
# (interval x attempts); torch's 5 s x 3 made a shrink take 22.6 s (median of 3, bench/).
KEEP_ALIVE_S, KEEP_ALIVE_ATTEMPTS = 1, 3


def needs_service(job: Mapping[str, Any], placement: Allocation) -> bool:
    """Whether workers must find each other by DNS: not a rigid training job on one node,
    whose only worker is its own rendezvous (a move to more workers makes them all anew);
    an elastic one may grow into a running group, and other kinds' users may address them."""
    spec = job["spec"]
    one = len(placement.shares) == 1 and not spec.get("elastic", False)
    return not (one and spec["workload"]["kind"] == "training")


def rendezvous_endpoint(job: Mapping[str, Any], placement: Allocation) -> str:
    """Worker 0's own DNS name (hostname.subdomain.namespace.svc): one pod, never the Service,
    whose name resolves to every worker and would let each agent find itself and host a store;
    a worker alone in its job is its own."""
    if not needs_service(job, placement):
        return f"localhost:{RDZV_PORT}"
    name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
    return f"{worker_name(name, 0)}.{name}.{namespace}.svc:{RDZV_PORT}"


def _torchrun_env(job: Mapping[str, Any], placement: Allocation, k: int) -> dict[str, str]:
    meta, spec = job["metadata"], job["spec"]
    workers = len(placement.shares)
    elastic = bool(spec.get("elastic", False))
    count = spec.get("accelerators", {}).get("count", {})
    return {
        # Elastic: survivors of a shrink keep their agent, so the minimum is one worker.
        "PET_NNODES": f"1:{max(workers, int(count.get('max', workers)))}"
        if elastic
        else f"{workers}:{workers}",
        "PET_NPROC_PER_NODE": str(placement.shares[k].devices),
        "PET_RDZV_BACKEND": "c10d",
        "PET_RDZV_ENDPOINT": rendezvous_endpoint(job, placement),
        "PET_RDZV_ID": meta["uid"],
        # Exactly one store host, told, not guessed from its addresses: worker 0. The others
        # only connect, and retry while worker 0's DNS record is not there yet.
        "PET_RDZV_CONF": f"is_host={int(k == 0)},last_call_timeout={LAST_CALL_S},"
        f"keep_alive_interval={KEEP_ALIVE_S},keep_alive_max_attempt={KEEP_ALIVE_ATTEMPTS}",
        "PET_MAX_RESTARTS": str(ELASTIC_RESTARTS if elastic else RIGID_RESTARTS),
        # Rank 0 reusing the rendezvous store does not rewrite MASTER_ADDR for the next round,
        # so an agent that joins later (a grow) waits for it forever; a store per round does.
        "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1",
    }


def _env(job: Mapping[str, Any], placement: Allocation, k: int) -> list[dict[str, str]]:
    meta, spec = job["metadata"], job["spec"]
    env = {
        "BERTH_JOB": meta["name"],
        "BERTH_WORKER": str(k),
        # At creation: survivors of a resize keep these; torchrun gives each worker the
        # current WORLD_SIZE and RANK.
        "BERTH_WORKERS": str(len(placement.shares)),
        "BERTH_ACCELERATOR": placement.type,
        "BERTH_WORLD_SIZE": str(placement.count),
    }
    if spec["workload"]["kind"] == "training":
        env |= _torchrun_env(job, placement, k)
    return [{"name": key, "value": value} for key, value in env.items()]


def _default_restart_policy(kind: str) -> str:
    # A finished training or HPC worker must stay finished; a service restarts.
    return "Always" if kind == "inference" else "OnFailure"


def worker_pods(
    job: Mapping[str, Any], placement: Allocation, products: Mapping[str, str]
) -> list[dict[str, Any]]:
    """`products`: node name -> its nvidia.com/gpu.product label, pinned beside the node name
    so a node relabelled with another GPU no longer matches."""
    meta, spec = job["metadata"], job["spec"]
    template = spec["template"]
    pods = []
    for k, share in enumerate(placement.shares):
        pod_spec = copy.deepcopy(dict(template["spec"]))
        pod_spec.setdefault("restartPolicy", _default_restart_policy(spec["workload"]["kind"]))
        # Always berth's: each worker's DNS name (hostname.subdomain) is the rendezvous
        # endpoint's for worker 0, so a template's own would leave it unresolvable or shared.
        pod_spec["subdomain"] = meta["name"]
        pod_spec["hostname"] = worker_name(meta["name"], k)
        terms: list[dict[str, Any]] = [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [share.node]}]}
        ]
        if placement.type != CPU and share.node in products:
            terms[0]["matchExpressions"] = [
                {"key": LABEL_GPU_PRODUCT, "operator": "In", "values": [products[share.node]]}
            ]
        affinity = dict(pod_spec.get("affinity") or {})
        affinity["nodeAffinity"] = {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}
        }
        pod_spec["affinity"] = affinity
        containers = pod_spec["containers"]
        env = _env(job, placement, k)
        for i, container in enumerate(containers):
            container["env"] = [*env, *(container.get("env") or [])]
            if placement.type != CPU and i == 0:
                # Devices go to the first container; limits and requests must be equal.
                resources = container.setdefault("resources", {})
                for part in ("requests", "limits"):
                    resources[part] = {
                        **(resources.get(part) or {}),
                        GPU_RESOURCE: str(share.devices),
                    }
        if placement.type != CPU:
            tolerations = list(pod_spec.get("tolerations") or [])
            tolerations.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
            pod_spec["tolerations"] = tolerations
        template_meta = template.get("metadata") or {}
        pods.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": worker_name(meta["name"], k),
                    "namespace": meta["namespace"],
                    "labels": {
                        **(template_meta.get("labels") or {}),
                        LABEL_JOB: meta["name"],
                        LABEL_WORKER: str(k),
                    },
                    "annotations": dict(template_meta.get("annotations") or {}),
                    "ownerReferences": [owner_reference(job)],
                },
                "spec": pod_spec,
            }
        )
    return pods
