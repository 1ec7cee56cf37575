"""The one rounding rule and footing (docs/metrics.md §2): displayed lines add up to displayed totals."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from finance_pipeline.lib.money import (
    MICROS_PER_CENT,
    foot,
    foot_grid,
    foot_roll_forward,
    grain_places,
    micros_per_minor,
    micros_to_cents,
    micros_to_decimal,
    micros_to_minor,
    minor_unit_exponent,
    round_half_away,
    shown_units,
)

CENT = MICROS_PER_CENT

# Exact amounts in micro-units: whole micros and finer fractions (MRR is exact Fractions).
amounts = st.one_of(
    st.integers(min_value=-(10**13), max_value=10**13),
    st.fractions(min_value=-(10**9), max_value=10**9, max_denominator=10**4),
)
quanta = st.sampled_from([1, 100, CENT, 1_000_000])


def test_round_half_away_examples() -> None:
    assert [round_half_away(Fraction(n, 2)) for n in (-5, -3, -1, 1, 3, 5)] == [-3, -2, -1, 1, 2, 3]
    assert round_half_away(Fraction(1, 3)) == 0 and round_half_away(Fraction(-2, 3)) == -1
    assert round_half_away(Decimal("2.5")) == 3 and round_half_away(7) == 7
    assert round_half_away(15_000, CENT) == 20_000 and round_half_away(-15_000, CENT) == -20_000
    assert round_half_away(14_999, CENT) == 10_000 and round_half_away(Fraction(-4_999), CENT) == 0
    with pytest.raises(ValueError):
        round_half_away(5, 0)


@given(amounts, quanta)
def test_round_half_away_is_nearest_multiple_ties_away(x: Fraction | int, q: int) -> None:
    r = round_half_away(x, q)
    assert r % q == 0 and abs(r - x) * 2 <= q
    if abs(r - x) * 2 == q:
        assert abs(r) > abs(x)
    assert round_half_away(-Fraction(x), q) == -r


def test_wrappers_use_the_rule() -> None:
    assert micros_to_cents(5_000) == 1 and micros_to_cents(-5_000) == -1
    assert micros_to_minor(500_000, "jpy") == 1 and micros_to_minor(-500_000, "jpy") == -1
    assert micros_to_decimal(-5_000) == Decimal("-0.01")
    assert str(micros_to_decimal(0)) == "0.00" and f"{micros_to_decimal(123_456_785_000):,}" == (
        "123,456.79"
    )
    assert str(micros_to_decimal(Fraction(25, 10), places=6)) == "0.000003"


def test_foot_examples() -> None:
    # Three thirds of a cent-unit: the first listed line takes the adjustment.
    assert foot([Fraction(1, 3)] * 3, 1) == [1, 0, 0]
    # The line that lost most by its own rounding gets the cent.
    assert foot([Fraction(14, 10), Fraction(13, 10), Fraction(13, 10)], 1) == [2, 1, 1]
    # Signed lines: 2.6 - 0.6 - 0.6 = 1.4 -> 1; own roundings 3 - 1 - 1 = 1 already foot.
    assert foot([Fraction(26, 10), Fraction(-6, 10), Fraction(-6, 10)], 1) == [3, -1, -1]
    # -0.4 - 0.4 - 0.4 = -1.2 -> -1: the first most-rounded-up line moves one unit down.
    assert foot([Fraction(-4, 10)] * 3, 1) == [-1, 0, 0]
    # 0.3 + 0.3 - 0.7 = -0.1 -> 0 against own roundings 0 + 0 - 1: all lost 0.3, and the larger
    # absolute remainder wins over the line listed first (-0.7 -> 0 rather than 0.3 -> 1).
    assert foot([Fraction(3, 10), Fraction(3, 10), Fraction(-7, 10)], 1) == [0, 0, 0]
    assert foot([], 1) == [] and foot([5 * CENT], CENT) == [5 * CENT]
    # A given total: the lines are footed to it.
    assert foot([Fraction(1, 2), Fraction(1, 2)], 1, total=Fraction(3, 2)) == [1, 1]
    with pytest.raises(ValueError):
        foot([1, 2], 1, total=10)


def test_demo_roll_forward_foots_to_the_cent() -> None:
    """The demo once printed lines adding to 59,758.69 under a closing MRR of 59,758.70."""
    opening = 50_000 * 1_000_000
    movements = {
        "new": 12_345_674_500,  # 12,345.6745
        "expansion": 2_000_004_000,  # 2,000.004
        "reactivation": 500_003_500,  # 500.0035
        "contraction": -1_000_000_000,
        "churn": -4_086_984_000,  # -4,086.984
        "fx": 0,
    }
    closing = opening + sum(movements.values())
    independent = round_half_away(opening, CENT) + sum(
        round_half_away(v, CENT) for v in movements.values()
    )
    assert micros_to_decimal(independent) == Decimal("59758.69")
    assert micros_to_decimal(closing) == Decimal("59758.70")
    o, m, c = foot_roll_forward(opening, movements, closing, CENT)
    assert (micros_to_decimal(o), micros_to_decimal(c)) == (
        Decimal("50000.00"),
        Decimal("59758.70"),
    )
    assert o + sum(m.values()) == c
    # new lost most by its own rounding (0.45 cent) and takes the cent.
    assert {k: micros_to_decimal(v) for k, v in m.items()} == {
        "new": Decimal("12345.68"),
        "expansion": Decimal("2000.00"),
        "reactivation": Decimal("500.00"),
        "contraction": Decimal("-1000.00"),
        "churn": Decimal("-4086.98"),
        "fx": Decimal("0.00"),
    }


def test_roll_forward_requires_the_identity() -> None:
    with pytest.raises(ValueError):
        foot_roll_forward(100, {"new": 5}, 106, 1)
    # Opening and closing half-ties round away from zero on both sides: the movement takes it.
    assert foot_roll_forward(Fraction(1, 2), {"churn": -1}, Fraction(-1, 2), 1) == (
        1,
        {"churn": -2},
        -1,
    )
    assert foot_roll_forward(7, {}, 7, 1) == (7, {}, 7)


@given(st.lists(amounts, max_size=12), quanta)
def test_foot_sums_and_stays_within_a_quantum(parts: list, q: int) -> None:
    out = foot(parts, q)
    assert sum(out) == round_half_away(sum(Fraction(p) for p in parts), q)
    for x, r in zip(parts, out, strict=True):
        assert r % q == 0
        assert abs(r - x) < q  # floor or ceiling of the exact value
        assert abs(r - round_half_away(x, q)) <= q


@given(st.lists(amounts, max_size=12), quanta)
def test_foot_is_idempotent(parts: list, q: int) -> None:
    out = foot(parts, q)
    assert foot(out, q) == out
    rounded = [round_half_away(p, q) for p in parts]
    assert foot(rounded, q) == rounded  # already-rounded lines are left alone


@given(st.lists(amounts, min_size=1, max_size=12), quanta, st.randoms(use_true_random=False))
def test_foot_is_order_stable(parts: list, q: int, rnd) -> None:
    # Distinct remainders, so no tie is broken by position: each line's result follows the line.
    remainders = [Fraction(p) / q - (Fraction(p) // q) for p in parts]
    assume(len(set(remainders)) == len(remainders))
    order = list(range(len(parts)))
    rnd.shuffle(order)
    out = foot(parts, q)
    assert foot([parts[i] for i in order], q) == [out[i] for i in order]


@given(
    amounts, st.dictionaries(st.sampled_from(["new", "expansion", "churn", "fx"]), amounts), quanta
)
def test_roll_forward_foots(opening, movements: dict, q: int) -> None:
    closing = Fraction(opening) + sum((Fraction(v) for v in movements.values()), Fraction(0))
    o, m, c = foot_roll_forward(opening, movements, closing, q)
    assert (o, c) == (round_half_away(opening, q), round_half_away(closing, q))
    assert o + sum(m.values()) == c and list(m) == list(movements)
    for name, r in m.items():
        assert r % q == 0 and abs(r - round_half_away(movements[name], q)) <= q
    assert foot_roll_forward(o, m, c, q) == (o, m, c)  # idempotent


@given(
    st.lists(
        st.lists(st.fractions(min_value=-(10**6), max_value=10**6, max_denominator=9), min_size=3,
                 max_size=3),
        min_size=1,
        max_size=5,
    ),
    st.lists(st.integers(-2, 2), min_size=5, max_size=5),
)  # fmt: skip
def test_foot_grid_rows_and_columns_add_up(cells: list[list[Fraction]], nudge: list[int]) -> None:
    # Row totals as a roll-forward gives them (balances rounded on their own, up to a couple of
    # quanta off the cells' sum), columns footed to the rounded grand total.
    q = 10_000
    rows = [
        round_half_away(sum(r, Fraction(0)), q) + n * q
        for r, n in zip(cells, nudge[: len(cells)], strict=True)
    ]
    rows[-1] -= sum(rows) - round_half_away(sum(map(sum, cells), Fraction(0)), q)
    cols = foot([sum(c, Fraction(0)) for c in zip(*cells, strict=True)], q, total=sum(rows))
    out = foot_grid(cells, rows, cols, q)
    assert [sum(r) for r in out] == rows
    assert [sum(c) for c in zip(*out, strict=True)] == cols
    assert all(x % q == 0 for r in out for x in r)


def test_foot_grid_moves_the_cell_that_loses_least() -> None:
    # The row must show 0.01 more than its cells round to: the fractional cell takes it, not the
    # whole one (an FX of exactly 0 stays 0).
    assert foot_grid(
        [[Fraction(44_000), 0], [Fraction(-44_000), 0]], [50_000, -50_000], [0, 0]
    ) == [
        [50_000, 0],
        [-50_000, 0],
    ]
    assert foot_grid([[1, 0]], [0], [0, 0]) == [[0, 0]]
    with pytest.raises(ValueError):
        foot_grid([[1, 0]], [10_000], [0, 0])


def test_reporting_grain_is_the_minor_unit() -> None:
    assert [micros_per_minor(c) for c in ("usd", "EUR", "jpy", "krw", "kwd")] == [
        10_000,
        10_000,
        1_000_000,
        1_000_000,
        1_000,
    ]
    assert [grain_places(g) for g in (1, 1_000, 10_000, 1_000_000)] == [6, 3, 2, 0]
    for bad in (0, 3, 2_000_000, 30_000):
        with pytest.raises(ValueError):
            grain_places(bad)
    assert str(shown_units(1_234_560_000, 10_000)) == "1234.56"
    assert str(shown_units(1_234_000_000, 1_000_000)) == "1234"  # whole yen, no ".00"
    assert str(shown_units(-1_234_500_000, 1_000)) == "-1234.500"
    assert str(shown_units(0, 10_000)) == "0.00"
    with pytest.raises(ValueError):
        shown_units(1_234_560_000, 1_000_000)  # 1234.56 yen cannot be shown


@given(st.lists(amounts, max_size=12), st.integers(min_value=1, max_value=10**7))
def test_foot_at_any_grain_sums_to_the_total(parts: list, grain: int) -> None:
    out = foot(parts, grain)
    assert sum(out) == round_half_away(sum(Fraction(p) for p in parts), grain)
    for x, r in zip(parts, out, strict=True):
        assert r % grain == 0 and abs(r - Fraction(x)) < grain


@given(
    st.lists(amounts, min_size=1, max_size=12),
    st.sampled_from(["usd", "jpy", "kwd", "krw", "bhd", "eur"]),
)
def test_shown_lines_add_up_to_the_shown_total_in_any_currency(parts: list, currency: str) -> None:
    # What a report prints: footed lines and their total as decimals of the currency's minor unit.
    grain = micros_per_minor(currency)
    lines = [shown_units(r, grain) for r in foot(parts, grain)]
    total = shown_units(round_half_away(sum(Fraction(p) for p in parts), grain), grain)
    assert sum(lines) == total
    places = minor_unit_exponent(currency)
    assert all(-x.as_tuple().exponent == places for x in [*lines, total])
