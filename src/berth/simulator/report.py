"""Figures of a simulated run, the comparison table and the plot."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

from berth.core.energy import JOULES_PER_KWH
from berth.simulator.engine import Run


def _p99(values: Sequence[float]) -> float:
    """Nearest-rank 99th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def metrics(run: Run, gpus: int) -> dict[str, Any]:
    ran = run.ran
    if not ran:
        return {"jobs": 0, "never_placed": len(run.never_placed)}
    jct = [r.end_s - r.submitted_s for r in ran]
    wait = [r.start_s - r.submitted_s for r in ran]
    makespan = max(r.end_s for r in ran) - min(r.submitted_s for r in ran)
    busy_kwh = sum(r.busy_joules for r in ran) / JOULES_PER_KWH
    idle_kwh = run.idle_joules / JOULES_PER_KWH
    with_deadline = [r for r in ran if r.deadline_s is not None]
    gpu_seconds = sum(r.count * (r.end_s - r.start_s) for r in ran)
    return {
        "jobs": len(ran),
        "never_placed": len(run.never_placed),
        "energy_kwh": busy_kwh + idle_kwh,
        "busy_kwh": busy_kwh,
        "idle_kwh": idle_kwh,
        "avg_jct_s": sum(jct) / len(jct),
        "p99_jct_s": _p99(jct),
        "makespan_s": makespan,
        "avg_queueing_s": sum(wait) / len(wait),
        "deadlines_met": sum(1 for r in with_deadline if r.met_deadline),
        "jobs_with_deadline": len(with_deadline),
        "gpu_utilisation": gpu_seconds / (gpus * makespan) if gpus and makespan else 0.0,
        "avg_gpus_per_job": sum(r.count for r in ran) / len(ran),
        "resizes": sum(r.resizes for r in ran),
        "jobs_resized": sum(1 for r in ran if r.resizes),
        "moves": sum(r.moves for r in ran),
        "restart_overhead_s": sum(r.restart_s for r in ran),
        "jobs_on_modelled_power": sum(1 for r in ran if r.watts_modelled),
        "decisions": run.decisions,
        "decisions_per_s": run.decisions / run.decision_seconds if run.decision_seconds else 0.0,
        "placements_by_type": _by_type(run),
        **_errors(run),
    }


def _errors(run: Run) -> dict[str, float]:
    """The error of the rate the elastic policy acted on, at each running job's allocation and
    period: median and 90th percentile of |acted on / true - 1|, before and after measurement."""
    out = {}
    for measured, name in ((False, "before"), (True, "after")):
        errors = sorted(math.expm1(e) for e in run.errors[measured])
        if errors:
            out[f"rate_error_{name}_measurement_p50"] = errors[len(errors) // 2]
            out[f"rate_error_{name}_measurement_p90"] = errors[int(0.9 * (len(errors) - 1))]
    return out


def slowdowns(runs: Mapping[str, Run], baseline: str) -> dict[str, dict[str, Any]]:
    """Each job's fate: its JCT under a policy over its JCT under the baseline, for the jobs
    both ran. p99 and max say whether any job paid for the averages."""
    if baseline not in runs:
        return {}
    base = {r.job: r.end_s - r.submitted_s for r in runs[baseline].ran}
    out: dict[str, dict[str, Any]] = {}
    for name, run in runs.items():
        ratios = sorted(
            ((r.end_s - r.submitted_s) / base[r.job], r.job)
            for r in run.ran
            if base.get(r.job, 0) > 0
        )
        if ratios:
            out[name] = {
                "slowdown_p99": _p99([x for x, _ in ratios]),
                "slowdown_max": ratios[-1][0],
                "slowest_job": ratios[-1][1],
            }
    return out


def _by_type(run: Run) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in run.ran:
        counts[r.type] = counts.get(r.type, 0) + 1
    return dict(sorted(counts.items()))


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "-"


def table(policies: Mapping[str, Mapping[str, Any]], baseline: str) -> str:
    base = policies.get(baseline, {})
    header = [
        "POLICY", "JOBS", "ENERGY kWh", "vs BASE", "IDLE kWh", "AVG JCT h", "vs BASE",
        "P99 JCT h", "MAKESPAN h", "QUEUE h", "DEADLINES", "RESIZES", "RESTART h", "GPU UTIL",
        "DECISIONS/s",
    ]  # fmt: skip
    rows = []
    for name, m in policies.items():
        if not m.get("jobs"):
            rows.append([name, "0", *["-"] * (len(header) - 2)])
            continue
        rows.append(
            [
                name,
                str(m["jobs"]),
                f"{m['energy_kwh']:.1f}",
                _ratio(m["energy_kwh"], base.get("energy_kwh", 0)),
                f"{m['idle_kwh']:.1f}",
                f"{m['avg_jct_s'] / 3600:.2f}",
                _ratio(m["avg_jct_s"], base.get("avg_jct_s", 0)),
                f"{m['p99_jct_s'] / 3600:.2f}",
                f"{m['makespan_s'] / 3600:.2f}",
                f"{m['avg_queueing_s'] / 3600:.2f}",
                f"{m['deadlines_met']}/{m['jobs_with_deadline']}",
                str(m["resizes"]),
                f"{m['restart_overhead_s'] / 3600:.1f}",
                f"{m['gpu_utilisation']:.0%}",
                f"{m['decisions_per_s']:.0f}",
            ]
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [header, *rows]
    )


def plot(
    path: Path,
    policies: Mapping[str, Mapping[str, Any]],
    timelines: Mapping[str, Sequence[tuple[float, Mapping[str, int]]]],
    show: str,
) -> None:
    """Energy vs average JCT per policy, and GPUs busy per type over time under `show`.
    Needs matplotlib (the `plot` extra); raises ImportError without it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for name, m in policies.items():
        if m.get("jobs"):
            left.scatter(m["avg_jct_s"] / 3600, m["energy_kwh"], s=60)
            left.annotate(name, (m["avg_jct_s"] / 3600, m["energy_kwh"]), xytext=(5, 5),
                          textcoords="offset points")  # fmt: skip
    left.set_xlabel("average JCT (h)")
    left.set_ylabel("energy (kWh, busy + idle of awake nodes)")
    left.set_title("energy vs job completion time")
    left.grid(alpha=0.3)

    timeline = timelines.get(show, ())
    types = sorted({t for _, counts in timeline for t in counts})
    if timeline:
        start = timeline[0][0]
        # Each level holds until the next event: repeat it there so the areas step.
        steps = [p for a, b in pairwise(timeline) for p in (a, (b[0], a[1]))]
        steps.append(timeline[-1])
        hours = [(t - start) / 3600 for t, _ in steps]
        stacks = [[counts.get(t, 0) for _, counts in steps] for t in types]
        right.stackplot(hours, stacks, labels=types)
        right.legend(loc="upper right")
    right.set_xlabel("hours since the first submission")
    right.set_ylabel("GPUs busy")
    right.set_title(f"GPUs busy per type under {show}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
