"""The `berth` command: the imperative shell around the core."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from berth import __version__, simulate
from berth.core.job import AcceleratorJob, check_deadline, parse_job
from berth.core.manifest import ManifestError, read_manifest
from berth.core.validation import InvalidObject
from berth.crds import GROUP, KIND
from berth.operator import commands as operator_commands
from berth.profiler import commands as profiler_commands
from berth.recommender import commands as recommender_commands


def _manifest_files(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
        elif path.exists():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or directory")
    return files


def _row(path: Path, job: AcceleratorJob) -> list[str]:
    count = job.accelerators.count
    objective = job.objective.kind.value
    if objective == "balanced":
        objective += f" ({job.objective.energy_weight:g})"
    return [
        str(path),
        f"{job.namespace}/{job.name}",
        job.workload.kind.value,
        job.workload.model or "-",
        ",".join(job.accelerators.types) or "any GPU",
        f"{count.min}" if count.rigid else f"{count.min}-{count.max}",
        objective,
        job.deadline.text if job.deadline else "-",
        "yes" if job.elastic else "no",
    ]


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    )


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate every AcceleratorJob in the given files and folders; stop at the first bad one."""
    try:
        files = _manifest_files(args.paths)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    now = datetime.now(UTC)
    rows: list[list[str]] = []
    skipped = 0
    for path in files:
        try:
            documents = read_manifest(path)
        except ManifestError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"error: {path}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        for index, doc in enumerate(documents):
            is_job = isinstance(doc, dict) and (
                doc.get("kind") == KIND or str(doc.get("apiVersion", "")).startswith(GROUP + "/")
            )
            if not is_job:
                skipped += 1
                continue
            where = f"{path}" + (f" (document {index + 1})" if len(documents) > 1 else "")
            try:
                job = parse_job(doc)
            except InvalidObject as exc:
                print(f"error: {where}: invalid AcceleratorJob", file=sys.stderr)
                for error in exc.errors:
                    print(f"  {error}", file=sys.stderr)
                return 1
            late = check_deadline(job, now)
            if late is not None:
                print(f"error: {where}: invalid AcceleratorJob\n  {late}", file=sys.stderr)
                return 1
            rows.append(_row(path, job))
    if not rows:
        print(
            f"error: no AcceleratorJob found in {', '.join(map(str, args.paths))}", file=sys.stderr
        )
        return 2
    header = ["FILE", "JOB", "KIND", "MODEL", "TYPES", "COUNT", "OBJECTIVE", "DEADLINE", "ELASTIC"]
    print(_table(header, rows))
    note = f"; {skipped} other document(s) skipped" if skipped else ""
    print(f"\n{len(rows)} AcceleratorJob(s) valid{note}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="berth", description="Energy-aware placement of HPC/AI jobs on mixed accelerators."
    )
    parser.add_argument("--version", action="version", version=f"berth {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser(
        "validate", help="validate AcceleratorJob manifests offline against the CRD and its rules"
    )
    validate.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="manifest files or folders (searched for *.yaml, *.yml)",
    )
    validate.set_defaults(func=cmd_validate)
    simulate.add_parser(commands)
    recommender_commands.add_parsers(commands)
    operator_commands.add_parser(commands)
    profiler_commands.add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
