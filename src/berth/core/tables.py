"""The measured tables berth ships: every importer's records in two CSV files.

The simulator's ground truth and the recommender's training data are these files, so a fresh
install needs no ../shared/data. `python -m berth.recommender.importers SHARED_DATA OUT`
rewrites them from the raw data (OUT: src/berth/data in a checkout); a test holds the shipped
copies equal to what the importers make.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import MISSING, astuple, fields
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from berth.core.profile import PowerRecord, ProfileRecord

THROUGHPUT_FILE = "measured_throughput.csv"
POWER_FILE = "measured_power.csv"
# Other workload definitions of the same families (another framework, precision, input
# pipeline): training and evaluation rows for the recommender, never the simulator's ground
# truth, which keeps one workload per family.
TRANSFER_FILE = "transfer_throughput.csv"
SHIPPED = Path(str(resources.files("berth"))) / "data"
R = TypeVar("R", ProfileRecord, PowerRecord)


def write(
    out: Path,
    records: Sequence[ProfileRecord],
    power: Sequence[PowerRecord],
    transfer: Sequence[ProfileRecord] | None = None,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    files: list[tuple[str, type, Sequence[Any]]] = [
        (THROUGHPUT_FILE, ProfileRecord, records),
        (POWER_FILE, PowerRecord, power),
    ]
    if transfer is not None:
        files.append((TRANSFER_FILE, ProfileRecord, transfer))
    for name, cls, rows in files:
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
    names = [field.name for field in fields(cls)]
    # Columns added later have defaults: a file written before them still reads.
    optional = sum(1 for field in fields(cls) if field.default is not MISSING)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, [])
            if not (len(names) - optional <= len(header) and header == names[: len(header)]):
                raise ValueError(f"{path}: header {header} is not {cls.__name__}'s")
            kinds = [str(field.type) for field in fields(cls)][: len(header)]
            out = []
            for row in reader:
                if len(row) != len(kinds):
                    raise ValueError(f"{len(row)} fields, the header names {len(kinds)}")
                out.append(cls(*(_cell(v, k) for v, k in zip(row, kinds, strict=True))))
            return out
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not UTF-8") from None
        except csv.Error as exc:
            raise ValueError(f"{path}:{reader.line_num}: not CSV: {exc}") from None
        except ValueError as exc:
            if str(exc).startswith(str(path)):
                raise
            raise ValueError(f"{path}:{reader.line_num}: {exc}") from None


def read_records(path: Path) -> list[ProfileRecord]:
    """Profile records from a CSV in the shipped format (`berth profile` writes one)."""
    return _read(path, ProfileRecord)


def read(folder: Path = SHIPPED) -> tuple[list[ProfileRecord], list[PowerRecord]]:
    return _read(folder / THROUGHPUT_FILE, ProfileRecord), _read(folder / POWER_FILE, PowerRecord)


def read_transfer(folder: Path = SHIPPED) -> list[ProfileRecord]:
    return _read(folder / TRANSFER_FILE, ProfileRecord)
