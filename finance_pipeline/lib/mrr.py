"""Item and subscription MRR (docs/metrics.md §3), computed exactly in micro-units.

The input model mirrors `core.subscription_history`: one `SubscriptionState` per half-open interval
`[valid_from, valid_to)` of constant subscription state. Instants *inside* an interval at which the
value can change (trial_end, discount start/end, started_at/ended_at, past-due grace expiry) are
handled here, so the history builder only has to emit state-change intervals.

Every value "on day D" is the value just before the instant S(D+1) (the last instant of local day
D, §1). An instant boundary `b` therefore first affects local day `local_day(b)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Literal, NamedTuple

from finance_pipeline.lib.money import micros_per_minor, normalize_currency, round_half_away
from finance_pipeline.lib.timeutil import day_start_ts

SECONDS_PER_DAY = 86_400
COUNTING_STATUSES = frozenset({"active", "past_due"})
# Stripe statuses that never count (§3); listed for documentation and validation.
NON_COUNTING_STATUSES = frozenset(
    {"trialing", "incomplete", "incomplete_expired", "unpaid", "paused", "canceled"}
)
KNOWN_STATUSES = COUNTING_STATUSES | NON_COUNTING_STATUSES
# Stripe `cancellation_details.reason` values that mean the customer stopped paying.
NON_PAYMENT_CANCELLATION_REASONS = frozenset({"payment_failed", "payment_disputed"})
_PERIODS_PER_YEAR = {"day": 365, "week": 52, "month": 12, "year": 1}

DiscountMode = Literal["all_active", "forever_only", "none"]
ChurnReason = Literal["delinquent", "voluntary"]


# An exact amount: a whole number of micro-units is a plain int (most MRR values are: integer
# arithmetic is many times cheaper than Fraction's), a Fraction only where a proration, a
# percentage or a rate really leaves a remainder. Both compare, hash and add exactly alike.
Exact = Fraction | int


def round_micros(value: Fraction | int) -> int:
    """Exact micro-units -> whole micro-units, half away from zero (only at the reported grain)."""
    return round_half_away(value)


def whole(value: Exact) -> Exact:
    """The same exact value, as an int when it is whole."""
    if type(value) is not int and value.denominator == 1:
        return value.numerator
    return value


def scaled(value: Exact, num: int, den: int) -> Exact:
    """value x num / den, exactly; an int when the result is whole."""
    if type(value) is int:
        n = value * num
        return n // den if n % den == 0 else Fraction(n, den)
    return whole(value * Fraction(num, den))


@lru_cache(maxsize=4096)
def _decimal(value: str | Decimal | int | None) -> Exact:
    """Stripe `*_decimal` string (minor units, may be fractional) -> exact value; None is 0.

    Cached: a workspace has a few hundred distinct prices, evaluated on every breakpoint."""
    if value is None:
        return 0
    return whole(Fraction(Decimal(str(value))))


@dataclass(frozen=True)
class TierSpec:
    """One price tier: `up_to` units (inclusive, None = infinity) at a unit and a flat amount."""

    up_to: int | None
    unit_amount_decimal: str | None = None
    flat_amount_decimal: str | None = None


class TransformQuantity(NamedTuple):
    """Stripe `transform_quantity`: bill ceil/floor(quantity / divide_by) units."""

    divide_by: int
    round: Literal["up", "down"]


@dataclass(frozen=True)
class PriceSpec:
    """The MRR-relevant part of a Stripe price; amounts are minor units of `currency`.

    `price_id` / `product_id` are optional refinements of the brief's model: they key the per-plan
    MRR breakdown (the seeds' `plan_id` filter).
    """

    currency: str
    unit_amount_decimal: str | None = None
    billing_scheme: Literal["per_unit", "tiered"] = "per_unit"
    tiers_mode: Literal["graduated", "volume"] | None = None
    tiers: tuple[TierSpec, ...] = ()
    transform_quantity: TransformQuantity | tuple[int, str] | None = None
    interval: Literal["day", "week", "month", "year"] = "month"
    interval_count: int = 1
    usage_type: Literal["licensed", "metered"] = "licensed"
    tax_behavior: Literal["exclusive", "inclusive", "unspecified"] = "unspecified"
    inclusive_tax_rate_percent: Decimal | None = None
    price_id: str | None = None
    product_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "currency", normalize_currency(self.currency))
        if self.interval not in _PERIODS_PER_YEAR:
            raise ValueError(f"price interval {self.interval!r} must be day, week, month or year")
        if self.interval_count < 1:
            raise ValueError(f"price interval_count must be >= 1, got {self.interval_count}")
        if self.billing_scheme not in ("per_unit", "tiered"):
            raise ValueError(f"billing_scheme {self.billing_scheme!r} must be per_unit or tiered")
        if self.billing_scheme == "tiered":
            if self.tiers_mode not in ("graduated", "volume"):
                raise ValueError("a tiered price needs tiers_mode graduated or volume")
            if not self.tiers or self.tiers[-1].up_to is not None:
                raise ValueError("tiers must be non-empty and the last tier must have up_to=None")
            bounds = [t.up_to for t in self.tiers[:-1]]
            if any(b is None for b in bounds) or bounds != sorted(set(bounds)):  # type: ignore[type-var]
                raise ValueError("tier up_to bounds must be strictly increasing")
        if self.transform_quantity is not None:
            tq = TransformQuantity(*self.transform_quantity)
            if tq.divide_by < 1 or tq.round not in ("up", "down"):
                raise ValueError(f"invalid transform_quantity {self.transform_quantity!r}")
            object.__setattr__(self, "transform_quantity", tq)
        if self.usage_type not in ("licensed", "metered"):
            raise ValueError(f"usage_type {self.usage_type!r} must be licensed or metered")


class SubscriptionItem(NamedTuple):
    """A subscription item: its id, price and quantity (a plain 3-tuple works too)."""

    item_id: str
    price: PriceSpec
    quantity: int


@dataclass(frozen=True)
class DiscountSpec:
    """A discount on a subscription, in force on `[start, end)` (end None = no end).

    For `once` the history builder precomputes `end` as the end of the first billing period.
    """

    coupon_id: str
    percent_off: Decimal | None = None
    amount_off: int | None = None
    currency: str | None = None
    duration: Literal["forever", "repeating", "once"] = "forever"
    start: int = 0
    end: int | None = None

    def __post_init__(self) -> None:
        if self.duration not in ("forever", "repeating", "once"):
            raise ValueError(f"coupon {self.coupon_id}: unknown duration {self.duration!r}")
        if self.percent_off is not None and not 0 <= Fraction(self.percent_off) <= 100:
            raise ValueError(f"coupon {self.coupon_id}: percent_off must be within 0..100")
        if self.amount_off is not None and (
            isinstance(self.amount_off, bool) or not isinstance(self.amount_off, int)
        ):
            raise ValueError(f"coupon {self.coupon_id}: amount_off is integer minor units")


@dataclass(frozen=True)
class SubscriptionState:
    """One interval `[valid_from, valid_to)` of constant state of a subscription.

    `cancellation_reason` (Stripe `cancellation_details.reason`) is an optional refinement used only
    to tag churn as delinquent; `started_at` None means "started".
    """

    workspace_id: str
    subscription_id: str
    customer_id: str
    currency: str
    valid_from: int
    valid_to: int | None
    status: str
    items: tuple[SubscriptionItem, ...] = ()
    trial_end: int | None = None
    pause_collection: bool = False
    cancel_scheduled: bool = False
    discounts: tuple[DiscountSpec, ...] = ()
    past_due_since: int | None = None
    started_at: int | None = None
    ended_at: int | None = None
    cancellation_reason: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "currency", normalize_currency(self.currency))
        items = self.items
        # `replace` re-runs this on every split of an interval: items already typed stay as is.
        if type(items) is not tuple or any(type(i) is not SubscriptionItem for i in items):
            object.__setattr__(self, "items", tuple(SubscriptionItem(*i) for i in items))
        for item in self.items:
            if isinstance(item.quantity, bool) or not isinstance(item.quantity, int):
                raise ValueError(
                    f"subscription {self.subscription_id}: item {item.item_id} quantity must be "
                    f"an int, got {item.quantity!r}"
                )
        if self.valid_to is not None and self.valid_to <= self.valid_from:
            raise ValueError(
                f"subscription {self.subscription_id}: valid_to {self.valid_to} must be after "
                f"valid_from {self.valid_from} (intervals are half-open)"
            )
        if self.status not in KNOWN_STATUSES:
            raise ValueError(f"subscription {self.subscription_id}: unknown status {self.status!r}")


@dataclass(frozen=True)
class Settings:
    """Per-workspace MRR switches (docs/metrics.md §3-4); `plan_key`: price or product as plan."""

    discount_mode: DiscountMode = "all_active"
    count_paused: bool = False
    past_due_grace_days: int | None = None
    tz: str = "UTC"
    week_start: Literal["sunday", "monday"] = "sunday"
    plan_key: Literal["price", "product"] = "price"

    def __post_init__(self) -> None:
        if self.discount_mode not in ("all_active", "forever_only", "none"):
            raise ValueError(
                f"discount_mode {self.discount_mode!r} is not all_active/forever_only/none"
            )
        if self.past_due_grace_days is not None and self.past_due_grace_days < 0:
            raise ValueError("past_due_grace_days must be >= 0")


@dataclass(frozen=True)
class SubscriptionValue:
    """A subscription's contribution on one day: counting flags, MRR, CMRR and per-plan MRR.

    `stop_reason` says why a subscription in force does not count: `delinquent` (non-payment) or
    `voluntary`; None when it counts or is not in force.
    """

    counts: bool = False
    mrr: Exact = 0
    cmrr: Exact = 0
    by_plan: dict[str, Exact] = field(default_factory=dict)
    plans: tuple[str, ...] = ()
    stop_reason: ChurnReason | None = None


NOT_IN_FORCE = SubscriptionValue()


def monthly_factor(interval: str, count: int) -> Fraction:
    """Billing periods per month: per year (365/n day, 52/n week, 12/n month, 1/n year) / 12."""
    if interval not in _PERIODS_PER_YEAR:
        raise ValueError(f"interval {interval!r} must be day, week, month or year")
    if count < 1:
        raise ValueError(f"interval_count must be >= 1, got {count}")
    return Fraction(_PERIODS_PER_YEAR[interval], 12 * count)


def _per_month(interval: str, count: int) -> tuple[int, int]:
    """`monthly_factor` as (numerator, denominator), for integer arithmetic."""
    factor = monthly_factor(interval, count)
    return factor.numerator, factor.denominator


def item_period_amount(price: PriceSpec, quantity: int) -> Exact:
    """Amount per billing period in micro-units, excluding tax and before discounts (§3.1)."""
    if quantity < 0:
        raise ValueError(f"quantity must be >= 0, got {quantity}")
    if price.billing_scheme == "per_unit":
        units = quantity
        tq = price.transform_quantity
        if tq is not None:
            divide_by, rounding = tq
            units = -(-quantity // divide_by) if rounding == "up" else quantity // divide_by
        minor = _decimal(price.unit_amount_decimal) * units
    elif price.tiers_mode == "volume":
        minor = _volume_amount(price.tiers, quantity)
    else:
        minor = _graduated_amount(price.tiers, quantity)
    if price.tax_behavior == "inclusive" and price.inclusive_tax_rate_percent:
        # Tax-inclusive prices carry the tax inside the amount; MRR excludes tax.
        minor = whole(minor / (1 + Fraction(price.inclusive_tax_rate_percent) / 100))
    return minor * micros_per_minor(price.currency)


def _volume_amount(tiers: tuple[TierSpec, ...], quantity: int) -> Exact:
    """All units at the rate of the tier containing the quantity, plus that tier's flat amount."""
    for tier in tiers:
        if tier.up_to is None or quantity <= tier.up_to:
            return _decimal(tier.unit_amount_decimal) * quantity + _decimal(
                tier.flat_amount_decimal
            )
    raise AssertionError("validated tiers always end with up_to=None")


def _graduated_amount(tiers: tuple[TierSpec, ...], quantity: int) -> Exact:
    """Each tier's units at its rate, plus the flat amount of every tier reached.

    The first tier is always reached (also at quantity 0), like the volume tier containing 0.
    """
    total: Exact = 0
    lower = 0
    for index, tier in enumerate(tiers):
        if index > 0 and quantity <= lower:
            break
        upper = quantity if tier.up_to is None else min(quantity, tier.up_to)
        total += _decimal(tier.unit_amount_decimal) * max(0, upper - lower)
        total += _decimal(tier.flat_amount_decimal)
        if tier.up_to is None:
            break
        lower = tier.up_to
    return total


@lru_cache(maxsize=16384)
def item_mrr(price: PriceSpec, quantity: int) -> Exact:
    """An item's MRR in micro-units: period amount x periods per month; metered items give 0.

    Cached per (price, quantity): the same few hundred prices are evaluated on every breakpoint
    of every subscription and billing period (the specs are frozen, the result immutable)."""
    if price.usage_type == "metered":
        return 0
    return scaled(
        item_period_amount(price, quantity), *_per_month(price.interval, price.interval_count)
    )


def plan_key(price: PriceSpec, settings: Settings) -> str:
    """The plan an item belongs to for per-plan summaries (price id or product id)."""
    key = price.product_id if settings.plan_key == "product" else price.price_id
    return key or "unknown"


def billing_interval(state: SubscriptionState) -> tuple[str, int]:
    """The subscription's billing interval: that of its first licensed item (else first item)."""
    licensed = [i for i in state.items if i.price.usage_type == "licensed"]
    chosen = licensed or list(state.items)
    if not chosen:
        return ("month", 1)
    return (chosen[0].price.interval, chosen[0].price.interval_count)


def discount_applies(discount: DiscountSpec, instant: int, mode: DiscountMode) -> bool:
    """True iff the discount is in force just before `instant` and enabled by `discount_mode`."""
    if mode == "none" or (mode == "forever_only" and discount.duration != "forever"):
        return False
    return discount.start < instant and (discount.end is None or instant <= discount.end)


def apply_discounts(
    gross: Exact, state: SubscriptionState, instant: int, settings: Settings
) -> Exact:
    """Net MRR after the discounts in force, applied in order and floored at 0 (§3)."""
    net = gross
    for discount in state.discounts:
        if not discount_applies(discount, instant, settings.discount_mode):
            continue
        if discount.percent_off is not None:
            net = net * (1 - Fraction(discount.percent_off) / 100)
        if discount.amount_off is not None:
            currency = discount.currency or state.currency
            if normalize_currency(currency) != state.currency:
                # Stripe never applies an amount_off coupon in another currency to an invoice.
                continue
            per_month = _per_month(*billing_interval(state))
            net = net - scaled(discount.amount_off * micros_per_minor(state.currency), *per_month)
        net = max(0, whole(net))
    # A percentage followed by a coupon in another currency skips the floor: whole() here too.
    return whole(net)


def grace_expiry(state: SubscriptionState, settings: Settings) -> int | None:
    """The instant a past_due subscription stops counting under `past_due_grace_days`, if any."""
    if (
        settings.past_due_grace_days is None
        or state.status != "past_due"
        or state.past_due_since is None
    ):
        return None
    return state.past_due_since + settings.past_due_grace_days * SECONDS_PER_DAY


def in_force_before(state: SubscriptionState, instant: int) -> bool:
    """True iff the state is in force just before `instant` (valid_from < instant <= valid_to)."""
    return state.valid_from < instant and (state.valid_to is None or instant <= state.valid_to)


def _stop_reason(state: SubscriptionState, instant: int, settings: Settings) -> ChurnReason | None:
    """None when the subscription counts just before `instant`; else why it does not."""
    delinquent: ChurnReason = "delinquent"
    voluntary: ChurnReason = "voluntary"
    if state.cancellation_reason in NON_PAYMENT_CANCELLATION_REASONS and state.status not in (
        COUNTING_STATUSES
    ):
        return delinquent
    if state.started_at is not None and not state.started_at < instant:
        return voluntary
    if state.ended_at is not None and not instant <= state.ended_at:
        return voluntary
    if state.status == "unpaid":
        return delinquent
    if state.status not in COUNTING_STATUSES:
        return voluntary
    if state.trial_end is not None and not state.trial_end < instant:
        return voluntary
    if state.pause_collection and not settings.count_paused:
        return voluntary
    expiry = grace_expiry(state, settings)
    if expiry is not None and not instant <= expiry:
        return delinquent
    return None


def evaluate_at(state: SubscriptionState, instant: int, settings: Settings) -> SubscriptionValue:
    """A state's contribution just before `instant` (an S(D+1)); zero when not in force."""
    if not in_force_before(state, instant):
        return NOT_IN_FORCE
    reason = _stop_reason(state, instant, settings)
    if reason is not None:
        return SubscriptionValue(stop_reason=reason)
    gross_by_plan: dict[str, Exact] = {}
    plans: list[str] = []
    for item in state.items:
        key = plan_key(item.price, settings)
        if key not in plans:
            plans.append(key)
        value = item_mrr(item.price, item.quantity)
        if value:
            gross_by_plan[key] = gross_by_plan[key] + value if key in gross_by_plan else value
    gross = whole(sum(gross_by_plan.values(), 0))
    net = apply_discounts(gross, state, instant, settings) if state.discounts else gross
    # Discounts are per subscription; spread them over plans pro rata so plans sum to the total
    # (without a discount in force, each plan's share is its gross: no division).
    if not net:
        by_plan = {}
    elif net == gross:
        by_plan = {k: whole(v) for k, v in gross_by_plan.items()}
    else:
        by_plan = {k: whole(Fraction(v) * net / gross) for k, v in gross_by_plan.items()}
    cmrr = 0 if state.cancel_scheduled else net
    return SubscriptionValue(True, net, cmrr, by_plan, tuple(sorted(plans)), None)


def end_of_day_instant(day: date, tz: str) -> int:
    """S(D+1): values "on D" are those just before this instant (§1)."""
    return day_start_ts(day + timedelta(days=1), tz)


def subscription_value(
    state: SubscriptionState, at_day: date, settings: Settings
) -> SubscriptionValue:
    """A state's full contribution on local day `at_day` (zero if the state is not in force)."""
    return evaluate_at(state, end_of_day_instant(at_day, settings.tz), settings)


def subscription_mrr(state: SubscriptionState, at_day: date, settings: Settings) -> Fraction:
    """sub_MRR on `at_day` in micro-units: max(0, items - discounts) when it counts, else 0 (§3)."""
    return subscription_value(state, at_day, settings).mrr


def subscription_cmrr(state: SubscriptionState, at_day: date, settings: Settings) -> Fraction:
    """Committed MRR on `at_day`: sub_MRR unless a cancellation is scheduled (§4)."""
    return subscription_value(state, at_day, settings).cmrr


def subscription_counts(state: SubscriptionState, at_day: date, settings: Settings) -> bool:
    """True iff the subscription is an active (counting) subscription on `at_day` (§3)."""
    return counts_at(state, end_of_day_instant(at_day, settings.tz), settings)


def counts_at(state: SubscriptionState, instant: int, settings: Settings) -> bool:
    """`evaluate_at(state, instant, settings).counts` without computing the MRR: in force just
    before `instant` and no reason to stop counting."""
    return in_force_before(state, instant) and _stop_reason(state, instant, settings) is None


def state_breakpoints(state: SubscriptionState, settings: Settings) -> set[int]:
    """Every instant at which this state's contribution can change (edges and inner instants)."""
    points = {state.valid_from}
    optional = [state.valid_to, state.trial_end, state.started_at, state.ended_at]
    optional.append(grace_expiry(state, settings))
    for discount in state.discounts:
        optional.extend((discount.start, discount.end))
    points.update(p for p in optional if p is not None)
    return points
