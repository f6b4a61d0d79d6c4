"""`berth profile` and `berth exporter`: the shells around the profiler."""

from __future__ import annotations

import argparse
import csv
import logging
import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import astuple, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from berth.core.profile import ProfileRecord
from berth.profiler import progress as contract
from berth.profiler.exporter import Backend, Exporter, make_server
from berth.profiler.nvml import NvmlBackend, NvmlUnavailable
from berth.profiler.replay import ReplayBackend
from berth.profiler.samples import BadRecording, Sample, to_json
from berth.profiler.summary import NothingMeasured, summarise


def add_parsers(commands: Any) -> None:
    p = commands.add_parser(
        "profile",
        help="run a workload, sample its GPUs with NVML and write profile records",
        description="Runs COMMAND with $BERTH_PROGRESS_FILE set (the workload reports its "
        "samples there: berth.profiler.progress.Progress), samples every GPU while it runs and "
        "appends one profile record (samples/s, W per device) to --out.",
    )
    p.add_argument("--family", required=True, help="model family, e.g. resnet50, gpt2")
    p.add_argument("--batch-size", type=int, required=True, help="global samples per step")
    p.add_argument(
        "--precision",
        choices=["fp32", "fp16"],
        default="fp32",
        help="what the workload computes in (fp16: mixed precision); default fp32",
    )
    p.add_argument("--framework", default="pytorch", help="default pytorch")
    p.add_argument("--out", type=Path, default=Path("profiles.csv"),
                   help="records CSV, appended to (default profiles.csv)")  # fmt: skip
    p.add_argument("--samples", type=Path, default=None,
                   help="also keep every GPU sample here (JSON lines; replayable)")  # fmt: skip
    p.add_argument("--interval", type=float, default=0.1, metavar="SECONDS",
                   help="NVML sampling interval (default 0.1)")  # fmt: skip
    p.add_argument("--replay", type=Path, metavar="FILE",
                   help="recorded samples (JSON lines) instead of NVML")  # fmt: skip
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    p.set_defaults(func=cmd_profile)

    e = commands.add_parser(
        "exporter",
        help="serve GPU metrics (dcgm-exporter names) and annotate the node with health",
        description="Samples NVML (or --replay FILE) every --interval, serves /metrics, and "
        "with --node keeps the node's berth.dev/health and berth.dev/idle-watts up to date.",
    )
    e.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1; 0.0.0.0 in pods")
    e.add_argument("--port", type=int, default=9400, help="dcgm-exporter's port by default")
    e.add_argument("--interval", type=float, default=5.0, metavar="SECONDS")
    e.add_argument("--replay", type=Path, metavar="FILE",
                   help="recorded samples (JSON lines) instead of NVML")  # fmt: skip
    e.add_argument("--node", default=os.environ.get("NODE_NAME"),
                   help="Node to annotate (default $NODE_NAME)")  # fmt: skip
    e.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then KUBECONFIG)")
    e.set_defaults(func=cmd_exporter)


def _backend(replay: Path | None) -> Backend | None:
    """The replay or NVML backend; None, with the reason on stderr, when there is none."""
    try:
        return ReplayBackend(replay) if replay is not None else NvmlBackend()
    except (NvmlUnavailable, FileNotFoundError, BadRecording) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _append(path: Path, record: ProfileRecord) -> None:
    new = not path.exists() or path.stat().st_size == 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        if new:
            writer.writerow(field.name for field in fields(ProfileRecord))
        writer.writerow("" if v is None else v for v in astuple(record))


def cmd_profile(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("error: no command to profile: berth profile ... -- COMMAND", file=sys.stderr)
        return 2
    if args.batch_size < 1 or args.interval <= 0:
        print("error: --batch-size must be >= 1 and --interval > 0", file=sys.stderr)
        return 2
    backend = _backend(args.replay)
    if backend is None:
        return 2
    samples: list[Sample] = []
    done = threading.Event()

    def sample_loop() -> None:
        while not done.is_set():
            samples.append(backend.sample())
            done.wait(args.interval)

    with tempfile.TemporaryDirectory() as tmp:
        progress_file = Path(tmp) / "progress"
        progress_file.touch()
        env = {**os.environ, contract.ENV_FILE: str(progress_file)}
        sampler = threading.Thread(target=sample_loop, daemon=True)
        sampler.start()
        started = datetime.now(UTC)
        try:
            proc = subprocess.Popen(command, env=env)
        except OSError as exc:
            done.set()
            print(f"error: cannot run {command[0]}: {exc}", file=sys.stderr)
            return 2
        print(f"profiling pid {proc.pid}: {' '.join(command)}", file=sys.stderr)
        rc = proc.wait()
        done.set()
        sampler.join()
        points = contract.read_progress(progress_file.read_text(), str(progress_file))
    backend.close()
    if args.samples:
        args.samples.write_text("".join(to_json(s) + "\n" for s in samples))
    if rc != 0:
        print(f"error: the workload exited with {rc}; nothing recorded", file=sys.stderr)
        return 1
    driver = next((s.driver for s in samples if s.driver), "?")
    host = samples[0].hostname if samples else "?"
    provenance = (
        f"{started:%Y-%m-%dT%H:%M:%SZ} driver {driver} host {host} cmd: {' '.join(command)}"
    )
    try:
        measured = summarise(
            points, samples, args.family, args.batch_size, {proc.pid}, provenance,
            args.precision, args.framework,
        )  # fmt: skip
    except NothingMeasured as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _append(args.out, measured.record)
    r = measured.record
    watts = "-" if r.watts_per_device is None else f"{r.watts_per_device:.1f} W/device"
    print(f"{r.family} batch {r.batch_size} on {r.count} x {r.accelerator}: "
          f"{r.throughput:.1f} samples/s, {watts} ({measured.power_from}) over "
          f"{measured.seconds:.1f} s -> {args.out}")  # fmt: skip
    return 0


def _kube(args: argparse.Namespace) -> tuple[Any, Any]:
    """(annotate, pods) callbacks for --node, through the Kubernetes API."""
    from kubernetes import client, config

    if args.kubeconfig:
        config.load_kube_config(args.kubeconfig)
    else:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
    core = client.CoreV1Api()

    def annotate(values: dict[str, str]) -> None:
        core.patch_node(args.node, {"metadata": {"annotations": values}})

    def pods() -> dict[str, Any]:
        found = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={args.node}")
        out = {}
        for pod in found.items:
            raw = client.ApiClient().sanitize_for_serialization(pod)
            out[raw["metadata"]["uid"]] = raw
        return out

    return annotate, pods


def cmd_exporter(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.interval <= 0:
        print("error: --interval must be > 0", file=sys.stderr)
        return 2
    backend = _backend(args.replay)
    if backend is None:
        return 2
    annotate = pods = None
    if args.node:
        try:
            annotate, pods = _kube(args)
        except ImportError:
            print("error: --node needs the kubernetes client: pip install 'berth[operator]'",
                  file=sys.stderr)  # fmt: skip
            return 2
    exporter = Exporter(backend, args.interval, hostname=args.node, pods=pods, annotate=annotate)
    try:
        server = make_server(exporter, args.host, args.port)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    exporter.take()
    threading.Thread(target=exporter.run, name="sampler", daemon=True).start()
    host, port = server.server_address[0], server.server_address[1]
    source = f"replay {args.replay}" if args.replay else "NVML"
    print(f"exporting {source} on http://{host!s}:{port}/metrics", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        exporter.stop.set()
        server.server_close()
        backend.close()
    return 0
