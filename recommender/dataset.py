"""Training rows from the measured tables: features and log targets, with their origin.

Throughput rows carry log(samples/s); Zeus's power rows carry log(W per device / TDP) at count
1, the fraction of its limit a device draws.
A row has one target; the other is NaN and masked out of the loss.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from berth.core.catalog import DEFAULT_VARIANT, TYPES, Variant
from berth.core.profile import PowerRecord, ProfileRecord
from berth.recommender.features import features


def variant_of(type_id: str, tdp_w: float | None = None) -> Variant:
    """The variant a data set's type name stands for: the one whose TDP is the measured power
    limit when given (Zeus's V100 at 250 W is the PCIe card), else the type's default."""
    if tdp_w is not None:
        (kind,) = [t for t in TYPES if t.id == type_id]
        for v in kind.variants:
            if v.tdp_w == tdp_w:
                return v
    return DEFAULT_VARIANT[type_id]


@dataclass(frozen=True)
class Rows:
    x: np.ndarray  # [n, features] float64
    y: np.ndarray  # [n, 2]: log samples/s, log(W / TDP) (NaN where not measured)
    source: list[str]  # data set of each row: elasticflow, gavel, pollux, zeus
    type: list[str]
    key: list[tuple[str, int, str, int]]  # (family, batch, type, count)

    def subset(self, index: Sequence[int] | np.ndarray) -> Rows:
        idx = list(int(i) for i in index)
        return Rows(
            self.x[idx],
            self.y[idx],
            [self.source[i] for i in idx],
            [self.type[i] for i in idx],
            [self.key[i] for i in idx],
        )

    def __len__(self) -> int:
        return len(self.source)


def build(records: Sequence[ProfileRecord], power: Sequence[PowerRecord]) -> Rows:
    x, y, source, types, keys = [], [], [], [], []
    for r in records:
        x.append(features(r.family, r.batch_size, variant_of(r.accelerator), r.count))
        y.append([math.log(r.throughput), math.nan])
        source.append(r.source.split()[0])
        types.append(r.accelerator)
        keys.append((r.family, r.batch_size, r.accelerator, r.count))
    for p in power:
        variant = variant_of(p.accelerator, p.power_limit_w)
        x.append(features(p.family, p.batch_size, variant, 1))
        y.append([math.nan, math.log(p.watts / variant.tdp_w)])
        source.append("zeus")
        types.append(p.accelerator)
        keys.append((p.family, p.batch_size, p.accelerator, 1))
    return Rows(np.array(x), np.array(y), source, types, keys)


def digest(records: Sequence[ProfileRecord], power: Sequence[PowerRecord]) -> str:
    """sha256 of the training data as text, so a model names exactly what it learned from."""
    h = hashlib.sha256()
    for item in [*records, *power]:
        h.update(repr(item).encode())
    return h.hexdigest()


def concat(a: Rows, b: Rows) -> Rows:
    return Rows(
        np.concatenate([a.x, b.x]) if len(b) else a.x,
        np.concatenate([a.y, b.y]) if len(b) else a.y,
        a.source + b.source,
        a.type + b.type,
        a.key + b.key,
    )


def split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held out): a seeded random split of row indices."""
    order = np.random.default_rng(seed).permutation(n)
    cut = round(n * fraction)
    return np.sort(order[cut:]), np.sort(order[:cut])
