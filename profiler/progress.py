"""The progress contract between a workload and berth: how much work it has done.

A workload calls `Progress(family, batch_size).advance(n)` after each step (n: samples this
worker processed). That does what its environment asks for:

- BERTH_PROGRESS_FILE (set by `berth profile`): appends "<unix time> <samples so far>" lines.
- BERTH_METRICS_PORT (set in the pod by the user or the chart): serves the counter
  berth_job_samples_total on that port, labelled with the job (BERTH_JOB), accelerator type
  (BERTH_ACCELERATOR) and world size (BERTH_WORLD_SIZE) the operator gives every worker, and
  with the family and batch size the workload names. The collector sums it over the job's pods.

A workload that cannot import berth may write the file lines or serve the counter itself.
"""

from __future__ import annotations

import os
import time
from typing import IO

ENV_FILE = "BERTH_PROGRESS_FILE"
ENV_PORT = "BERTH_METRICS_PORT"
METRIC = "berth_job_samples"  # exposed as berth_job_samples_total
LABELS = ("berth_job", "family", "batch_size", "accelerator", "world_size")


class Progress:
    def __init__(self, family: str, batch_size: int, world_size: int | None = None) -> None:
        """`world_size`: the live one (torch.distributed's); BERTH_WORLD_SIZE is the world
        at the worker's creation, stale once berth resizes the job."""
        self.done = 0
        self.file: IO[str] | None = None
        path = os.environ.get(ENV_FILE)
        if path:
            self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the run
        self.counter = None
        port = os.environ.get(ENV_PORT)
        if port:
            from prometheus_client import CollectorRegistry, Counter, start_http_server

            registry = CollectorRegistry()
            counter = Counter(METRIC, "Samples this worker has processed.", LABELS,
                              registry=registry)  # fmt: skip
            self.counter = counter.labels(
                os.environ.get("BERTH_JOB", ""),
                family,
                str(batch_size),
                os.environ.get("BERTH_ACCELERATOR", ""),
                str(world_size or os.environ.get("BERTH_WORLD_SIZE", "1")),
            )
            start_http_server(int(port), registry=registry)

    def advance(self, samples: int) -> None:
        self.done += samples
        if self.file is not None:
            self.file.write(f"{time.time():.6f} {self.done}\n")
            self.file.flush()
        if self.counter is not None:
            self.counter.inc(samples)


def read_progress(text: str, where: str) -> list[tuple[float, float]]:
    """(time, samples so far) pairs from a progress file; a bad line is an error that says where."""
    points = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            t, done = (float(x) for x in line.split())
        except ValueError:
            raise ValueError(f"{where}:{n}: expected '<unix time> <samples so far>'") from None
        points.append((t, done))
    return points
