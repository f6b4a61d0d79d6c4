"""Reading what real torchrun workers reported (examples/elastic_train.py's --report-dir and
--progress-dir): the groups they formed, and the samples they counted."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Generation:
    """One rendezvous round's group, as its own ranks reported it."""

    id: str
    world: int
    ranks: tuple[int, ...]
    hosts: tuple[str, ...]
    formed: float  # when its last rank reported in
    resumed: int  # samples done when it started (its checkpoint)
    counted: int  # samples its ranks counted by the progress contract
    last: float  # its last progress report

    @property
    def reached(self) -> int:
        return self.resumed + self.counted


def generations(reports: Path) -> list[Generation]:
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in reports.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            if line.strip():
                event = json.loads(line)
                events[event["generation"]].append(event)
    counted: dict[str, int] = defaultdict(int)
    last: dict[str, float] = defaultdict(float)
    for path in reports.glob("*.progress"):
        lines = path.read_text().split("\n")
        complete = [x.split() for x in lines[:-1] if x.strip()]  # a crash may cut the last
        if complete:
            generation = path.name.split("-r")[0]
            counted[generation] += int(float(complete[-1][1]))
            last[generation] = max(last[generation], float(complete[-1][0]))
    found = []
    for gid, evs in events.items():
        formed = [e for e in evs if e["event"] == "formed"]
        if not formed:
            continue
        found.append(
            Generation(
                gid,
                int(formed[0]["world"]),
                tuple(sorted(int(e["rank"]) for e in formed)),
                tuple(sorted({e["host"] for e in formed})),
                max(float(e["time"]) for e in formed),
                int(formed[0]["samples"]),
                counted[gid],
                max(last[gid], *(float(e["time"]) for e in evs)),
            )
        )
    return sorted(found, key=lambda g: g.formed)


def since(stamp: str, moment: float) -> float:
    """Seconds from a status time stamp (RFC 3339) to a unix time."""
    return moment - datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
