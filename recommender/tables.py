"""The measured tables berth ships: every importer's records in two CSV files.

The simulator's ground truth and the recommender's training data are these files, so a fresh
install needs no ../shared/data. `python -m berth.recommender.tables SHARED_DATA OUT` rewrites
them from the raw data (OUT: src/berth/data in a checkout); a test holds the shipped copies
equal to what the importers make.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from dataclasses import astuple, fields
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from berth.core.profile import ProfileRecord
from berth.recommender.importers import (
    PowerRecord,
    import_elasticflow,
    import_gavel,
    import_pollux_t4,
    import_zeus_power,
)

THROUGHPUT_FILE = "measured_throughput.csv"
POWER_FILE = "measured_power.csv"
SHIPPED = Path(str(resources.files("berth"))) / "data"
R = TypeVar("R", ProfileRecord, PowerRecord)


def derive(shared: Path) -> tuple[list[ProfileRecord], list[PowerRecord]]:
    records = (
        import_elasticflow(shared / "elasticflow/throughputs_A100")[0]
        + import_gavel(shared / "gavel/simulation_throughputs.json")[0]
        + import_pollux_t4(shared / "pollux/t4_profiles")[0]
    )
    return records, import_zeus_power(shared / "zeus")


def write(out: Path, records: Sequence[ProfileRecord], power: Sequence[PowerRecord]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, cls, rows in (
        (THROUGHPUT_FILE, ProfileRecord, records),
        (POWER_FILE, PowerRecord, power),
    ):
        with (out / name).open("w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(field.name for field in fields(cls))
            writer.writerows(["" if v is None else v for v in astuple(r)] for r in rows)


def _cell(value: str, kind: str) -> Any:
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "float | None":
        return float(value) if value else None
    return value


def _read(path: Path, cls: type[R]) -> list[R]:
    kinds = [str(field.type) for field in fields(cls)]
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        if header != [field.name for field in fields(cls)]:
            raise ValueError(f"{path}: header {header} is not {cls.__name__}'s")
        try:
            return [cls(*(_cell(v, k) for v, k in zip(row, kinds, strict=True))) for row in reader]
        except ValueError as exc:
            raise ValueError(f"{path}:{reader.line_num}: {exc}") from None


def read_records(path: Path) -> list[ProfileRecord]:
    """Profile records from a CSV in the shipped format (`berth profile` writes one)."""
    return _read(path, ProfileRecord)


def read(folder: Path = SHIPPED) -> tuple[list[ProfileRecord], list[PowerRecord]]:
    return _read(folder / THROUGHPUT_FILE, ProfileRecord), _read(folder / POWER_FILE, PowerRecord)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shared", type=Path, help="the shared data folder (../shared/data)")
    parser.add_argument("out", type=Path, help="where to write them (src/berth/data)")
    args = parser.parse_args(argv)
    records, power = derive(args.shared)
    write(args.out, records, power)
    print(f"{len(records)} throughput and {len(power)} power records -> {args.out}")


if __name__ == "__main__":
    main()
