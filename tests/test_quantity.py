from __future__ import annotations

from fractions import Fraction

import pytest

from berth.core.quantity import QuantityError, parse_quantity, to_int, to_millis


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("16Gi", 16 * 2**30),
        ("500m", Fraction(1, 2)),
        ("2", 2),
        ("1e3", 1000),
        ("1.5k", 1500),
        ("128974848", 128974848),
        (".5", Fraction(1, 2)),
    ],
)
def test_quantities_parse_exactly(text: str, value: Fraction) -> None:
    assert parse_quantity(text) == value


def test_cpu_rounds_up_to_whole_millis() -> None:
    assert to_millis("0.0001") == 1
    assert to_int("1.5") == 2


@pytest.mark.parametrize("text", ["", "Gi", "16GB", "1.2.3", "--1"])
def test_malformed_quantities_are_refused(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(text)
