"""The cluster as placement sees it, built from plain Node and Pod dicts as the API returns them.

Node facts come from what the GPU operator publishes (labels nvidia.com/gpu.product,
nvidia.com/gpu.memory; allocatable nvidia.com/gpu) and from berth's exporter (annotations
berth.dev/health, berth.dev/idle-watts). Free capacity is allocatable minus what the node's
non-terminated pods request, counted the way kube-scheduler counts it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cached_property
from types import MappingProxyType
from typing import Any

from berth.core.catalog import CPU, AcceleratorName, resolve
from berth.core.quantity import QuantityError, to_int, to_millis

GPU_RESOURCE = "nvidia.com/gpu"
LABEL_GPU_PRODUCT = "nvidia.com/gpu.product"
LABEL_GPU_COUNT = "nvidia.com/gpu.count"
LABEL_GPU_MEMORY = "nvidia.com/gpu.memory"  # MiB per GPU
LABEL_CPU_CLASS = "berth.dev/cpu-class"
ANNOTATION_HEALTH = "berth.dev/health"
ANNOTATION_IDLE_WATTS = "berth.dev/idle-watts"


class Health(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"  # no exporter has reported on this node


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str


@dataclass(frozen=True)
class Resources:
    gpus: int = 0
    cpu_millis: int = 0
    memory_bytes: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.gpus + other.gpus,
            self.cpu_millis + other.cpu_millis,
            self.memory_bytes + other.memory_bytes,
        )

    def __sub__(self, other: Resources) -> Resources:
        return Resources(
            self.gpus - other.gpus,
            self.cpu_millis - other.cpu_millis,
            self.memory_bytes - other.memory_bytes,
        )

    def max(self, other: Resources) -> Resources:
        return Resources(
            max(self.gpus, other.gpus),
            max(self.cpu_millis, other.cpu_millis),
            max(self.memory_bytes, other.memory_bytes),
        )


@dataclass(frozen=True)
class NodeProblem:
    """A node fact placement cannot use: `reason` is the Event's (one word), `message` says it."""

    reason: str
    message: str


@dataclass(frozen=True)
class NodeState:
    name: str
    accelerator: AcceleratorName  # type "cpu" for CPU-only nodes; unknown GPUs keep the raw name
    gpu_memory_mib: int | None
    cpu_class: str | None
    allocatable: Resources
    requested: Resources
    workload_pods: int  # non-terminated pods other than DaemonSet pods: the node is awake
    ready: bool
    cordoned: bool
    taints: tuple[Taint, ...]
    health: Health
    idle_watts: float | None  # measured by berth's exporter, when it runs there
    labels: Mapping[str, str] = field(default_factory=dict)
    problems: tuple[NodeProblem, ...] = ()  # node facts we could not use, and why

    @cached_property
    def free(self) -> Resources:
        # Computed once: placement asks each node for it once per candidate count.
        return self.allocatable - self.requested

    @property
    def cpu_only(self) -> bool:
        return self.accelerator.type == CPU

    @property
    def awake(self) -> bool:
        return self.workload_pods > 0

    @property
    def usable(self) -> bool:
        """Ready, not cordoned, not reported unhealthy, and of a type we know."""
        return (
            self.ready
            and not self.cordoned
            and self.health is not Health.UNHEALTHY
            and self.accelerator.known
        )


@dataclass(frozen=True)
class ClusterSnapshot:
    nodes: tuple[NodeState, ...]

    @cached_property
    def by_type(self) -> dict[str | None, tuple[NodeState, ...]]:
        """Accelerator type -> its nodes, in snapshot order (None: nodes of no known type)."""
        grouped: dict[str | None, list[NodeState]] = {}
        for n in self.nodes:
            grouped.setdefault(n.accelerator.type, []).append(n)
        return {t: tuple(ns) for t, ns in grouped.items()}

    def node(self, name: str) -> NodeState:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


# --- pods --------------------------------------------------------------------------------


def is_terminated(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _container_requests(container: Mapping[str, Any]) -> Resources:
    """A container's requests; a resource with only a limit requests its limit, as the API
    server defaults it."""
    res = container.get("resources") or {}
    merged = {**(res.get("limits") or {}), **(res.get("requests") or {})}
    return _resources(merged)


def _resources(values: Mapping[str, Any]) -> Resources:
    return Resources(
        gpus=to_int(values.get(GPU_RESOURCE, 0)),
        cpu_millis=to_millis(values.get("cpu", 0)),
        memory_bytes=to_int(values.get("memory", 0)),
    )


def pod_requests(pod: Mapping[str, Any]) -> Resources:
    """Effective requests, as kube-scheduler computes them: the larger of the app containers'
    sum and each init container's need; sidecars (init containers with restartPolicy Always)
    run alongside both; plus the pod's overhead."""
    spec = pod.get("spec") or {}
    total = Resources()
    for container in spec.get("containers") or ():
        total += _container_requests(container)
    sidecars = Resources()
    init_peak = Resources()
    for container in spec.get("initContainers") or ():
        need = _container_requests(container)
        if container.get("restartPolicy") == "Always":
            total += need
            sidecars += need
            need = sidecars
        else:
            need += sidecars
        init_peak = init_peak.max(need)
    return total.max(init_peak) + _resources(spec.get("overhead") or {})


def _is_daemon(pod: Mapping[str, Any]) -> bool:
    owners = (pod.get("metadata") or {}).get("ownerReferences") or ()
    return any(ref.get("kind") == "DaemonSet" for ref in owners)


# --- nodes -------------------------------------------------------------------------------


def _node_facts(
    node: Mapping[str, Any], idle_defaults: Mapping[str, float] = MappingProxyType({})
) -> NodeState:
    """The node as its own object says, before its pods are counted."""
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    status = node.get("status") or {}
    labels: Mapping[str, str] = meta.get("labels") or {}
    annotations: Mapping[str, str] = meta.get("annotations") or {}
    name = str(meta.get("name", ""))
    problems: list[NodeProblem] = []

    try:
        allocatable = _resources(status.get("allocatable") or {})
    except QuantityError as exc:
        allocatable = Resources()
        problems.append(NodeProblem("NodeFacts", f"allocatable unreadable: {exc}"))

    product = labels.get(LABEL_GPU_PRODUCT)
    if product is not None:
        accelerator = resolve(product)
        if not accelerator.known:
            problems.append(
                NodeProblem(
                    "UnknownAccelerator", f"unknown accelerator {product!r} in {LABEL_GPU_PRODUCT}"
                )
            )
    elif allocatable.gpus > 0:
        accelerator = AcceleratorName("", None)
        problems.append(
            NodeProblem("NodeFacts", f"{GPU_RESOURCE} allocatable but no {LABEL_GPU_PRODUCT} label")
        )
    else:
        accelerator = AcceleratorName(CPU, CPU)

    gpu_memory = None
    if LABEL_GPU_MEMORY in labels:
        raw = labels[LABEL_GPU_MEMORY]
        if raw.isdigit():
            gpu_memory = int(raw)
        else:
            problems.append(
                NodeProblem("NodeFacts", f"{LABEL_GPU_MEMORY}={raw!r} is not a whole number of MiB")
            )

    health = Health.UNKNOWN
    if ANNOTATION_HEALTH in annotations:
        raw = annotations[ANNOTATION_HEALTH]
        if raw in {h.value for h in Health}:
            health = Health(raw)
        else:
            problems.append(
                NodeProblem(
                    "NodeFacts",
                    f"{ANNOTATION_HEALTH}={raw!r} is not one of {[h.value for h in Health]}",
                )
            )

    idle_watts = None
    if ANNOTATION_IDLE_WATTS in annotations:
        raw = annotations[ANNOTATION_IDLE_WATTS]
        try:
            idle_watts = float(raw)
        except ValueError:
            idle_watts = math.nan
        if not (math.isfinite(idle_watts) and idle_watts >= 0):
            problems.append(
                NodeProblem(
                    "NodeFacts", f"{ANNOTATION_IDLE_WATTS}={raw!r} is not a non-negative number"
                )
            )
            idle_watts = None
    if idle_watts is None:  # the cluster's energy facts, where no exporter measured
        key = labels.get(LABEL_GPU_PRODUCT) or labels.get(LABEL_CPU_CLASS) or ""
        idle_watts = idle_defaults.get(key)

    conditions = status.get("conditions") or ()
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    taints = tuple(
        Taint(t.get("key", ""), t.get("value", ""), t.get("effect", ""))
        for t in spec.get("taints") or ()
    )
    return NodeState(
        name=name,
        accelerator=accelerator,
        gpu_memory_mib=gpu_memory,
        cpu_class=labels.get(LABEL_CPU_CLASS),
        allocatable=allocatable,
        requested=Resources(),
        workload_pods=0,
        ready=ready,
        cordoned=bool(spec.get("unschedulable", False)),
        taints=taints,
        health=health,
        idle_watts=idle_watts,
        labels=dict(labels),
        problems=tuple(problems),
    )


def _with_pods(
    state: NodeState,
    pods: Sequence[Mapping[str, Any]],
    requests: Callable[[Mapping[str, Any]], Resources],
) -> NodeState:
    if not pods:
        return state
    requested = Resources()
    workload_pods = 0
    problems = list(state.problems)
    for pod in pods:
        try:
            requested += requests(pod)
        except QuantityError as exc:
            pod_name = (pod.get("metadata") or {}).get("name")
            problems.append(NodeProblem("NodeFacts", f"pod {pod_name} requests unreadable: {exc}"))
        workload_pods += not _is_daemon(pod)
    return replace(
        state, requested=requested, workload_pods=workload_pods, problems=tuple(problems)
    )


def _build(
    nodes: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    facts: Callable[[Mapping[str, Any]], NodeState],
    requests: Callable[[Mapping[str, Any]], Resources],
) -> ClusterSnapshot:
    by_node: dict[str, list[Mapping[str, Any]]] = {}
    for pod in pods:
        node_name = (pod.get("spec") or {}).get("nodeName")
        if node_name and not is_terminated(pod):
            by_node.setdefault(node_name, []).append(pod)
    states = []
    for node in nodes:
        state = facts(node)
        states.append(_with_pods(state, by_node.get(state.name, ()), requests))
    return ClusterSnapshot(tuple(sorted(states, key=lambda s: s.name)))


def build_snapshot(
    nodes: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    idle_defaults: Mapping[str, float] = MappingProxyType({}),
) -> ClusterSnapshot:
    """Nodes sorted by name, so the same cluster always gives the same snapshot.
    `idle_defaults`: idle watts by GPU product or CPU class label, for nodes without a measured
    berth.dev/idle-watts."""
    return _build(nodes, pods, lambda node: _node_facts(node, idle_defaults), pod_requests)


class SnapshotBuilder:
    """build_snapshot over a watch cache, reading each Node's facts and each Pod's requests
    once per object: the cache replaces an object when it changes and never edits one, so the
    same object always has the same facts. Keeps only the objects the last build saw (each
    held, so its id is not reused while it is remembered)."""

    def __init__(self, idle_defaults: Mapping[str, float] = MappingProxyType({})) -> None:
        self.idle_defaults = idle_defaults
        self._facts: dict[int, tuple[Mapping[str, Any], NodeState]] = {}
        self._requests: dict[int, tuple[Mapping[str, Any], Resources]] = {}

    def build(
        self, nodes: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]
    ) -> ClusterSnapshot:
        facts: dict[int, tuple[Mapping[str, Any], NodeState]] = {}
        requests: dict[int, tuple[Mapping[str, Any], Resources]] = {}

        def node_facts(node: Mapping[str, Any]) -> NodeState:
            known = self._facts.get(id(node))
            if known is None or known[0] is not node:
                known = (node, _node_facts(node, self.idle_defaults))
            facts[id(node)] = known
            return known[1]

        def pod_requested(pod: Mapping[str, Any]) -> Resources:
            known = self._requests.get(id(pod))
            if known is None or known[0] is not pod:
                known = (pod, pod_requests(pod))
            requests[id(pod)] = known
            return known[1]

        snapshot = _build(nodes, pods, node_facts, pod_requested)
        self._facts, self._requests = facts, requests
        return snapshot


def with_claims(snapshot: ClusterSnapshot, claims: Mapping[str, Resources]) -> ClusterSnapshot:
    """The snapshot once one new pod per named node, requesting `claims[node]`, is bound: what
    a decision just took, without rebuilding every node from the API's dicts."""
    return ClusterSnapshot(
        tuple(
            replace(n, requested=n.requested + claims[n.name], workload_pods=n.workload_pods + 1)
            if n.name in claims
            else n
            for n in snapshot.nodes
        )
    )
