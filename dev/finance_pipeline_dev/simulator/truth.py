"""Simulator ground truth: MRR per customer and day, and daily movements (docs/metrics.md §3-5).

An independent oracle. It reads only the simulator's internal timeline (`sim_model`) and the FX
rates the simulator emits, and imports nothing from the pipeline except the money/time helpers.
Defaults of docs/metrics.md apply: ``discount_mode = all_active``, ``count_paused = false``, no
``past_due_grace_days``.

Exactness. Native MRR is an exact ``Fraction`` of micro-units of the customer's currency (a weekly
price gives amount x 52/12, which is not integral). The value on local day D is the state in force
on D: the state covering the instant ``S(D+1) - 1`` (integer seconds), i.e. ``from < S(D+1) <= to``.
Conversion: ``MRR_c(D)`` in the reporting currency is ``native x rate(currency, D)`` with the exact
``Decimal`` rate written to the FX CSV (``rate(reporting, D) = 1``); products stay exact Fractions.
Nothing is rounded here: callers round once at their reporting grain.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import gc
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from finance_pipeline.lib.money import micros_per_minor
from finance_pipeline.lib.timeutil import day_start_ts, local_day

from .model import DiscountSpan, ManualRecurring, PriceModel, SubState, SubTimeline

#: Billing periods per year for interval_count = 1 (docs/metrics.md §3.2).
PERIODS_PER_YEAR = {"day": 365, "week": 52, "month": 12, "year": 1}
COUNTING_STATUSES = frozenset({"active", "past_due"})
MANUAL_ACCOUNT = ""  # workspace-level manual revenue has no Stripe account
MANUAL_CUSTOMER = "manual"

MrrValue = int | Fraction
MrrChange = tuple[str, str, date, str, MrrValue]
Movement = tuple[str, str, date, str, Fraction, str | None]


# --------------------------------------------------------------------------- amounts (§3)


def item_period_amount_minor(price: PriceModel, quantity: int) -> Fraction:
    """Amount per billing period before tax extraction and discounts, in minor units (§3.1)."""
    if price.billing_scheme == "per_unit":
        units = quantity
        if price.transform_divide_by:
            whole, rest = divmod(quantity, price.transform_divide_by)
            units = whole + (1 if rest and price.transform_round == "up" else 0)
        return Fraction(price.unit_amount_decimal or 0) * units
    if price.tiers_mode == "volume":
        for tier in price.tiers:
            if tier.up_to is None or quantity <= tier.up_to:
                return Fraction(tier.unit_amount_decimal) * quantity + Fraction(
                    tier.flat_amount_decimal
                )
        raise ValueError(f"price {price.id}: no tier holds quantity {quantity}")
    if price.tiers_mode == "graduated":
        total = Fraction(0)
        below = 0
        for tier in price.tiers:
            top = quantity if tier.up_to is None else min(quantity, tier.up_to)
            units = top - below
            if units <= 0:
                break
            total += Fraction(tier.unit_amount_decimal) * units + Fraction(tier.flat_amount_decimal)
            below = top
        return total
    raise ValueError(f"price {price.id}: unknown billing scheme")


def monthly_factor(interval: str, interval_count: int) -> Fraction:
    """Periods per year / 12: multiply a per-period amount by this to get a monthly amount."""
    return Fraction(PERIODS_PER_YEAR[interval], 12 * interval_count)


def item_mrr_micros(price: PriceModel, quantity: int) -> Fraction:
    """One item's MRR before discounts, excluding tax, in micro-units (§3; metered gives 0)."""
    if price.usage_type == "metered":
        return Fraction(0)
    amount = item_period_amount_minor(price, quantity) * micros_per_minor(price.currency)
    if price.tax_behavior == "inclusive" and price.inclusive_tax_percent:
        amount /= 1 + Fraction(price.inclusive_tax_percent) / 100
    return amount * monthly_factor(price.interval, price.interval_count)


def state_mrr_micros(state: SubState, discounts: Iterable[DiscountSpan]) -> Fraction:
    """``sub_MRR`` for a state: 0 unless it counts; else max(0, items - discounts in order)."""
    if state.status not in COUNTING_STATUSES or state.paused:
        return Fraction(0)
    gross = sum((item_mrr_micros(i.price, i.quantity) for i in state.items), Fraction(0))
    licensed = [i.price for i in state.items if i.price.usage_type == "licensed"]
    value = gross
    for span in discounts:
        coupon = span.coupon
        if coupon.percent_off is not None:
            value -= value * Fraction(coupon.percent_off) / 100
        elif coupon.amount_off is not None and licensed:
            # amount_off is per invoice: normalize with the subscription's billing interval.
            ref = licensed[0]
            value -= (
                coupon.amount_off
                * micros_per_minor(coupon.currency or ref.currency)
                * monthly_factor(ref.interval, ref.interval_count)
            )
        value = max(Fraction(0), value)
    return value


def state_at(tl: SubTimeline, ts: int) -> SubState | None:
    """The state covering instant ``ts`` (``start <= ts < end``), or None outside the timeline."""
    for st in tl.states:
        if st.start <= ts and (st.end is None or ts < st.end):
            return st
    return None


def discounts_at(tl: SubTimeline, ts: int) -> list[DiscountSpan]:
    """Discount spans in force at instant ``ts``, in application order (by start)."""
    live = [d for d in tl.discounts if d.start <= ts and (d.end is None or ts < d.end)]
    return sorted(live, key=lambda d: (d.start, d.id))


def sub_mrr_at(tl: SubTimeline, ts: int) -> Fraction:
    """Native ``sub_MRR`` (micro-units) at an instant."""
    st = state_at(tl, ts)
    return Fraction(0) if st is None else state_mrr_micros(st, discounts_at(tl, ts))


@lru_cache(maxsize=65536)
def _eod(day: date, tz: str) -> int:
    """The last integer second of local day D: the state in force on D is the one covering it."""
    return day_start_ts(day + timedelta(days=1), tz) - 1


def sub_mrr_on(tl: SubTimeline, day: date, tz: str = "UTC") -> Fraction:
    """Native ``sub_MRR`` on local day D (the end-of-day state, docs/metrics.md §1)."""
    return sub_mrr_at(tl, _eod(day, tz))


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic GC: big histories are millions of acyclic objects and GC passes dominate."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _without_gc(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with gc_paused():
            return fn(*args, **kwargs)

    return run


def _as_value(v: Fraction) -> MrrValue:
    return v.numerator if v.denominator == 1 else v


def frac_str(v: Fraction | int | Decimal) -> str:
    """An exact value as text: "123" or "num/den"."""
    f = Fraction(v)
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"


# --------------------------------------------------------------------------- the oracle (§4-5)


@dataclass
class GroundTruth:
    """Daily MRR (as change rows) and movements, exact, from the simulator's own timeline.

    ``mrr_changes`` rows are ``(account_id, customer_id, day, currency, mrr_micros)``: one row each
    time a customer's end-of-day native MRR changes (including to 0); ``mrr_micros`` is an int when
    integral, else a ``Fraction``. Manual recurring revenue, when given, appears under account
    ``""`` and customer ``"manual"`` (docs/metrics.md §4). ``movements`` rows are
    ``(account_id, customer_id, day, type, amount_reporting, tag)`` with type in new, expansion,
    reactivation, contraction, churn, fx; tag is ``delinquent``/``voluntary`` for churn, else None.
    """

    reporting_currency: str
    tz: str
    first_day: date
    last_day: date
    mrr_changes: list[MrrChange]
    fx_rates: dict[tuple[str, date], Decimal]
    customer_currency: dict[tuple[str, str], str]
    churn_tags: dict[tuple[str, str, date], str]
    timelines: dict[str, SubTimeline] = field(default_factory=dict, repr=False)

    def rate(self, currency: str, day: date) -> Decimal:
        """Units of reporting currency per unit of ``currency`` on local day D (exact)."""
        if currency == self.reporting_currency:
            return Decimal(1)
        return self.fx_rates[(currency, day)]

    @cached_property
    @_without_gc
    def _by_customer(self) -> dict[tuple[str, str], tuple[list[date], list[Fraction]]]:
        out: dict[tuple[str, str], tuple[list[date], list[Fraction]]] = {}
        for acct, cust, day, _cur, v in self.mrr_changes:
            days, vals = out.setdefault((acct, cust), ([], []))
            days.append(day)
            vals.append(Fraction(v))
        return out

    def daily_mrr(self, account_id: str, customer_id: str, day: date) -> Fraction:
        """A customer's native end-of-day MRR on D, in micro-units of their currency."""
        series = self._by_customer.get((account_id, customer_id))
        if series is None:
            return Fraction(0)
        i = bisect.bisect_right(series[0], day) - 1
        return series[1][i] if i >= 0 else Fraction(0)

    def customer_mrr_reporting(self, account_id: str, customer_id: str, day: date) -> Fraction:
        """``MRR_c(D)`` in reporting-currency micro-units: native x rate(D)."""
        native = self.daily_mrr(account_id, customer_id, day)
        if not native:
            return Fraction(0)
        cur = self.customer_currency[(account_id, customer_id)]
        return native * Fraction(self.rate(cur, day))

    @cached_property
    @_without_gc
    def _totals(self) -> dict[tuple[str, str], tuple[list[date], list[Fraction]]]:
        """Per (account, currency): native MRR total as a step function of the day."""
        deltas: dict[tuple[str, str], dict[date, Fraction]] = defaultdict(
            lambda: defaultdict(Fraction)
        )
        last: dict[tuple[str, str], Fraction] = {}
        for acct, cust, day, cur, v in self.mrr_changes:
            prev = last.get((acct, cust), Fraction(0))
            deltas[(acct, cur)][day] += Fraction(v) - prev
            last[(acct, cust)] = Fraction(v)
        out: dict[tuple[str, str], tuple[list[date], list[Fraction]]] = {}
        for key, by_day in deltas.items():
            days = sorted(by_day)
            run = Fraction(0)
            vals = []
            for d in days:
                run += by_day[d]
                vals.append(run)
            out[key] = (days, vals)
        return out

    def company_mrr(
        self, day: date, account_id: str | None = None, include_manual: bool = True
    ) -> Fraction:
        """Company ``MRR(D)`` in reporting-currency micro-units (exact; round once to report)."""
        total = Fraction(0)
        for (acct, cur), (days, vals) in self._totals.items():
            if account_id is not None and acct != account_id:
                continue
            if not include_manual and acct == MANUAL_ACCOUNT:
                continue
            i = bisect.bisect_right(days, day) - 1
            if i >= 0 and vals[i]:
                total += vals[i] * Fraction(self.rate(cur, day))
        return total

    def company_mrr_series(self, include_manual: bool = True) -> list[tuple[date, Fraction]]:
        """Company MRR for every day of the history."""
        out = []
        d = self.first_day
        while d <= self.last_day:
            out.append((d, self.company_mrr(d, include_manual=include_manual)))
            d += timedelta(days=1)
        return out

    @cached_property
    @_without_gc
    def movements_excluding_fx(self) -> list[Movement]:
        """new / expansion / reactivation / contraction / churn rows (they only occur on changes)."""
        rows: list[Movement] = []
        for (acct, cust), (days, vals) in self._by_customer.items():
            cur = self.customer_currency[(acct, cust)]
            p = Fraction(0)
            had = False
            for d, q in zip(days, vals, strict=True):
                r = Fraction(self.rate(cur, d))
                if p == 0 and q > 0:
                    rows.append((acct, cust, d, "reactivation" if had else "new", q * r, None))
                    had = True
                elif p > 0 and q == 0:
                    tag = self.churn_tags.get((acct, cust, d), "voluntary")
                    rows.append((acct, cust, d, "churn", p * r, tag))
                elif p > 0 and q > p:
                    rows.append((acct, cust, d, "expansion", (q - p) * r, None))
                elif p > 0 and q < p:
                    rows.append((acct, cust, d, "contraction", (p - q) * r, None))
                p = q
        rows.sort(key=lambda r: (r[2], r[0], r[1], r[3]))
        return rows

    @cached_property
    @_without_gc
    def movements(self) -> list[Movement]:
        """All daily per-customer movements in the reporting currency (docs/metrics.md §5), exact.

        Adds to ``movements_excluding_fx`` one ``fx`` row per customer and day D with
        ``MRR_c(D-1) > 0`` in a non-reporting currency and a rate change: ``p x (r - r')``.
        """
        rows = list(self.movements_excluding_fx)
        one_day = timedelta(days=1)
        for (acct, cust), (days, vals) in self._by_customer.items():
            cur = self.customer_currency[(acct, cust)]
            if cur == self.reporting_currency:
                continue
            for i, p in enumerate(vals):
                if p == 0:
                    continue
                # p is MRR(D-1) for D from the day after this change up to the next change day.
                stop = days[i + 1] if i + 1 < len(days) else self.last_day
                d = days[i] + one_day
                prev_rate = Fraction(self.rate(cur, days[i]))
                while d <= stop:
                    rate = Fraction(self.rate(cur, d))
                    if rate != prev_rate:
                        rows.append((acct, cust, d, "fx", p * (rate - prev_rate), None))
                    prev_rate = rate
                    d += one_day
        rows.sort(key=lambda r: (r[2], r[0], r[1], r[3]))
        return rows

    def fx_total(self, day: date) -> Fraction:
        """The day's total fx movement: per currency, MRR(D-1) native x (rate(D) - rate(D-1))."""
        total = Fraction(0)
        before = day - timedelta(days=1)
        for (_acct, cur), (days, vals) in self._totals.items():
            if cur == self.reporting_currency:
                continue
            i = bisect.bisect_right(days, before) - 1
            if i >= 0 and vals[i]:
                total += vals[i] * (
                    Fraction(self.rate(cur, day)) - Fraction(self.rate(cur, before))
                )
        return total

    def movement_totals(self, day: date) -> dict[str, Fraction]:
        """Sum of each movement type on day D (reporting micro-units); fx from currency totals."""
        out: dict[str, Fraction] = defaultdict(Fraction)
        for row in self._nonfx_by_day.get(day, ()):
            out[row[3]] += row[4]
        fx = self.fx_total(day)
        if fx:
            out["fx"] = fx
        return dict(out)

    @cached_property
    def _nonfx_by_day(self) -> dict[date, list[Movement]]:
        out: dict[date, list[Movement]] = defaultdict(list)
        for row in self.movements_excluding_fx:
            out[row[2]].append(row)
        return out

    def to_json(self, with_movements: bool = True) -> dict[str, Any]:
        """A JSON-ready dict; exact values are strings ("123" or "num/den")."""
        doc: dict[str, Any] = {
            "reporting_currency": self.reporting_currency,
            "tz": self.tz,
            "first_day": self.first_day.isoformat(),
            "last_day": self.last_day.isoformat(),
            "units": "micro-units (1 unit = 1,000,000); exact values as 'n' or 'num/den'",
            "mrr_changes": [
                [a, c, d.isoformat(), cur, frac_str(v)] for a, c, d, cur, v in self.mrr_changes
            ],
            "fx_rates": [
                [cur, d.isoformat(), str(r)] for (cur, d), r in sorted(self.fx_rates.items())
            ],
            "company_mrr": [[d.isoformat(), frac_str(v)] for d, v in self.company_mrr_series()],
        }
        if with_movements:
            doc["movements"] = [
                [a, c, d.isoformat(), t, frac_str(v), tag] for a, c, d, t, v, tag in self.movements
            ]
        return doc

    def write(self, path: str | Path) -> Path:
        """Write the ground truth as JSON (see ``to_json``)."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.to_json(), separators=(",", ":")), encoding="utf-8")
        return out


def _change_days(tl: SubTimeline, tz: str) -> set[date]:
    """Days on which this subscription's end-of-day MRR may differ from the day before."""
    instants: list[int] = []
    for st in tl.states:
        instants.append(st.start)
        if st.end is not None:
            instants.append(st.end)
    for dsp in tl.discounts:
        instants.append(dsp.start)
        if dsp.end is not None:
            instants.append(dsp.end)
    # A boundary at t changes the state covering S(D+1)-1 exactly for D = local_day(t).
    return {local_day(t, tz) for t in instants}


def _manual_value(entries: list[ManualRecurring], day: date) -> Fraction:
    """Manual recurring MRR on D: entries dated D-29..D count one month each (docs/metrics.md §4)."""
    lo = day - timedelta(days=29)
    return Fraction(sum(e.amount_micros for e in entries if lo <= e.day <= day))


@_without_gc
def compute_ground_truth(
    timelines: Iterable[SubTimeline],
    *,
    fx_rates: dict[tuple[str, date], Decimal],
    reporting_currency: str,
    first_day: date,
    last_day: date,
    tz: str = "UTC",
    manual: Iterable[ManualRecurring] = (),
    customer_currency: dict[tuple[str, str], str] | None = None,
    brute_force: bool = False,
) -> GroundTruth:
    """Run the day-by-day MRR loop over every customer of the timeline (docs/metrics.md §3-5).

    Evaluates each customer on the days where one of their subscriptions (or discounts) changes,
    which gives the same rows as evaluating every day because the end-of-day state only changes on
    those days; ``brute_force=True`` evaluates every day (used by tests to prove that).
    """
    tls = list(timelines)
    by_customer: dict[tuple[str, str], list[SubTimeline]] = defaultdict(list)
    currency: dict[tuple[str, str], str] = dict(customer_currency or {})
    for tl in tls:
        key = (tl.account_id, tl.customer_id)
        by_customer[key].append(tl)
        prev = currency.setdefault(key, tl.currency)
        if prev != tl.currency:
            raise ValueError(f"customer {key} has subscriptions in {prev} and {tl.currency}")
    manual_by: dict[str, list[ManualRecurring]] = defaultdict(list)
    for entry in manual:
        manual_by[entry.customer_id].append(entry)
        key = (MANUAL_ACCOUNT, entry.customer_id)
        if currency.setdefault(key, entry.currency) != entry.currency:
            raise ValueError(f"manual customer {entry.customer_id} mixes currencies")

    all_days: list[date] = []
    if brute_force:
        d = first_day
        while d <= last_day:
            all_days.append(d)
            d += timedelta(days=1)

    changes: list[MrrChange] = []
    churn_tags: dict[tuple[str, str, date], str] = {}
    for key in sorted(by_customer):
        subs = by_customer[key]
        if brute_force:
            days = all_days
        else:
            cand: set[date] = set()
            for tl in subs:
                cand |= _change_days(tl, tz)
            days = sorted({max(d, first_day) for d in cand if d <= last_day})
        prev = Fraction(0)
        prev_per_sub: dict[str, Fraction] = {}
        for day in days:
            eod = _eod(day, tz)
            per_sub = {tl.subscription_id: sub_mrr_at(tl, eod) for tl in subs}
            value = sum(per_sub.values(), Fraction(0))
            if value != prev:
                changes.append((key[0], key[1], day, currency[key], _as_value(value)))
                if value == 0:
                    # Churn is delinquent when a subscription that was paying is now in a
                    # non-payment state (unpaid, or canceled after failed payments).
                    delinquent = False
                    for tl in subs:
                        if prev_per_sub.get(tl.subscription_id, 0) > 0:
                            st = state_at(tl, eod)
                            delinquent = delinquent or (st is not None and st.delinquent)
                    churn_tags[(key[0], key[1], day)] = "delinquent" if delinquent else "voluntary"
                prev = value
            prev_per_sub = per_sub

    for cust in sorted(manual_by):
        entries = manual_by[cust]
        key = (MANUAL_ACCOUNT, cust)
        if brute_force:
            days = all_days
        else:
            cand = set()
            for e in entries:
                cand.add(e.day)
                cand.add(e.day + timedelta(days=30))
            days = sorted({max(d, first_day) for d in cand if d <= last_day})
        prev = Fraction(0)
        for day in days:
            value = _manual_value(entries, day)
            if value != prev:
                changes.append((key[0], key[1], day, currency[key], _as_value(value)))
                if value == 0:
                    churn_tags[(key[0], key[1], day)] = "voluntary"
                prev = value

    changes.sort(key=lambda r: (r[2], r[0], r[1]))
    return GroundTruth(
        reporting_currency=reporting_currency,
        tz=tz,
        first_day=first_day,
        last_day=last_day,
        mrr_changes=changes,
        fx_rates=fx_rates,
        customer_currency=currency,
        churn_tags=churn_tags,
        timelines={tl.subscription_id: tl for tl in tls},
    )
