"""Whole micro-units as ints (docs/metrics.md §2-3): the integer path of the MRR engine, the
invoice check and the ledger gives exactly the values of the all-`Fraction` arithmetic it replaced,
and an int exactly when the value is whole.

The references below are the previous all-Fraction formulas, kept here verbatim in substance.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from finance_pipeline.lib.ledger import _times
from finance_pipeline.lib.money import micros_per_minor
from finance_pipeline.lib.mrr import (
    DiscountSpec,
    PriceSpec,
    Settings,
    SubscriptionItem,
    SubscriptionState,
    TierSpec,
    apply_discounts,
    evaluate_at,
    item_mrr,
    monthly_factor,
    scaled,
    whole,
)
from finance_pipeline.lib.mrr_timeline import PlanDay, PlanTotals, plan_days

_PER_YEAR = {"day": 365, "week": 52, "month": 12, "year": 1}


def _dec(value: str | None) -> Fraction:
    return Fraction(0) if value is None else Fraction(Decimal(value))


def _ref_item_mrr(price: PriceSpec, quantity: int) -> Fraction:
    """The all-Fraction item MRR (§3.1-3.3)."""
    if price.usage_type == "metered":
        return Fraction(0)
    if price.billing_scheme == "per_unit":
        units = quantity
        if price.transform_quantity is not None:
            divide_by, rounding = price.transform_quantity
            units = -(-quantity // divide_by) if rounding == "up" else quantity // divide_by
        minor = _dec(price.unit_amount_decimal) * units
    elif price.tiers_mode == "volume":
        tier = next(t for t in price.tiers if t.up_to is None or quantity <= t.up_to)
        minor = _dec(tier.unit_amount_decimal) * quantity + _dec(tier.flat_amount_decimal)
    else:
        minor, lower = Fraction(0), 0
        for index, tier in enumerate(price.tiers):
            if index > 0 and quantity <= lower:
                break
            upper = quantity if tier.up_to is None else min(quantity, tier.up_to)
            minor += _dec(tier.unit_amount_decimal) * max(0, upper - lower)
            minor += _dec(tier.flat_amount_decimal)
            if tier.up_to is None:
                break
            lower = tier.up_to
    if price.tax_behavior == "inclusive" and price.inclusive_tax_rate_percent:
        minor = minor / (1 + Fraction(price.inclusive_tax_rate_percent) / 100)
    factor = Fraction(_PER_YEAR[price.interval], 12 * price.interval_count)
    return minor * micros_per_minor(price.currency) * factor


def _is_exact_int(value: Fraction | int) -> bool:
    """An int exactly when the value is whole (and never a Fraction with denominator 1)."""
    return (type(value) is int) == (Fraction(value).denominator == 1)


amounts = st.one_of(
    st.integers(0, 500_000).map(str),
    st.decimals(0, 10_000, places=4, allow_nan=False).map(str),
)
intervals = st.sampled_from(["day", "week", "month", "year"])


@st.composite
def prices(draw: st.DrawFn) -> PriceSpec:
    scheme = draw(st.sampled_from(["per_unit", "volume", "graduated"]))
    common = {
        "currency": draw(st.sampled_from(["usd", "jpy", "kwd"])),
        "interval": draw(intervals),
        "interval_count": draw(st.integers(1, 6)),
        "usage_type": draw(st.sampled_from(["licensed", "licensed", "metered"])),
        "tax_behavior": draw(st.sampled_from(["exclusive", "inclusive"])),
        "inclusive_tax_rate_percent": draw(
            st.none() | st.decimals(0, 30, places=2, allow_nan=False)
        ),
        "price_id": draw(st.sampled_from(["p1", "p2"])),
    }
    if scheme == "per_unit":
        return PriceSpec(
            unit_amount_decimal=draw(amounts),
            transform_quantity=draw(
                st.none() | st.tuples(st.integers(1, 5), st.sampled_from(["up", "down"]))
            ),
            **common,
        )
    bounds = sorted(draw(st.sets(st.integers(1, 50), min_size=0, max_size=3)))
    tiers = (
        *(TierSpec(b, draw(st.none() | amounts), draw(st.none() | amounts)) for b in bounds),
        TierSpec(None, draw(amounts), draw(st.none() | amounts)),
    )
    return PriceSpec(billing_scheme="tiered", tiers_mode=scheme, tiers=tiers, **common)


@settings(max_examples=300, deadline=None)
@given(prices(), st.integers(0, 120))
def test_item_mrr_equals_the_fraction_formula(price: PriceSpec, quantity: int) -> None:
    got = item_mrr(price, quantity)
    assert got == _ref_item_mrr(price, quantity)
    assert _is_exact_int(got)
    assert item_mrr(price, quantity) is got  # cached: the same value object


@given(
    st.fractions(min_value=-(10**9), max_value=10**9) | st.integers(-(10**9), 10**9),
    st.integers(1, 400),
    st.integers(1, 400),
)
def test_scaled_and_whole_are_exact(value: Fraction | int, num: int, den: int) -> None:
    got = scaled(value, num, den)
    assert got == Fraction(value) * Fraction(num, den)
    assert _is_exact_int(got)
    assert whole(Fraction(value)) == value and _is_exact_int(whole(Fraction(value)))


discounts = st.builds(
    DiscountSpec,
    coupon_id=st.sampled_from(["c1", "c2"]),
    percent_off=st.none() | st.decimals(0, 100, places=2, allow_nan=False),
    amount_off=st.none() | st.integers(0, 20_000),
    currency=st.sampled_from([None, "usd", "eur"]),
    duration=st.sampled_from(["forever", "repeating", "once"]),
    start=st.integers(0, 100),
    end=st.none() | st.integers(101, 300),
)


def _ref_value(state: SubscriptionState, instant: int, s: Settings) -> tuple[Fraction, dict]:
    """The all-Fraction net MRR and per-plan split of a counting state (§3)."""
    gross_by_plan: dict[str, Fraction] = {}
    for item in state.items:
        value = _ref_item_mrr(item.price, item.quantity)
        if value:
            key = item.price.price_id or "unknown"
            gross_by_plan[key] = gross_by_plan.get(key, Fraction(0)) + value
    gross = sum(gross_by_plan.values(), Fraction(0))
    net = gross
    licensed = [i for i in state.items if i.price.usage_type == "licensed"] or list(state.items)
    per_month = (
        monthly_factor(licensed[0].price.interval, licensed[0].price.interval_count)
        if licensed
        else Fraction(1)
    )
    for d in state.discounts:
        if not (d.start < instant and (d.end is None or instant <= d.end)):
            continue
        if s.discount_mode == "none" or (
            s.discount_mode == "forever_only" and d.duration != "forever"
        ):
            continue
        if d.percent_off is not None:
            net = net * (1 - Fraction(d.percent_off) / 100)
        if d.amount_off is not None:
            if (d.currency or state.currency) != state.currency:
                continue
            net = net - d.amount_off * micros_per_minor(state.currency) * per_month
        net = max(Fraction(0), net)
    by_plan = {k: v * net / gross for k, v in gross_by_plan.items()} if net else {}
    return net, by_plan


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(prices(), st.integers(0, 30)), min_size=0, max_size=3),
    st.lists(discounts, max_size=3),
    st.integers(1, 320),
    st.sampled_from(["all_active", "forever_only", "none"]),
    st.booleans(),
)
def test_subscription_value_equals_the_fraction_formula(
    items: list[tuple[PriceSpec, int]],
    ds: list[DiscountSpec],
    instant: int,
    mode: str,
    cancel_scheduled: bool,
) -> None:
    # One currency per subscription, as Stripe requires.
    items = [(PriceSpec(**{**vars(p), "currency": "usd"}), q) for p, q in items]
    state = SubscriptionState(
        "ws",
        "sub",
        "cus",
        "usd",
        0,
        None,
        "active",
        items=tuple(SubscriptionItem(f"si{i}", p, q) for i, (p, q) in enumerate(items)),
        discounts=tuple(ds),
        cancel_scheduled=cancel_scheduled,
    )
    s = Settings(discount_mode=mode)  # type: ignore[arg-type]
    value = evaluate_at(state, instant, s)
    net, by_plan = _ref_value(state, instant, s)
    assert value.mrr == net and _is_exact_int(value.mrr)
    assert value.cmrr == (0 if cancel_scheduled else net) and _is_exact_int(value.cmrr)
    assert value.by_plan == by_plan
    assert all(_is_exact_int(v) for v in value.by_plan.values())
    assert sum(value.by_plan.values(), 0) == (value.mrr if value.by_plan else 0)
    gross = sum((_ref_item_mrr(p, q) for p, q in items), Fraction(0))
    assert apply_discounts(whole(gross), state, instant, s) == net


@given(st.integers(-(10**12), 10**12), st.integers(1, 10**6), st.integers(1, 10**6))
def test_ledger_amount_times_tax_ratio(micros: int, excl: int, total: int) -> None:
    ratio = Fraction(min(excl, total), total)
    got = _times(micros, ratio)
    assert got == micros * ratio
    assert type(got) is int if ratio == 1 else got == micros * ratio


def _ref_plan_days(totals: PlanTotals, fx, reporting: str) -> list[PlanDay]:
    """The previous plan_days: every (plan, currency) converted on every day, Fractions."""
    native: dict[tuple[str, str], Fraction] = {}
    subs: dict[str, int] = {}
    out = []
    for day in totals.days:
        for k, v in totals.native.get(day, {}).items():
            native[k] = native.get(k, Fraction(0)) + v
        for plan, n in totals.subs.get(day, {}).items():
            subs[plan] = subs.get(plan, 0) + n
        values: dict[str, Fraction] = {}
        skipped: dict[str, set[str]] = {}
        plans = {p for p, n in subs.items() if n}
        for (plan, cur), amount in native.items():
            if not amount:
                continue
            plans.add(plan)
            rate = Fraction(1) if cur == reporting else fx(cur, day)
            if rate is None:
                skipped.setdefault(plan, set()).add(cur)
                continue
            values[plan] = values.get(plan, Fraction(0)) + amount * rate
        out += [
            PlanDay(
                day,
                p,
                values.get(p, Fraction(0)),
                subs.get(p, 0),
                tuple(sorted(skipped.get(p, ()))),
            )
            for p in sorted(plans)
        ]
    return out


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 9),
            st.sampled_from(["basic", "pro", "team"]),
            st.sampled_from(["usd", "eur", "jpy"]),
            st.integers(-3, 3).map(lambda n: n * 10_000) | st.fractions(-5, 5),
            st.integers(-1, 1),
        ),
        max_size=25,
    ),
    st.dictionaries(
        st.tuples(st.sampled_from(["eur", "jpy"]), st.integers(0, 9)),
        st.fractions(min_value=Fraction(1, 200), max_value=2),
    ),
)
def test_plan_days_equal_every_currency_converted_every_day(
    deltas: list[tuple[int, str, str, Fraction | int, int]],
    rates: dict[tuple[str, int], Fraction],
) -> None:
    d0 = date(2024, 1, 1)
    totals = PlanTotals([d0 + timedelta(days=i) for i in range(10)])
    for offset, plan, cur, amount, n in deltas:
        day = d0 + timedelta(days=offset)
        native = totals.native.setdefault(day, {})
        native[(plan, cur)] = native.get((plan, cur), 0) + amount
        totals.subs.setdefault(day, {})[plan] = totals.subs.get(day, {}).get(plan, 0) + n

    def fx(cur: str, day: date) -> Fraction | None:
        return rates.get((cur, (day - d0).days))

    assert plan_days(totals, fx, "usd") == _ref_plan_days(totals, fx, "usd")


@given(st.integers(-(2**33), 2**34))
def test_utc_local_day_fast_path_equals_the_zone_conversion(ts: int) -> None:
    from datetime import UTC, datetime

    from finance_pipeline.lib.timeutil import local_day, zone

    assert local_day(ts) == datetime.fromtimestamp(ts, UTC).astimezone(zone("UTC")).date()
