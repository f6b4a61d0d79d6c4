"""Importers: public measurements in ../shared/data turned into ProfileRecords.

Units are converted here and nowhere else, and each record says how (`conversion`).
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import re
import statistics
from collections.abc import Sequence
from pathlib import Path

from berth.core import tables
from berth.core.catalog import resolve
from berth.core.profile import PowerRecord, ProfileRecord

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


# Pollux names its workloads by data set; the model each trains is the adaptdl example's.
POLLUX_FAMILIES = {
    "bert": "bert",  # BERT fine-tuning on SQuAD
    "cifar10": "resnet18",
    "deepspeech2": "deepspeech2",
    "imagenet": "resnet50",
    "ncf": "ncf",
    "yolov3": "yolov3",
}
T4_GPUS_PER_NODE = 4  # AWS g4dn.12xlarge, where Pollux measured


def _packed(count: int) -> str:
    """Pollux's placement string (GPUs per node, ascending) for `count` T4s packed four to a
    node: 6 -> "24"."""
    full, rest = divmod(count, T4_GPUS_PER_NODE)
    return (str(rest) if rest else "") + str(T4_GPUS_PER_NODE) * full


def import_pollux_t4(folder: Path) -> tuple[list[ProfileRecord], list[str]]:
    """Pollux's T4 step times by placement and local batch. Only the packed placement of each
    GPU count is kept (the one a scheduler that packs would get); the global batch is count x
    local batch, samples/s = global batch / step time."""
    records, skipped = [], []
    for path in sorted(folder.glob("*/placements.csv")):
        family = POLLUX_FAMILIES[path.parent.name]
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                placement = row["placement"]
                count = sum(int(d) for d in placement)
                if placement != _packed(count):
                    skipped.append(f"{path.parent.name} placement {placement}: not packed")
                    continue
                local = int(row["local_bsz"])
                batch = count * local
                records.append(
                    ProfileRecord(
                        family=family,
                        batch_size=batch,
                        accelerator="t4",
                        count=count,
                        throughput=batch / float(row["step_time"]),
                        watts_per_device=None,
                        source=f"pollux t4_profiles/{path.parent.name}/placements.csv "
                        f"placement {placement} local batch {local}",
                        conversion=f"{count} x local batch {local} / step time",
                    )
                )
    return records, skipped


ZEUS_FAMILIES = {"bert_base_uncased": "bert"}  # others keep Zeus's network name


def import_zeus_power(folder: Path) -> list[PowerRecord]:
    """Zeus's measured power: for each GPU and network, the runs at the highest power limit
    Zeus set (the GPU's default), summarised by their median."""
    records = []
    for path in sorted(folder.glob("summary_power_*.csv")):
        accelerator = _type_id(path.stem.removeprefix("summary_power_"))
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        limit = max(float(r["power_limit"]) for r in rows)
        by_network: dict[str, list[tuple[float, int]]] = {}
        for r in rows:
            if float(r["power_limit"]) == limit:
                run = (float(r["average_power"]), int(r["batch_size"]))
                by_network.setdefault(r["network"], []).append(run)
        for network, runs in sorted(by_network.items()):
            watts = [w for w, _ in runs]
            records.append(
                PowerRecord(
                    family=ZEUS_FAMILIES.get(network, network),
                    accelerator=accelerator,
                    batch_size=statistics.median_low(b for _, b in runs),
                    watts=statistics.median(watts),
                    power_limit_w=limit,
                    runs=len(watts),
                    source=f"zeus {path.name} network {network} at {limit:g} W",
                )
            )
    return records


# Lambda's system names (`name_gpu`, less its "Nx " count and "Lambda Cloud — " prefix) to the
# GPU in them, from each system's logs/<system>.logs/metadata (nvidia-smi's names).
LAMBDA_GPUS = {
    "RTX 3080": "rtx3080", "RTX 3090": "rtx3090", "A100 40GB PCIe": "a100", "RTX A6000": "a6000",
    "RTX 2080Ti": "rtx2080ti", "RTX 2080Ti NVLink": "rtx2080ti", "RTX 8000": "rtx8000",
    "RTX 8000 NVLink": "rtx8000", "V100 32GB": "v100", "GTX 1080Ti": "gtx1080ti",
}  # fmt: skip
LAMBDA_LAPTOP = ("MAX-Q",)  # laptop GPUs: no cluster holds them
_LAMBDA_SYSTEM = re.compile(r"^(?:Lambda Cloud — )?(?:(?P<n>\d+)x )?(?P<gpu>.+)$")


def import_lambda_tf(folder: Path) -> tuple[list[ProfileRecord], list[str]]:
    """Lambda's TensorFlow benchmark (tf_cnn_benchmarks, synthetic ImageNet-shaped data,
    replicated variables, NCCL all-reduce; TF 1.15 or 2.x, XLA on most systems): images/s
    summed over the system's GPUs, at the global batch of the matching tf-train-bs-*.csv cell.
    fp16 is mixed precision (--use_fp16). Laptop GPUs and cells of 0 (did not run) are left
    out; the second list names them."""
    records, skipped = [], []
    for precision in ("fp32", "fp16"):
        rates = _lambda_table(folder / f"tf-train-throughput-{precision}.csv")
        batches = _lambda_table(folder / f"tf-train-bs-{precision}.csv")
        for (system, count, model), rate in rates.items():
            where = f"lambda-tf tf-train-throughput-{precision}.csv {system!r} {model}"
            match = _LAMBDA_SYSTEM.match(system)
            assert match is not None  # the pattern matches any name
            if any(tag in system.upper() for tag in LAMBDA_LAPTOP):
                skipped.append(f"{where}: a laptop GPU")
                continue
            if rate == 0:
                skipped.append(f"{where}: 0 images/s (did not run)")
                continue
            if int(match["n"] or 1) != count:
                raise ValueError(f"{where}: num_gpu {count} is not the name's count")
            batch = int(batches[system, count, model])
            records.append(
                ProfileRecord(
                    family=model,
                    batch_size=batch,
                    accelerator=LAMBDA_GPUS[match["gpu"]],
                    count=count,
                    throughput=rate,
                    watts_per_device=None,  # its watt column is nominal board power, typed in
                    source=where,
                    conversion=f"images/s summed over {count} GPU(s); global batch {batch} "
                    "from tf-train-bs; synthetic data",
                    precision=precision,
                    framework="tensorflow",
                )
            )
    return records, skipped


def _lambda_table(path: Path) -> dict[tuple[str, int, str], float]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    models = [k for k in rows[0] if k not in ("name_gpu", "num_gpu", "watt", "price")]
    return {(r["name_gpu"], int(r["num_gpu"]), m): float(r[m]) for r in rows for m in models}


_NEUSIGHT = re.compile(
    r"^(?P<model>[a-z0-9_]+)-(?P<mode>train|inf)-(?P<seq>\d+)-(?P<batch>\d+)"
    r"(?P<suffix>-.+)?\.json$"
)


def import_neusight(folder: Path) -> tuple[list[ProfileRecord], list[str]]:
    """NeuSight's measured end-to-end training latencies (ms per iteration, forward + backward,
    no optimizer step; Hugging Face models in FP32, synthetic tokens, one GPU):
    samples/s = batch / latency. The family is NeuSight's model name, whose sequence length is
    fixed per model. Inference records, Megatron runs on four GPUs (what their batch field
    counts is not stated) and AMD Instinct GPUs (berth places on nvidia.com/gpu only) are left
    out; the second list names them."""
    records, skipped = [], []
    for path in sorted((folder / "scripts/asplos/label").glob("*/*.json")):
        gpu, where = path.parent.name, f"neusight label/{path.parent.name}/{path.name}"
        match = _NEUSIGHT.match(path.name)
        if match is None:
            raise ValueError(f"{where}: not a NeuSight label name")
        if gpu.startswith("AMD_"):
            skipped.append(f"{where}: AMD Instinct (berth places on nvidia.com/gpu only)")
            continue
        if match["mode"] != "train":
            skipped.append(f"{where}: inference")
            continue
        if match["suffix"]:
            skipped.append(f"{where}: Megatron on 4 GPUs, batch semantics not stated")
            continue
        latency_ms = float(json.loads(path.read_text())["e2e_latency"])
        batch = int(match["batch"])
        records.append(
            ProfileRecord(
                family=match["model"],
                batch_size=batch,
                accelerator=_type_id(gpu.replace("_", " ")),
                count=1,
                throughput=batch / (latency_ms / 1000),
                watts_per_device=None,
                source=where,
                conversion=f"batch {batch} / e2e_latency {latency_ms:.4g} ms (forward + "
                f"backward, no optimizer step; sequence {match['seq']})",
            )
        )
    return records, skipped


def derive_transfer(shared: Path) -> list[ProfileRecord]:
    return import_lambda_tf(shared / "lambda-tf")[0] + import_neusight(shared / "neusight")[0]


def derive(shared: Path) -> tuple[list[ProfileRecord], list[PowerRecord]]:
    records = (
        import_elasticflow(shared / "elasticflow/throughputs_A100")[0]
        + import_gavel(shared / "gavel/simulation_throughputs.json")[0]
        + import_pollux_t4(shared / "pollux/t4_profiles")[0]
    )
    return records, import_zeus_power(shared / "zeus")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="rewrite the shipped measured tables from the raw data"
    )
    parser.add_argument("shared", type=Path, help="the shared data folder (../shared/data)")
    parser.add_argument("out", type=Path, help="where to write them (src/berth/data)")
    args = parser.parse_args(argv)
    records, power = derive(args.shared)
    transfer = derive_transfer(args.shared)
    tables.write(args.out, records, power, transfer)
    print(
        f"{len(records)} throughput, {len(power)} power and {len(transfer)} transfer records "
        f"-> {args.out}"
    )


if __name__ == "__main__":
    main()
