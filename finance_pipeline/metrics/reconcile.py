"""Reconciliation of invoices with MRR (docs/metrics.md §4): each period's non-proration subscription
lines, normalized to a month, should equal that subscription's MRR at the period's start.

Like with like under `discount_mode` (§3): an invoice line subtracts every discount Stripe applied,
while the workspace's MRR counts only the discounts its switch enables. So a line is taken before
discounts and minus only the discount amounts of the discounts the switch counts (`none`: none,
`forever_only`: forever coupons, `all_active`: all), then compared with MRR under that switch.
Each discount amount on a line is Stripe's own, so this is exact unless a discount the switch drops
comes before a counted one (a counted percentage then applied to a base already reduced) or a
discount cannot be identified; such a period compares the whole line, after all its discounts,
with MRR under all discounts in force, which is always exact.

What the workspace's switches define rather than bill is compared as billed: a paused
subscription (`count_paused = false`) or one past its `past_due_grace_days` still gets invoices
(uncollectible, or awaiting payment), so it is compared with the MRR it has when it counts; and a
subscription created `incomplete` counts from its first payment, so its first period is compared
with the MRR in force once that invoice was paid.

Known approximations: before the workspace's history is complete (its first stored Stripe event;
events are kept from there on, so every later change is seen), states are rebuilt from invoices and
lifecycle fields (§4, "History", 3.), and changes Stripe does not invoice show there only from the
next invoice. A disagreement in a period starting earlier is listed as an approximation; only the
later ones are unexplained mismatches.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from finance_pipeline.core.history_io import HISTORY_SELECT, states_from_rows
from finance_pipeline.lib.money import micros_to_decimal, minor_to_micros
from finance_pipeline.lib.mrr import Exact, Settings, evaluate_at, monthly_factor, scaled, whole
from finance_pipeline.lib.timeutil import local_day
from finance_pipeline.warehouse.db import Warehouse


@dataclass(frozen=True)
class LineMismatch:
    """A billing period whose invoiced amount per month disagrees with the MRR at its start
    (native currency, exact micro-units)."""

    subscription_id: str
    period_start: int
    invoiced_monthly_micros: Fraction
    mrr_micros: Fraction
    customer_id: str = ""
    currency: str = "usd"
    period_end: int | None = None

    def describe(self, tz: str = "UTC") -> dict[str, str]:
        """Readable fields: ISO local dates and 2-decimal amounts with the currency."""
        end = "" if self.period_end is None else local_day(self.period_end, tz).isoformat()
        return {
            "customer": self.customer_id,
            "subscription": self.subscription_id,
            "period": f"{local_day(self.period_start, tz).isoformat()} to {end}".strip(),
            "invoiced_per_month": format_amount(self.invoiced_monthly_micros, self.currency),
            "mrr": format_amount(self.mrr_micros, self.currency),
            "difference": format_amount(
                self.invoiced_monthly_micros - self.mrr_micros, self.currency
            ),
        }


@dataclass(frozen=True)
class InvoiceReconciliation:
    """The outcome over a window: lines and periods compared, the disagreements explained by the
    invoice-rebuilt history (`approximations`) and the unexplained ones (`mismatches`)."""

    lines_checked: int = 0
    periods_compared: int = 0
    approximations: list[LineMismatch] = field(default_factory=list)
    mismatches: list[LineMismatch] = field(default_factory=list)
    # The first stored Stripe event (None: none stored, every period is rebuilt from invoices).
    history_complete_from: int | None = None


def format_amount(micros: Fraction | int, currency: str) -> str:
    """Micro-units as a 2-decimal amount with the currency code, e.g. `195.00 USD`."""
    return f"{micros_to_decimal(micros)} {currency.upper()}"


def _ref(value: Any) -> str | None:
    """An expandable Stripe reference's id."""
    if value is None:
        return None
    return value.get("id") if isinstance(value, Mapping) else str(value)


def _duration(discount: Any) -> str | None:
    """The coupon duration of an expanded discount (new `source.coupon` or old `coupon` shape)."""
    if not isinstance(discount, Mapping):
        return None
    coupon = (discount.get("source") or {}).get("coupon") or discount.get("coupon")
    return coupon.get("duration") if isinstance(coupon, Mapping) else None


def _counts(duration: str | None, settings: Settings) -> bool | None:
    """Whether the workspace's MRR counts a discount of this coupon duration (§3); None when
    that depends on a duration not known."""
    if settings.discount_mode in ("all_active", "none"):
        return settings.discount_mode == "all_active"
    return None if duration is None else duration == "forever"


@dataclass
class _Period:
    customer_id: str
    currency: str
    period_end: int | None = None
    under_switch: Exact = 0  # after the discounts the switch counts
    after_all: Exact = 0  # after every discount (the invoice as billed)
    separable: bool = True  # under_switch is exact
    paid_at: int | None = None


# Subscriptions compared at once: the check's memory (invoice lines with their JSON discounts and
# taxes, and the subscriptions' histories) is bounded by a batch, not by the workspace.
INVOICE_CHECK_BATCH_SUBSCRIPTIONS = 2000


def invoice_mrr_mismatches(
    wh: Warehouse,
    workspace_id: str,
    settings: Settings,
    periods_from: int | None = None,
    periods_to: int | None = None,
    *,
    batch_subscriptions: int | None = None,
) -> InvoiceReconciliation:
    """Compare the non-proration, non-metered subscription periods starting in
    [periods_from, periods_to) (epoch seconds; every period when omitted) with MRR, so a daily run
    checks its window's renewals, not the whole history.

    Periods are per subscription, so subscriptions are compared `batch_subscriptions` (default
    INVOICE_CHECK_BATCH_SUBSCRIPTIONS) at a time, by ranges of subscription ids, and the batches'
    counts and lists added up: the same outcome as one pass over the workspace."""
    if batch_subscriptions is None:
        batch_subscriptions = INVOICE_CHECK_BATCH_SUBSCRIPTIONS
    if batch_subscriptions < 1:
        raise ValueError("batch_subscriptions must be at least 1")
    # Events are kept from the first one on (index on workspace_id, created): one cheap lookup.
    complete_from = wh.scalar(
        "SELECT MIN(created) FROM raw.stripe_events WHERE workspace_id = :w", w=workspace_id
    )
    complete_from = None if complete_from is None else int(complete_from)
    # Batch bounds from the stored histories (their primary key's index, no table read), in the
    # database's own order so that the ranges below cover every subscription id exactly once,
    # including lines of subscriptions without a history.
    subs = wh.rows(
        "SELECT DISTINCT subscription_id AS s FROM core.subscription_history"
        " WHERE workspace_id = :w ORDER BY subscription_id",
        w=workspace_id,
    )
    bounds = [r["s"] for r in subs[batch_subscriptions::batch_subscriptions]]
    del subs
    prices = {
        r["id"]: r
        for r in wh.rows(
            "SELECT id, recurring_interval, recurring_interval_count, usage_type, tax_behavior"
            " FROM raw.stripe_prices WHERE workspace_id = :w",
            w=workspace_id,
        )
    }
    checked = compared = 0
    approximations: list[LineMismatch] = []
    mismatches: list[LineMismatch] = []
    for k in range(len(bounds) + 1):
        # Batch k: ids in [bounds[k-1], bounds[k]); one batch (no bound) reads as before.
        lo = bounds[k - 1] if k > 0 else None
        hi = bounds[k] if k < len(bounds) else None
        lines, periods, found = _check_batch(
            wh, workspace_id, settings, periods_from, periods_to, lo, hi, prices
        )
        checked += lines
        compared += periods
        for m in found:
            # Before the first stored event the history was rebuilt from invoices: explained.
            approximate = complete_from is None or m.period_start < complete_from
            (approximations if approximate else mismatches).append(m)
    # The order of one pass (by subscription and period start), whatever the database's collation.
    approximations.sort(key=_period_key)
    mismatches.sort(key=_period_key)
    return InvoiceReconciliation(checked, compared, approximations, mismatches, complete_from)


def _period_key(m: LineMismatch) -> tuple[str, int]:
    return (m.subscription_id, m.period_start)


def _check_batch(
    wh: Warehouse,
    workspace_id: str,
    settings: Settings,
    periods_from: int | None,
    periods_to: int | None,
    lo: str | None,
    hi: str | None,
    prices: Mapping[str, Mapping[str, Any]],
) -> tuple[int, int, list[LineMismatch]]:
    """One batch of `invoice_mrr_mismatches`, the subscriptions with ids in [lo, hi) (None: no
    bound): lines checked, periods compared and the disagreeing periods in order."""
    window = ""
    params: dict[str, Any] = {"w": workspace_id, "f": False}
    if periods_from is not None:
        window += " AND l.period_start >= :pa"
        params["pa"] = periods_from
    if periods_to is not None:
        window += " AND l.period_start < :pb"
        params["pb"] = periods_to
    bound = ""
    if lo is not None:
        bound += " AND l.subscription >= :lo"
        params["lo"] = lo
    if hi is not None:
        bound += " AND l.subscription < :hi"
        params["hi"] = hi
    lines = wh.rows(
        "SELECT l.subscription, l.price, l.amount, l.currency, l.period_start, l.period_end,"
        " i.status, i.customer, i.paid_at, "
        f"{wh.json_field('l.payload', 'discount_amounts')} AS discount_amounts_json, "
        f"{wh.json_field('l.payload', 'taxes')} AS taxes_json, "
        f"{wh.json_field('i.payload', 'discounts')} AS invoice_discounts_json"
        " FROM raw.stripe_invoice_lines l JOIN raw.stripe_invoices i"
        " ON i.workspace_id = l.workspace_id AND i.id = l.invoice"
        " WHERE l.workspace_id = :w AND l.subscription IS NOT NULL AND l.proration = :f"
        + window
        + bound,
        **params,
    )
    subscriptions = {ln["subscription"] for ln in lines}
    if not subscriptions:
        return 0, 0, []
    history_sql = HISTORY_SELECT + " WHERE workspace_id = :w"
    history_params: dict[str, Any] = {"w": workspace_id}
    if not window:
        # Every period: the batch's whole range of histories, without a list of ids.
        if lo is not None:
            history_sql += " AND subscription_id >= :lo"
            history_params["lo"] = lo
        if hi is not None:
            history_sql += " AND subscription_id < :hi"
            history_params["hi"] = hi
    states = defaultdict(list)
    for st in states_from_rows(
        wh.rows_in(
            history_sql,
            "subscription_id",
            subscriptions if window else None,
            **history_params,
        )
    ):
        states[st.subscription_id].append(st)
    periods: dict[tuple[str, int], _Period] = {}
    checked = 0
    for ln in lines:
        price = prices.get(ln["price"])
        if price is None or price["usage_type"] == "metered" or ln["status"] in ("void", "draft"):
            continue
        checked += 1
        durations = {_ref(d): _duration(d) for d in ln["invoice_discounts_json"] or () if _ref(d)}
        amount = int(ln["amount"])
        after_all = amount
        under_switch = amount
        separable = True
        dropped = False
        for d in ln["discount_amounts_json"] or ():
            counted = _counts(durations.get(_ref(d.get("discount"))), settings)
            after_all -= int(d["amount"])
            if counted is None:
                separable = False  # unknown coupon: cannot tell whether the switch counts it
            elif counted:
                under_switch -= int(d["amount"])
                # A counted amount computed on a base a dropped discount already reduced.
                separable = separable and not dropped
            else:
                dropped = True
        # Inclusive tax is computed on the line after all its discounts: take it out of each
        # amount in the same proportion (exact for after_all, the amount Stripe taxed).
        inclusive = sum(
            int(t.get("amount") or 0)
            for t in ln["taxes_json"] or ()
            if t.get("tax_behavior") == "inclusive"
        )
        # Exact values stay ints while whole (lib.mrr.Exact): most lines have no inclusive tax.
        excl_under_switch: Exact = under_switch
        if inclusive:
            if after_all:
                excl_under_switch = whole(
                    under_switch - Fraction(inclusive * under_switch, after_all)
                )
            else:
                separable = False
        factor = monthly_factor(
            price["recurring_interval"] or "month", int(price["recurring_interval_count"] or 1)
        )
        key = (ln["subscription"], int(ln["period_start"]))
        per = periods.get(key)
        if per is None:
            per = periods[key] = _Period(str(ln["customer"] or ""), ln["currency"])
        if ln["paid_at"] is not None:
            per.paid_at = int(ln["paid_at"])
        if ln["period_end"] is not None:
            per.period_end = max(per.period_end or 0, int(ln["period_end"]))
        micros = minor_to_micros(1, ln["currency"]) * factor.numerator
        per.after_all = whole(
            per.after_all + scaled(after_all - inclusive, micros, factor.denominator)
        )
        per.under_switch = whole(
            per.under_switch + scaled(excl_under_switch, micros, factor.denominator)
        )
        per.separable = per.separable and separable
    # A subscription's intervals do not overlap: the one in force just after an instant is the
    # last starting before it, found by bisection instead of evaluating every interval.
    starts = {}
    for sub, seq in states.items():
        seq.sort(key=lambda st: st.valid_from)
        starts[sub] = [st.valid_from for st in seq]
    # Pauses and expired past-due grace stop a subscription that Stripe still bills (an
    # uncollectible invoice, a renewal awaiting payment): by definition, not a billing disagreement.
    billed = dataclasses.replace(settings, count_paused=True, past_due_grace_days=None)
    all_discounts = dataclasses.replace(billed, discount_mode="all_active")
    found_periods: list[LineMismatch] = []
    for (sub, start), per in sorted(periods.items()):
        exact_switch = per.separable
        invoiced = per.under_switch if exact_switch else per.after_all
        seq, at = states.get(sub, []), starts.get(sub, [])
        # The state in force just after the period starts (the renewal's own instant).
        i = bisect.bisect_left(at, start + 1) - 1
        instant = start + 1
        paid = per.paid_at
        if i >= 0 and seq[i].status == "incomplete" and paid is not None and paid > start:
            # A subscription created incomplete counts from its first payment (§3).
            instant = paid + 1
            i = bisect.bisect_left(at, instant) - 1
        value = (
            evaluate_at(seq[i], instant, billed if exact_switch else all_discounts).mrr
            if i >= 0
            else Fraction(0)
        )
        if abs(value - invoiced) > 1:  # within a micro-unit: per-line rounding of Stripe cents
            found = LineMismatch(
                sub, start, invoiced, value, per.customer_id, per.currency, per.period_end
            )
            found_periods.append(found)
    return checked, len(periods), found_periods
