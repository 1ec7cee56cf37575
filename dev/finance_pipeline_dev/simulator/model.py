"""The simulator's internal timeline: the true state of every subscription at every instant.

This is plain data shared by the history generator (which records it while it emits Stripe objects)
and the ground-truth oracle (`sim_truth`, which reads nothing else). All instants are integer Unix
seconds; every state is valid on the half-open interval ``[start, end)`` (``end=None``: still in
force at the simulation clock). Money is in the currency's Stripe minor unit (JPY: whole yen), as
Decimal where Stripe allows fractional minor units (``unit_amount_decimal``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal


@dataclass(frozen=True)
class Tier:
    """One price tier; ``up_to`` is inclusive, ``None`` means infinity."""

    up_to: int | None
    unit_amount_decimal: Decimal
    flat_amount_decimal: Decimal = Decimal(0)


@dataclass(frozen=True)
class PriceModel:
    """A recurring Stripe price, reduced to what determines the amount per billing period."""

    id: str
    currency: str
    interval: str  # day | week | month | year
    interval_count: int = 1
    usage_type: str = "licensed"  # licensed | metered
    billing_scheme: str = "per_unit"  # per_unit | tiered
    unit_amount_decimal: Decimal | None = None
    tiers_mode: str | None = None  # graduated | volume
    tiers: tuple[Tier, ...] = ()
    transform_divide_by: int | None = None
    transform_round: str = "up"  # up | down
    tax_behavior: str = "unspecified"  # exclusive | inclusive | unspecified
    # The tax rate (percent) contained in an inclusive price; MRR excludes it (docs/metrics.md §3).
    inclusive_tax_percent: Decimal | None = None
    product_id: str = ""
    nickname: str = ""


@dataclass(frozen=True)
class CouponModel:
    """A coupon: exactly one of ``percent_off`` / ``amount_off`` (minor units of ``currency``)."""

    id: str
    duration: str  # forever | repeating | once
    percent_off: Decimal | None = None
    amount_off: int | None = None
    currency: str | None = None
    duration_in_months: int | None = None


@dataclass(frozen=True)
class DiscountSpan:
    """A discount on a subscription, in force for MRR on ``[start, end)`` (docs/metrics.md §3).

    forever: no end (or the instant it was removed); repeating: Stripe's ``start .. end``; once:
    the whole first billing period it applied to.
    """

    id: str
    coupon: CouponModel
    start: int
    end: int | None


@dataclass(frozen=True)
class ItemState:
    """A subscription item as it is during one state: a price times a quantity."""

    item_id: str
    price: PriceModel
    quantity: int


@dataclass(frozen=True)
class SubState:
    """A subscription's MRR-relevant state, valid on ``[start, end)``.

    ``paused``: a ``pause_collection`` is in force. ``delinquent``: the state was reached through
    non-payment (``unpaid``, or canceled after failed payments). ``cancel_scheduled``: a
    cancellation is scheduled (``cancel_at_period_end`` / ``cancel_at``), for committed MRR.
    """

    start: int
    end: int | None
    status: str
    items: tuple[ItemState, ...]
    paused: bool = False
    cancel_scheduled: bool = False
    delinquent: bool = False


@dataclass
class SubTimeline:
    """Everything the oracle needs about one subscription: contiguous states and discount spans."""

    account_id: str
    customer_id: str
    subscription_id: str
    currency: str
    states: list[SubState] = field(default_factory=list)
    discounts: list[DiscountSpan] = field(default_factory=list)


@dataclass(frozen=True)
class ManualRecurring:
    """A manual recurring revenue entry (``type subscription``): one month of MRR for 30 days."""

    customer_id: str  # "manual" for entries without a customer (docs/metrics.md §4)
    day: date
    amount_micros: int
    currency: str
