"""Item and subscription MRR (docs/metrics.md §3) and the E1/E2 examples (§15), exact."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from finance_pipeline.lib.money import micros_to_cents
from finance_pipeline.lib.mrr import (
    DiscountSpec,
    PriceSpec,
    Settings,
    SubscriptionState,
    TierSpec,
    apply_discounts,
    item_mrr,
    item_period_amount,
    monthly_factor,
    round_micros,
    subscription_cmrr,
    subscription_counts,
    subscription_mrr,
    subscription_value,
)
from finance_pipeline.lib.mrr_timeline import company_daily, customer_mrr_changes, daily_movements

CENT = 10_000  # micro-units per cent
DAY = date(2024, 3, 15)


def ts(text: str) -> int:
    """ISO UTC timestamp -> Unix seconds."""
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def price(amount: int | str, interval: str = "month", count: int = 1, **kw: object) -> PriceSpec:
    return PriceSpec(
        "usd",
        str(amount),
        interval=interval,  # type: ignore[arg-type]
        interval_count=count,
        price_id=kw.pop("price_id", f"price_{amount}_{interval}_{count}"),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def state(
    customer: str = "C",
    p: PriceSpec | None = None,
    qty: int = 1,
    *,
    sub: str | None = None,
    start: str = "2024-01-01T00:00:00",
    end: str | None = None,
    status: str = "active",
    **kw: object,
) -> SubscriptionState:
    p = p or price(10000)
    return SubscriptionState(
        "ws",
        sub or f"sub_{customer}",
        customer,
        "usd",
        ts(start),
        ts(end) if end else None,
        status,
        (("si_1", p, qty),),
        **kw,  # type: ignore[arg-type]
    )


def no_fx(currency: str, day: date) -> Fraction | None:
    return None


# ---------------------------------------------------------------------------------------------
# §15 E1: normalization
# ---------------------------------------------------------------------------------------------

E1 = {
    "A": ("month", 1, 5000, Fraction(5000)),
    "B": ("year", 1, 120000, Fraction(10000)),
    "C": ("month", 3, 30000, Fraction(10000)),
    "D": ("week", 1, 1000, Fraction(13000, 3)),  # 4333.33
    "E": ("week", 2, 3000, Fraction(6500)),
    "F": ("day", 1, 100, Fraction(36500, 12)),  # 3041.67
    "G": ("year", 2, 240000, Fraction(10000)),
}


@pytest.mark.parametrize("customer", sorted(E1))
def test_e1_normalization_each_customer_metrics_15(customer: str) -> None:
    """§15 E1 / §3.2: each interval normalizes exactly to the table's MRR (cents)."""
    interval, count, amount, expected_cents = E1[customer]
    s = state(customer, price(amount, interval, count))
    assert subscription_mrr(s, DAY, Settings()) == expected_cents * CENT


def test_e1_company_mrr_arr_paying_metrics_15() -> None:
    """§15 E1: company MRR is exactly 48875 (488,750,000 micros), ARR 586500, 7 paying."""
    states = [state(c, price(a, i, n)) for c, (i, n, a, _) in E1.items()]
    changes = customer_mrr_changes(states, [], Settings(), None, DAY)
    movements = daily_movements(changes, no_fx, "usd", end=DAY)
    (day,) = company_daily(changes, movements, [DAY], no_fx, "usd")
    assert day.mrr == 488_750_000
    assert micros_to_cents(day.arr) == 586_500  # cents
    assert day.arr == 12 * day.mrr
    assert day.paying_customers == 7
    assert day.active_subscriptions == 7
    reported = {r.customer_id: micros_to_cents(r.mrr) for r in changes}
    assert reported["D"] == 4333  # 4333.33
    assert reported["F"] == 3042  # 3041.67


def test_e1_three_yearly_customers_round_only_at_reported_grain_metrics_15() -> None:
    """§15 E1 / §2: three yearly 10000 customers report 833 each, but the company MRR is 2500."""
    states = [state(c, price(10000, "year")) for c in ("X", "Y", "Z")]
    changes = customer_mrr_changes(states, [], Settings(), None, DAY)
    assert [micros_to_cents(r.mrr) for r in changes] == [833, 833, 833]
    (day,) = company_daily(changes, daily_movements(changes, no_fx, "usd"), [DAY], no_fx, "usd")
    assert micros_to_cents(day.mrr) == 2500
    assert sum(round_micros(r.mrr) for r in changes) == 24_999_999  # the wrong way, for contrast


def test_monthly_factor_table_metrics_3_2() -> None:
    """§3.2: periods per year 365/n, 52/n, 12/n, 1/n, then divided by 12."""
    assert monthly_factor("day", 1) == Fraction(365, 12)
    assert monthly_factor("day", 7) == Fraction(365, 84)
    assert monthly_factor("week", 1) == Fraction(52, 12)
    assert monthly_factor("week", 4) == Fraction(13, 12)
    assert monthly_factor("month", 6) == Fraction(1, 6)
    assert monthly_factor("year", 3) == Fraction(1, 36)
    with pytest.raises(ValueError, match="interval_count"):
        monthly_factor("month", 0)
    with pytest.raises(ValueError, match="interval"):
        monthly_factor("quarter", 1)


# ---------------------------------------------------------------------------------------------
# §15 E2: tiers
# ---------------------------------------------------------------------------------------------

TIERS = (
    TierSpec(5, "1000"),
    TierSpec(10, "800"),
    TierSpec(None, "500", "2000"),
)


def tiered(mode: str) -> PriceSpec:
    return PriceSpec("usd", billing_scheme="tiered", tiers_mode=mode, tiers=TIERS)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mode", "qty", "cents"),
    [
        ("graduated", 12, 12000),  # 5x1000 + 5x800 + 2x500 + 2000
        ("volume", 12, 8000),  # 12x500 + 2000
        ("graduated", 10, 9000),  # up_to is inclusive: tier 3 not reached
        ("volume", 10, 8000),  # 10 is in tier 2
    ],
)
def test_e2_tiers_metrics_15(mode: str, qty: int, cents: int) -> None:
    """§15 E2 / §3.1: graduated and volume tiers with flat amounts, up_to inclusive."""
    assert item_period_amount(tiered(mode), qty) == cents * CENT
    assert item_mrr(tiered(mode), qty) == cents * CENT


def test_e2_seats_plus_metered_item_metrics_15() -> None:
    """§15 E2 / §3.3: 1500 x 12 seats plus a metered item gives 18000 (metered adds 0)."""
    seats = price(1500)
    metered = price(99, usage_type="metered")
    s = SubscriptionState(
        "ws", "sub", "C", "usd", ts("2024-01-01T00:00:00"), None, "active",
        (("si_seats", seats, 12), ("si_usage", metered, 1000)),
    )  # fmt: skip
    assert item_mrr(metered, 1000) == 0
    assert subscription_mrr(s, DAY, Settings()) == 18000 * CENT
    value = subscription_value(s, DAY, Settings())
    assert set(value.plans) == {seats.price_id, metered.price_id}
    assert value.by_plan == {seats.price_id: 18000 * CENT}


def test_e2_tax_inclusive_metrics_15() -> None:
    """§15 E2 / §3.1: 12000 tax-inclusive at 20 % gives 10000; exclusive/unspecified untouched."""
    incl = price(12000, tax_behavior="inclusive", inclusive_tax_rate_percent=Decimal("20"))
    assert item_mrr(incl, 1) == 10000 * CENT
    assert item_mrr(price(12000, tax_behavior="exclusive"), 1) == 12000 * CENT
    odd = price(10000, tax_behavior="inclusive", inclusive_tax_rate_percent=Decimal("7.7"))
    assert item_mrr(odd, 1) == Fraction(10000 * CENT) / Fraction(1077, 1000)


def test_tier_edges_metrics_3_1() -> None:
    """§3.1: qty 0 is in the first tier; each tier boundary; tiers with only flat amounts."""
    assert item_period_amount(tiered("volume"), 0) == 0
    assert item_period_amount(tiered("graduated"), 5) == 5000 * CENT
    assert item_period_amount(tiered("graduated"), 6) == 5800 * CENT
    assert item_period_amount(tiered("graduated"), 11) == 9000 * CENT + 2500 * CENT
    assert item_period_amount(tiered("volume"), 5) == 5000 * CENT
    assert item_period_amount(tiered("volume"), 6) == 4800 * CENT
    flat = (TierSpec(1, None, "900"), TierSpec(None, "100", "50"))
    grad = PriceSpec("usd", billing_scheme="tiered", tiers_mode="graduated", tiers=flat)
    vol = PriceSpec("usd", billing_scheme="tiered", tiers_mode="volume", tiers=flat)
    assert item_period_amount(grad, 0) == 900 * CENT
    assert item_period_amount(grad, 1) == 900 * CENT
    assert item_period_amount(grad, 3) == (900 + 2 * 100 + 50) * CENT
    assert item_period_amount(vol, 3) == (3 * 100 + 50) * CENT
    with pytest.raises(ValueError, match="last tier"):
        PriceSpec("usd", billing_scheme="tiered", tiers_mode="volume", tiers=(TierSpec(5, "1"),))


def test_transform_quantity_and_fractional_unit_amount_metrics_3_1() -> None:
    """§3.1: transform_quantity divides and rounds up or down; unit_amount_decimal is exact."""
    up = price(1000, transform_quantity=(10, "up"))
    down = price(1000, transform_quantity=(10, "down"))
    assert item_period_amount(up, 11) == 2 * 1000 * CENT
    assert item_period_amount(down, 11) == 1 * 1000 * CENT
    assert item_period_amount(up, 10) == 1000 * CENT
    frac = price("33.3333")
    assert item_period_amount(frac, 3) == Fraction(999999, 10000) * CENT
    yen = PriceSpec("jpy", "1200", interval="year")
    assert item_mrr(yen, 1) == 100 * 1_000_000  # zero-decimal: 1200 yen/yr = 100 yen/mo


# ---------------------------------------------------------------------------------------------
# §3 discounts
# ---------------------------------------------------------------------------------------------

T0 = "2024-01-01T00:00:00"


def discounted(*discounts: DiscountSpec, p: PriceSpec | None = None) -> SubscriptionState:
    return state("C", p or price(10000), start=T0, discounts=discounts)


def test_percent_off_forever_all_modes_metrics_3() -> None:
    """§3: a forever percent_off applies in all_active and forever_only, not in none."""
    s = discounted(DiscountSpec("c25", percent_off=Decimal("25"), duration="forever"))
    assert subscription_mrr(s, DAY, Settings()) == 7500 * CENT
    assert subscription_mrr(s, DAY, Settings(discount_mode="forever_only")) == 7500 * CENT
    assert subscription_mrr(s, DAY, Settings(discount_mode="none")) == 10000 * CENT


def test_repeating_discount_window_and_modes_metrics_3() -> None:
    """§3: a repeating discount runs on [start, end), in local days; forever_only ignores it."""
    d = DiscountSpec(
        "rep", percent_off=Decimal("50"), duration="repeating",
        start=ts("2024-02-10T12:00:00"), end=ts("2024-05-10T12:00:00"),
    )  # fmt: skip
    s = discounted(d)
    on = Settings()
    assert subscription_mrr(s, date(2024, 2, 9), on) == 10000 * CENT
    assert subscription_mrr(s, date(2024, 2, 10), on) == 5000 * CENT  # starts that day
    assert subscription_mrr(s, date(2024, 5, 9), on) == 5000 * CENT
    assert subscription_mrr(s, date(2024, 5, 10), on) == 10000 * CENT  # ended before midnight
    assert subscription_mrr(s, date(2024, 3, 1), Settings(discount_mode="forever_only")) == (
        10000 * CENT
    )


def test_once_discount_covers_its_first_billing_period_metrics_3() -> None:
    """§3: a once discount covers the whole first billing period (end precomputed), not a month."""
    d = DiscountSpec(
        "once", amount_off=12000, currency="usd", duration="once",
        start=ts(T0), end=ts("2025-01-01T00:00:00"),
    )  # fmt: skip
    s = discounted(d, p=price(120000, "year"))  # yearly 120000 = 10000/month
    # amount_off is per invoice of a yearly subscription: 12000/yr = 1000/month.
    assert subscription_mrr(s, date(2024, 11, 30), Settings()) == 9000 * CENT
    assert subscription_mrr(s, date(2024, 12, 31), Settings()) == 9000 * CENT
    assert subscription_mrr(s, date(2025, 1, 1), Settings()) == 10000 * CENT
    assert subscription_mrr(s, date(2024, 6, 1), Settings(discount_mode="forever_only")) == (
        10000 * CENT
    )


def test_amount_off_normalized_by_subscription_interval_metrics_3() -> None:
    """§3: amount_off is per invoice: x monthly factor of the subscription's interval."""
    weekly = discounted(DiscountSpec("w", amount_off=300), p=price(1000, "week"))
    # (1000 - 300) per week x 52/12
    assert subscription_mrr(weekly, DAY, Settings()) == Fraction(700 * 52, 12) * CENT
    eur_coupon = discounted(DiscountSpec("e", amount_off=300, currency="eur"))
    assert subscription_mrr(eur_coupon, DAY, Settings()) == 10000 * CENT  # never applied


def test_discounts_apply_in_order_and_floor_at_zero_metrics_3() -> None:
    """§3: discounts apply in order (percent then amount differs from amount then percent)."""
    pct = DiscountSpec("p", percent_off=Decimal("50"))
    amt = DiscountSpec("a", amount_off=1000)
    assert subscription_mrr(discounted(pct, amt), DAY, Settings()) == 4000 * CENT
    assert subscription_mrr(discounted(amt, pct), DAY, Settings()) == 4500 * CENT
    huge = DiscountSpec("h", amount_off=25000)
    s = discounted(huge, pct)
    assert subscription_mrr(s, DAY, Settings()) == 0
    assert subscription_counts(s, DAY, Settings())  # still an active subscription
    full = discounted(DiscountSpec("f", percent_off=Decimal("100")))
    assert subscription_mrr(full, DAY, Settings()) == 0
    assert apply_discounts(Fraction(5), full, ts("2024-03-16T00:00:00"), Settings()) == 0


# ---------------------------------------------------------------------------------------------
# §3 counting rules
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status", ["trialing", "incomplete", "incomplete_expired", "unpaid", "paused", "canceled"]
)
def test_statuses_that_never_count_metrics_3(status: str) -> None:
    """§3: these statuses never count, whatever else holds."""
    s = state(status=status)
    assert not subscription_counts(s, DAY, Settings(count_paused=True))
    assert subscription_mrr(s, DAY, Settings(count_paused=True)) == 0


@pytest.mark.parametrize("status", ["active", "past_due"])
def test_counting_statuses_metrics_3(status: str) -> None:
    """§3: active and past_due count (no grace configured)."""
    s = state(status=status, past_due_since=ts("2023-01-01T00:00:00"))
    assert subscription_counts(s, DAY, Settings())
    assert subscription_mrr(s, DAY, Settings()) == 10000 * CENT


def test_trial_end_inside_interval_counts_from_trial_end_metrics_3() -> None:
    """§3: out of trial is required; the trial_end instant is a breakpoint within the state."""
    s = state(status="active", trial_end=ts("2024-03-15T18:00:00"))
    assert not subscription_counts(s, date(2024, 3, 14), Settings())
    assert subscription_counts(s, date(2024, 3, 15), Settings())
    assert subscription_mrr(s, date(2024, 3, 15), Settings()) == 10000 * CENT


def test_started_and_ended_instants_metrics_3() -> None:
    """§3: it has started and has not ended (ended_at exactly at midnight keeps the day before)."""
    s = state(started_at=ts("2024-03-10T05:00:00"), ended_at=ts("2024-03-20T00:00:00"))
    assert not subscription_counts(s, date(2024, 3, 9), Settings())
    assert subscription_counts(s, date(2024, 3, 10), Settings())
    assert subscription_counts(s, date(2024, 3, 19), Settings())
    assert not subscription_counts(s, date(2024, 3, 20), Settings())


def test_pause_collection_metrics_3() -> None:
    """§3: pause_collection stops counting unless count_paused."""
    s = state(pause_collection=True)
    assert subscription_mrr(s, DAY, Settings()) == 0
    assert not subscription_counts(s, DAY, Settings())
    assert subscription_mrr(s, DAY, Settings(count_paused=True)) == 10000 * CENT


def test_past_due_grace_metrics_3() -> None:
    """§3: with past_due_grace_days, a past_due subscription counts for that long only."""
    s = state(status="past_due", past_due_since=ts("2024-03-10T12:00:00"))
    grace = Settings(past_due_grace_days=3)
    assert subscription_counts(s, date(2024, 3, 12), grace)  # expiry 03-13T12:00
    assert not subscription_counts(s, date(2024, 3, 13), grace)
    assert subscription_value(s, date(2024, 3, 13), grace).stop_reason == "delinquent"
    assert subscription_counts(s, date(2024, 3, 13), Settings())  # no grace configured
    active = state(status="active", past_due_since=ts("2024-03-10T12:00:00"))
    assert subscription_counts(active, date(2024, 4, 1), grace)  # grace is for past_due only


def test_cmrr_stops_when_cancellation_is_scheduled_metrics_4() -> None:
    """§4: CMRR drops a subscription whose cancellation is scheduled; MRR keeps it."""
    s = state(cancel_scheduled=True)
    assert subscription_mrr(s, DAY, Settings()) == 10000 * CENT
    assert subscription_cmrr(s, DAY, Settings()) == 0
    assert subscription_counts(s, DAY, Settings())
    assert subscription_cmrr(state(), DAY, Settings()) == 10000 * CENT


def test_state_not_in_force_contributes_nothing_metrics_1() -> None:
    """§1: [from, to) in force on D iff from < S(D+1) <= to; outside it the state gives 0."""
    s = state(start="2024-03-15T23:59:59", end="2024-03-17T00:00:00")
    assert subscription_mrr(s, date(2024, 3, 14), Settings()) == 0
    assert subscription_mrr(s, date(2024, 3, 15), Settings()) == 10000 * CENT
    assert subscription_mrr(s, date(2024, 3, 16), Settings()) == 10000 * CENT
    assert subscription_mrr(s, date(2024, 3, 17), Settings()) == 0
    same_day = state(start="2024-03-15T01:00:00", end="2024-03-15T02:00:00")
    assert all(
        subscription_mrr(same_day, date(2024, 3, 14) + timedelta(days=i), Settings()) == 0
        for i in range(3)
    )


def test_model_validation() -> None:
    """Bad input fails loudly with a message naming the problem."""
    with pytest.raises(ValueError, match="half-open"):
        state(start="2024-03-15T00:00:00", end="2024-03-15T00:00:00")
    with pytest.raises(ValueError, match="unknown status"):
        state(status="ACTIVE")
    with pytest.raises(ValueError, match="interval"):
        PriceSpec("usd", "1", interval="quarter")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="transform_quantity"):
        PriceSpec("usd", "1", transform_quantity=(0, "up"))
    with pytest.raises(ValueError, match="discount_mode"):
        Settings(discount_mode="some")  # type: ignore[arg-type]
