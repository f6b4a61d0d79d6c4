"""Features are a pure function of the job and the accelerator's specs, named once."""

from __future__ import annotations

import pytest

from berth.core import tables
from berth.core.catalog import VARIANTS
from berth.recommender.features import KNOWN_FAMILIES, NAMES, check_names, features


def test_the_same_inputs_give_the_same_vector() -> None:
    a100 = VARIANTS["a100-sxm4-80gb"]
    assert features("resnet50", 256, a100, 4) == features("resnet50", 256, a100, 4)


def test_every_vector_has_one_value_per_name() -> None:
    for variant in VARIANTS.values():
        assert len(features("bert", 64, variant, 2)) == len(NAMES)


def test_an_unknown_family_is_marked_missing_not_guessed() -> None:
    x = dict(zip(NAMES, features("my-own-net", 64, VARIANTS["t4"], 1), strict=True))
    assert x["params_missing"] == 1.0 and x["gflops_missing"] == 1.0
    assert not any(v for k, v in x.items() if k.startswith(("family_", "domain_")))


def test_a_type_enters_only_through_its_specs() -> None:
    x = dict(zip(NAMES, features("resnet50", 64, VARIANTS["h100-sxm5-80gb"], 8), strict=True))
    assert x["log2_tdp_w"] == pytest.approx(9.451, abs=1e-3)  # 700 W
    assert x["log2_count"] == 3.0 and not any("h100" in name for name in NAMES)


def test_a_model_with_other_features_is_refused() -> None:
    with pytest.raises(ValueError, match="not this berth's"):
        check_names([*NAMES[:-1], "family_something"])


def test_zero_devices_is_not_a_feature_row() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        features("resnet50", 64, VARIANTS["t4"], 0)


def test_the_one_hot_families_are_those_of_the_mlps_own_tables() -> None:
    records, power = tables.read()
    assert tuple(sorted({r.family for r in records} | {p.family for p in power})) == KNOWN_FAMILIES
