"""From a trace and a cluster to simulated runs of every policy: the wiring, still pure.

A trace job becomes two AcceleratorJobs (traces.as_manifest). The baselines get it as its user
asked kube-scheduler for it: the trace's GPU count. berth gets it as ElasticFlow submits it:
work and deadline, with the count left to the scheduler (1 up to the largest count measured for
the family that the cluster's pool of a type can hold) and elastic. Each job is offered every
(type, count) the ground truth measured for its model family up to the cluster's devices of that
type. A job whose own count is offered on no type cannot be run the same way by every policy;
it is left out of all of them and counted.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Protocol

from berth.core.catalog import VARIANTS, Variant
from berth.core.job import CountRange, parse_job
from berth.core.prediction import Prediction
from berth.core.snapshot import NodeState
from berth.placement.eelas_like import eelas_like
from berth.placement.elastic import Settings
from berth.placement.gavel_like import gavel_like
from berth.placement.kube_default import kube_default
from berth.placement.plan import decide
from berth.simulator.engine import (
    EPOCH,
    Elasticity,
    Measuring,
    Policy,
    Run,
    SimJob,
    Truth,
    simulate,
)
from berth.simulator.traces import TraceJob, as_manifest
from berth.simulator.truth import GroundTruth

# MODELLED, not measured: checkpoint, torchrun re-rendezvous and warm-up of one resize. The
# checkpoints of the trace's families (25M-1.5B parameters) write in seconds; restart and
# warm-up dominate. Override per family with `berth simulate --restart-s 60,gpt2=120`.
RESTART_S = 60.0


@dataclass(frozen=True)
class PolicySpec:
    place: Policy
    told: str  # whose figures it is told: ORACLE (the measured tables), BERTH or COLD
    berth: bool  # gets berth's view of the jobs (count left to it, elastic)
    elastic: bool  # resizes running jobs every period
    measured: bool = False  # the closed loop: resizes decided on what it measured of each job


ORACLE, BERTH, COLD = "oracle", "berth", "cold"  # cold: a predictor that saw no job's family
POLICIES: dict[str, PolicySpec] = {
    "berth": PolicySpec(decide, told=BERTH, berth=True, elastic=True, measured=True),
    "berth-cold": PolicySpec(decide, told=COLD, berth=True, elastic=True, measured=True),
    "berth-rigid": PolicySpec(decide, told=BERTH, berth=True, elastic=False),
    "berth-oracle": PolicySpec(decide, told=ORACLE, berth=True, elastic=True),
    "kube-default": PolicySpec(kube_default, told=ORACLE, berth=False, elastic=False),
    "gavel-like": PolicySpec(gavel_like, told=ORACLE, berth=False, elastic=False),
    "eelas-like": PolicySpec(eelas_like, told=ORACLE, berth=False, elastic=False),
}
BASELINE = "kube-default"
MEASURING = Measuring()


@dataclass
class Workload:
    jobs: list[SimJob]  # as their users asked
    berth_jobs: list[SimJob]  # the same jobs as berth gets them
    offers: dict[str, dict[tuple[str, int], Truth]]
    family: dict[str, tuple[str, int]]  # job id -> (model family, global batch)
    excluded: Counter[str] = field(default_factory=Counter)  # reason -> jobs left out
    types_not_offered: Counter[str] = field(default_factory=Counter)  # type -> jobs
    modelled_power: set[tuple[str, str]] = field(default_factory=set)  # (family, type)


def cluster_variants(nodes: Sequence[NodeState]) -> dict[str, Variant]:
    """Each GPU type's variant in this cluster (the first node's, when pools differ)."""
    found: dict[str, Variant] = {}
    for n in nodes:
        if n.accelerator.type and n.accelerator.variant and n.accelerator.type not in found:
            found[n.accelerator.type] = VARIANTS[n.accelerator.variant]
    return found


def prepare(trace: Sequence[TraceJob], nodes: Sequence[NodeState], truth: GroundTruth) -> Workload:
    variants = cluster_variants(nodes)
    capacity = Counter[str]()
    for n in nodes:
        if n.accelerator.type in variants:
            capacity[n.accelerator.type] += n.allocatable.gpus
    work = Workload([], [], {}, {})
    for tj in trace:
        if tj.model is None or tj.batch_size is None or tj.iterations is None:
            work.excluded["no model, batch or work in the trace"] += 1
            continue
        offers: dict[tuple[str, int], Truth] = {}
        for type_id, variant in sorted(variants.items()):
            counts = [c for c in truth.counts(tj.model, type_id) if c <= capacity[type_id]]
            if not counts:
                work.types_not_offered[type_id] += 1
            for c in counts:
                rate = truth.throughput(tj.model, type_id, c, tj.batch_size)
                watts = truth.device_watts(tj.model, variant)
                assert rate is not None
                modelled = watts.provenance.origin.value == "modelled"
                offers[(type_id, c)] = Truth(rate.value, watts.value, modelled)
                if modelled:
                    work.modelled_power.add((tj.model, type_id))
        if not any(c == tj.gpus for _, c in offers):
            work.excluded[
                f"{tj.model} x{tj.gpus}: the user's count is measured on no type here"
            ] += 1
            continue
        created = EPOCH + timedelta(seconds=tj.submitted_s)
        job = parse_job(as_manifest(tj, created))
        up_to = max(c for _, c in offers)
        # as_manifest(tj, created, up_to=up_to), without validating the same job twice
        flexible = replace(
            job,
            accelerators=replace(job.accelerators, count=CountRange(1, up_to)),
            elastic=up_to > 1,
        )
        samples = job.workload.total_samples
        assert samples is not None
        work.jobs.append(SimJob(job.name, tj.submitted_s, job, samples, tj.deadline_s))
        work.berth_jobs.append(SimJob(job.name, tj.submitted_s, flexible, samples, tj.deadline_s))
        work.offers[job.name] = offers
        work.family[job.name] = (tj.model, tj.batch_size)
    return work


def oracle_predictions(
    work: Workload, truth: GroundTruth, variants: Mapping[str, Variant]
) -> Callable[[SimJob], dict[tuple[str, int], Prediction]]:
    """The measured tables as predictions: what berth-oracle and the baselines are told."""

    def told(job: SimJob) -> dict[tuple[str, int], Prediction]:
        family, batch = work.family[job.id]
        out = {}
        for type_id, count in work.offers[job.id]:
            rate = truth.throughput(family, type_id, count, batch)
            assert rate is not None
            out[(type_id, count)] = Prediction(rate, truth.device_watts(family, variants[type_id]))
        return out

    return told


class Predictor(Protocol):
    @property
    def name(self) -> str: ...

    def predict_many(
        self, rows: Sequence[tuple[str, int, Variant, int]]
    ) -> Sequence[Prediction | None]: ...


def model_predictions(
    work: Workload, predictor: Predictor, variants: Mapping[str, Variant]
) -> Callable[[SimJob], dict[tuple[str, int], Prediction]]:
    """The predictor's figures for the offered candidates only (berth never picks a candidate
    the ground truth cannot run), all of a job's candidates in one call."""

    def told(job: SimJob) -> dict[tuple[str, int], Prediction]:
        family, batch = work.family[job.id]
        keys = sorted(work.offers[job.id])
        found = predictor.predict_many([(family, batch, variants[t], c) for t, c in keys])
        return {key: p for key, p in zip(keys, found, strict=True) if p is not None}

    return told


def assign_workloads(
    trace: Sequence[TraceJob], mix: Sequence[TraceJob], truth: GroundTruth, seed: int
) -> list[TraceJob]:
    """Philly knows only GPUs and duration. Each job gets a (model, batch) drawn, seeded, from
    the ITP mix, and the work it would do in its duration at the measured a100 rate on its
    count (the ElasticFlow authors gave the ITP jobs a100 rates the same way). Jobs whose
    count a100 was not measured on keep no work and are counted out."""
    rng = random.Random(seed)
    pairs = [(j.model, j.batch_size) for j in mix if j.model and j.batch_size]
    out = []
    for tj in trace:
        model, batch = rng.choice(pairs)
        assert model is not None and batch is not None
        rate = truth.throughput(model, "a100", tj.gpus, batch)
        iterations = None if rate is None else max(1, round(tj.duration_s * rate.value / batch))
        out.append(replace(tj, model=model, batch_size=batch, iterations=iterations))
    return out


def parse_restart(spec: str) -> tuple[float, dict[str, float]]:
    """ "60" or "60,gpt2=120,bert=90" -> (default seconds, per family)."""
    default, families = RESTART_S, {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, _, value = part.rpartition("=")
        try:
            seconds = float(value)
        except ValueError:
            raise ValueError(f"--restart-s {spec!r}: {value!r} is not seconds") from None
        if seconds < 0:
            raise ValueError(f"--restart-s {spec!r}: {seconds:g} is negative")
        if name:
            families[name] = seconds
        else:
            default = seconds
    return default, families


def run_policy(
    name: str,
    work: Workload,
    nodes: Sequence[NodeState],
    told: Mapping[str, Callable[[SimJob], Mapping[tuple[str, int], Prediction]]],
    restart: tuple[float, Mapping[str, float]] = (RESTART_S, {}),
    progress: Callable[[int], None] | None = None,
    measuring: Measuring | None = MEASURING,
    explore: bool = True,
) -> Run:
    """`measuring`: how berth measures running jobs (None: it acts on its predictions alone);
    `explore`: the elastic policy's step 5, trials where they pay."""
    spec = POLICIES[name]
    default, families = restart
    elasticity = None
    if spec.elastic:
        seconds = {j.id: families.get(work.family[j.id][0], default) for j in work.jobs}
        loop = measuring if spec.measured else None
        settings = Settings(restart_s=default, explore=explore and spec.measured)
        elasticity = Elasticity(settings, lambda j: seconds[j.id], loop)
    jobs = work.berth_jobs if spec.berth else work.jobs
    return simulate(jobs, nodes, spec.place, work.offers, told[spec.told], progress, elasticity)
