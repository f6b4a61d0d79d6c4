"""`berth simulate`: the shell around the simulator (files in, progress, table, JSON, plot)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from berth.core import tables
from berth.core.catalog import Variant
from berth.core.cluster import node_objects, parse_cluster
from berth.core.manifest import read_one
from berth.core.prediction import Prediction
from berth.core.snapshot import build_snapshot
from berth.core.validation import InvalidObject
from berth.placement.elastic import Settings
from berth.placement.fallback import SpecTransfer
from berth.progress_bar import bar
from berth.recommender import served
from berth.recommender.model import COLD as COLD_MODEL
from berth.recommender.model import ModelError
from berth.recommender.model import load as load_model
from berth.simulator.engine import Measuring, SimJob
from berth.simulator.report import metrics, plot, slowdowns, table
from berth.simulator.run import (
    BASELINE,
    BERTH,
    COLD,
    ORACLE,
    POLICIES,
    RESTART_S,
    Predictor,
    Workload,
    assign_workloads,
    cluster_variants,
    model_predictions,
    oracle_predictions,
    parse_restart,
    prepare,
    run_policy,
)
from berth.simulator.traces import TraceError, TraceJob, load_itp, load_philly
from berth.simulator.truth import GroundTruth

CLUSTERS = Path(str(resources.files("berth"))) / "clusters"
DEFAULT_TRACE = tables.SHIPPED / "itp-195job.csv"


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "simulate",
        help="replay a job trace on a cluster under berth and the baselines; compare energy/JCT",
        description="Replay a job trace on a described cluster under each placement policy, "
        "with ground truth from measurements only, and compare energy and job completion time.",
    )
    p.add_argument("--trace", type=Path, default=DEFAULT_TRACE,
                   help="ITP (ElasticFlow) or Philly CSV trace (default: the bundled 195-job "
                   "ITP sample)")  # fmt: skip
    p.add_argument("--trace-format", choices=["itp", "philly"], default="itp")
    p.add_argument("--cluster", default="mixed-64",
                   help="a bundled cluster (mixed-64, small) or a cluster YAML file")  # fmt: skip
    p.add_argument("--policies", default=",".join(POLICIES),
                   help=f"comma-separated, from {', '.join(POLICIES)}")  # fmt: skip
    p.add_argument("--restart-s", default=str(RESTART_S), metavar="SECONDS[,FAMILY=SECONDS]",
                   help="modelled cost of one resize (checkpoint + restart) for elastic "
                   f"policies, e.g. 60,gpt2=120 (default: {RESTART_S:g})")  # fmt: skip
    p.add_argument("--measure-delay", type=float, default=Measuring.delay_s, metavar="SECONDS",
                   help="berth sees a job's rate once it has run this long on an allocation "
                   f"(default {Measuring.delay_s:g}: two scrapes 30 s apart)")  # fmt: skip
    p.add_argument("--measure-noise", type=float, default=Measuring.noise, metavar="FRACTION",
                   help="MODELLED relative spread of one measured window's rate (default "
                   f"{Measuring.noise:g})")  # fmt: skip
    p.add_argument("--open-loop", action="store_true",
                   help="berth and berth-cold decide on their predictions alone, never on "
                   "what they measured")  # fmt: skip
    p.add_argument("--explore", action=argparse.BooleanOptionalAction, default=True,
                   help="berth and berth-cold may run a job for a while at a count it was never "
                   "measured at, where that could suit its objective better (default: on)",
                   )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seeds the workloads given to Philly jobs")
    p.add_argument("--jobs", type=int, default=None, help="keep the first N jobs of the window")
    p.add_argument("--window", default=None, metavar="START:END",
                   help="hours after the trace's first submission, e.g. 0:24")  # fmt: skip
    p.add_argument("--json", type=Path, default=Path("berth-simulation.json"),
                   help="report path (default: berth-simulation.json)")  # fmt: skip
    p.add_argument("--plot", type=Path, default=Path("berth-simulation.png"),
                   help="plot path (default: berth-simulation.png); needs berth[plot]")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_simulate)


Told = dict[str, Callable[[SimJob], Mapping[tuple[str, int], Prediction]]]


def predictions(
    work: Workload, truth: GroundTruth, variants: dict[str, Variant], names: Sequence[str]
) -> tuple[Told, str]:
    """What each kind of policy is told. berth: the recommender's served predictor (transfer
    from the measured tables, else the MLP; the spec-ratio fallback without a model file).
    berth-cold: the same, with the transfer fitted without the trace's families and the MLP
    trained without them (recommender-cold.onnx), so no job's family was seen."""
    try:
        berth: Predictor = served.served(load_model())
    except ModelError as exc:
        print(f"warning: {exc}; berth uses the fallback predictor", file=sys.stderr)
        berth = SpecTransfer(tables.read()[0])
    told: Told = {
        ORACLE: oracle_predictions(work, truth, variants),
        BERTH: model_predictions(work, berth, variants),
    }
    if "berth-cold" in names:
        families = {family for family, _ in work.family.values()}
        cold = load_model(COLD_MODEL)
        seen = families - set(cold.metadata.get("left_out", []))
        if seen:
            print(f"warning: berth-cold's model saw {sorted(seen)}", file=sys.stderr)
        unseen = [r for r in served.shipped_records() if r.family not in families]
        told[COLD] = model_predictions(work, served.served(cold, unseen), variants)
    return told, berth.name


def _window(jobs: list[TraceJob], spec: str) -> list[TraceJob]:
    try:
        start_h, end_h = (float(x) for x in spec.split(":"))
    except ValueError:
        raise ValueError(f"--window {spec!r}: want START:END in hours, e.g. 0:24") from None
    if not 0 <= start_h < end_h:
        raise ValueError(f"--window {spec!r}: want 0 <= START < END")
    first = jobs[0].submitted_s if jobs else 0.0
    return [j for j in jobs if start_h * 3600 <= j.submitted_s - first < end_h * 3600]


def _cluster_file(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    bundled = CLUSTERS / f"{name}.yaml"
    if not bundled.exists():
        known = ", ".join(sorted(p.stem for p in CLUSTERS.glob("*.yaml")))
        raise ValueError(f"--cluster {name!r}: no such file or bundled cluster ({known})")
    return bundled


def cmd_simulate(args: argparse.Namespace) -> int:
    try:
        names = [p.strip() for p in args.policies.split(",") if p.strip()]
        unknown = [p for p in names if p not in POLICIES]
        if unknown or not names:
            raise ValueError(f"--policies: unknown {unknown}; choose from {', '.join(POLICIES)}")
        restart = parse_restart(args.restart_s)
        if not args.measure_delay >= 0 or not args.measure_noise >= 0:
            raise ValueError("--measure-delay and --measure-noise must be >= 0")
        measuring = None
        if not args.open_loop:
            measuring = Measuring(args.measure_delay, args.measure_noise)
        cluster_path = _cluster_file(args.cluster)
        cluster = parse_cluster(read_one(cluster_path))
        records, power = tables.read()
        truth = GroundTruth(records, power)
        if args.trace_format == "itp":
            trace = load_itp(args.trace)
        else:
            mix = load_itp(DEFAULT_TRACE)
            trace = assign_workloads(load_philly(args.trace), mix, truth, args.seed)
        if args.window:
            trace = _window(trace, args.window)
        if args.jobs is not None:
            if args.jobs < 1:
                raise ValueError("--jobs must be at least 1")
            trace = trace[: args.jobs]
    except (OSError, ValueError, TraceError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except InvalidObject as exc:
        print(f"error: {args.cluster}: invalid cluster description", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return 2

    # Simulated nodes are Ready, as kwok reports them on the test control plane.
    nodes = [replace(n, ready=True) for n in build_snapshot(node_objects(cluster), []).nodes]
    gpus = sum(n.allocatable.gpus for n in nodes)
    variants = cluster_variants(nodes)
    work = prepare(trace, nodes, truth)
    if not work.jobs:
        print(f"error: no job of {args.trace} can run on {cluster.name}", file=sys.stderr)
        return 1
    told, predictor = predictions(work, truth, variants, names)
    print(
        f"berth simulate: {len(work.jobs)} jobs from {args.trace.name} on {cluster.name} "
        f"({len(nodes)} nodes, {gpus} GPUs); berth's predictor: {predictor}",
        file=sys.stderr,
    )
    results: dict[str, dict[str, Any]] = {}
    timelines = {}
    runs = {}
    for name in names:
        began = time.perf_counter()
        shown = bar(name, len(work.jobs), "jobs", args.quiet)
        runs[name] = run = run_policy(
            name, work, nodes, told, restart, shown, measuring, args.explore
        )
        results[name] = metrics(run, gpus) | {"wall_s": time.perf_counter() - began}
        timelines[name] = run.busy_timeline
    for name, fate in slowdowns(runs, BASELINE).items():
        results[name] |= fate

    report = {
        "trace": str(args.trace),
        "cluster": cluster.name,
        "nodes": len(nodes),
        "gpus": gpus,
        "baseline": BASELINE,
        "berth_predictor": predictor,
        "policies": results,
        "excluded_jobs": dict(work.excluded),
        "types_not_offered": dict(sorted(work.types_not_offered.items())),
        "restart_s": {"default": restart[0], **restart[1]},
        "explore": args.explore,
        "measuring": None
        if measuring is None
        else {"delay_s": measuring.delay_s, "noise": measuring.noise, "modelled": True},
        "modelled": {
            "device_power": sorted(f"{f} on {t}" for f, t in work.modelled_power),
            "node_idle_power": f"declared in the cluster description {cluster_path.name}",
            "empty_nodes": "powered off (0 W)",
        },
    }
    print(table(results, BASELINE))
    print(_notes(report))
    try:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nreport: {args.json}")
        plot(args.plot, results, timelines, "berth" if "berth" in results else names[0])
        print(f"plot:   {args.plot}")
    except ImportError:
        print("plot skipped: matplotlib is not installed (pip install 'berth[plot]')")
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _notes(report: dict[str, Any]) -> str:
    lines = [
        "",
        f"vs BASE: ratio to {report['baseline']}. Throughput is measured (ElasticFlow, Gavel, "
        "Pollux); device power is measured by Zeus where it ran the family on the type, else "
        "MODELLED (TDP x Zeus's power/limit fraction): "
        + (", ".join(report["modelled"]["device_power"]) or "none")
        + ".",
        f"Node idle power is MODELLED: {report['modelled']['node_idle_power']}; empty nodes "
        "count as powered off.",
    ]
    restart = report["restart_s"]
    families = ", ".join(f"{k} {v:g} s" for k, v in restart.items() if k != "default")
    lines.append(
        f"A resize costs a MODELLED {restart['default']:g} s of checkpoint and restart"
        + (f" ({families})" if families else "")
        + "; berth, berth-cold and berth-oracle resize elastic jobs, or move them to another "
        f"type, every {Settings().period_s:g} s; berth-rigid never does."
    )
    loop = report["measuring"]
    lines.append(
        "berth and berth-cold decide on their predictions alone (--open-loop)."
        if loop is None
        else f"berth and berth-cold measure a running job once it has worked {loop['delay_s']:g} s "
        f"on an allocation, each window its true rate with a MODELLED {loop['noise']:.0%} "
        "noise, and decide on their predictions conditioned on what they measured."
        + (
            " They explore: a trial at an unmeasured count where it could pay (--no-explore: "
            "never)."
            if report.get("explore")
            else ""
        )
    )
    policies = report["policies"]
    if policies.get("berth", {}).get("jobs"):
        b = policies["berth"]
        lines.append(
            f"Resizes by berth: {b['resizes']} ({b['moves']} onto another type), "
            f"{b['restart_overhead_s'] / 3600:.1f} h of restart overhead."
        )
    met = {n: m.get("deadlines_met", 0) for n, m in policies.items()}
    if "berth" in met:
        ratios = [
            f"{met['berth'] / met[other]:.2f}x {other}" if met[other] else f"{other}: none met"
            for other in ("berth-rigid", report["baseline"])
            if other in met
        ]
        if ratios:
            lines.append(f"Deadlines met by berth: {met['berth']}, " + ", ".join(ratios) + ".")
    fates = [
        f"{n} {m['slowdown_p99']:.2f}x/{m['slowdown_max']:.2f}x"
        for n, m in policies.items()
        if "slowdown_max" in m and n != report["baseline"]
    ]
    if fates:
        lines.append(
            f"Slowdown (a job's JCT over its JCT under {report['baseline']}), p99/max: "
            + ", ".join(fates)
            + "."
        )
    if report["excluded_jobs"]:
        out = "; ".join(f"{n} ({why})" for why, n in sorted(report["excluded_jobs"].items()))
        lines.append(f"Jobs left out of every policy: {out}.")
    if report["types_not_offered"]:
        out = ", ".join(f"{t}: {n}" for t, n in report["types_not_offered"].items())
        lines.append(f"Jobs not offered a type for want of a measurement: {out}.")
    return "\n".join(lines)
