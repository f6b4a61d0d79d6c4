"""Importers: public measurements in ../shared/data turned into ProfileRecords.

Units are converted here and nowhere else, and each record says how (`conversion`).
"""

from __future__ import annotations

import ast
import csv
import json
import re
from pathlib import Path

from berth.core.catalog import resolve
from berth.core.profile import ProfileRecord

_GAVEL_JOB = re.compile(r"^(?P<model>.+?) \(batch size (?P<batch>\d+)\)$")


def _type_id(name: str) -> str:
    resolved = resolve(name)
    if resolved.type is None:
        raise ValueError(f"unknown accelerator name {name!r} in a data set")
    return resolved.type


def import_elasticflow(folder: Path) -> tuple[list[ProfileRecord], list[str]]:
    """ElasticFlow's A100 tables: one CSV per model, rows = global batch size, columns = GPU
    count, cells = iterations/s. samples/s = iterations/s x global batch size. Empty and zero
    cells mark combinations that were not measured; the second list names them."""
    records, skipped = [], []
    accelerator = _type_id(folder.name.removeprefix("throughputs_"))
    for path in sorted(folder.glob("*.csv")):
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        header = rows[0]
        for row in rows[1:]:
            batch = int(row[0])
            for gpus, cell in zip(header[1:], row[1:], strict=True):
                if not cell or float(cell) == 0:
                    skipped.append(f"{path.name} batch {batch} x{gpus}: not measured")
                    continue
                records.append(
                    ProfileRecord(
                        family=path.stem,
                        batch_size=batch,
                        accelerator=accelerator,
                        count=int(gpus),
                        throughput=float(cell) * batch,
                        watts_per_device=None,
                        source=f"elasticflow {folder.name}/{path.name} batch {batch} x{gpus}",
                        conversion=f"iterations/s x global batch {batch}",
                    )
                )
    return records, skipped


def import_gavel(path: Path) -> tuple[list[ProfileRecord], list[str]]:
    """Gavel's isolated throughputs (the "null" entry) for K80, P100 and V100. Its steps/s
    grow with the GPU count, so they are aggregate steps of the batch the job type names:
    samples/s = steps/s x that batch size. Job types without a batch size (A3C, CycleGAN),
    zero entries (runs that did not fit) and the *_unconsolidated placements are left out; the
    second list names what was left out."""
    data = json.loads(path.read_text())
    records, skipped = [], []
    for gpu, jobs in sorted(data.items()):
        if gpu.endswith("_unconsolidated"):
            skipped.append(f"{gpu}: placement variant")
            continue
        accelerator = _type_id(gpu)
        for key, entry in sorted(jobs.items()):
            job_type, gpus = ast.literal_eval(key)
            match = _GAVEL_JOB.match(job_type)
            if match is None:
                skipped.append(f"{gpu} {job_type} x{gpus}: no batch size")
                continue
            if not entry["null"]:
                skipped.append(f"{gpu} {job_type} x{gpus}: not measured (0 steps/s)")
                continue
            batch = int(match["batch"])
            records.append(
                ProfileRecord(
                    family=match["model"].lower().replace("-", ""),
                    batch_size=batch,
                    accelerator=accelerator,
                    count=int(gpus),
                    throughput=float(entry["null"]) * batch,
                    watts_per_device=None,
                    source=f"gavel {path.name} {gpu} {key}",
                    conversion=f"steps/s x batch {batch}",
                )
            )
    return records, skipped
