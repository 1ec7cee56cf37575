"""Customer MRR change rows, daily movements and the company roll-forward (docs/metrics.md §4-5).

Cost grows with the number of changes, not with customers x days:
- `customer_mrr_changes` evaluates a customer only on the local days where one of its breakpoints
  falls (state edges, trial_end, discount start/end, started/ended, grace expiry, manual windows);
- `daily_movements` visits those change days; with `include_fx` also, for customers in a foreign
  currency, the days the FX rate changes while they have MRR (a customer's fx movements exist
  exactly on those days, §5), which is customers x days, so the marts do not store them;
- `company_daily` keeps running native totals per currency, converts them once per day, and takes
  the fx movement per currency from them: sum over customers of p x (r - r') = P x (r - r'), where
  P is the currency's native MRR on D-1 (cost: currencies x days).

All amounts are exact `Fraction` micro-units. Round only at the reported grain (`round_micros`).
"""

from __future__ import annotations

import bisect
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from fractions import Fraction
from typing import Any, TypeVar

from finance_pipeline.lib.money import normalize_currency
from finance_pipeline.lib.mrr import (
    COUNTING_STATUSES,
    NOT_IN_FORCE,
    ChurnReason,
    Exact,
    Settings,
    SubscriptionState,
    SubscriptionValue,
    evaluate_at,
    in_force_before,
    round_micros,
    state_breakpoints,
)
from finance_pipeline.lib.timeutil import day_start_ts, local_day

__all__ = [
    "MANUAL_CUSTOMER",
    "MANUAL_WINDOW_DAYS",
    "MOVEMENT_KINDS",
    "MOVEMENT_SIGNS",
    "CompanyDay",
    "CompanyTotals",
    "CurrencyFx",
    "ManualRecurring",
    "Movement",
    "MrrChange",
    "PlanDay",
    "PlanTotals",
    "WindowChanges",
    "company_daily",
    "company_days",
    "company_totals",
    "customer_mrr_changes",
    "customer_mrr_window",
    "customers_with_mrr_before",
    "daily_movements",
    "expand_converted_trials",
    "period_movements",
    "plan_daily",
    "plan_days",
    "plan_totals",
    "round_micros",
]

MANUAL_CUSTOMER = "manual"
MANUAL_WINDOW_DAYS = 30
MANUAL_PLAN = "manual"
MOVEMENT_KINDS = ("new", "reactivation", "expansion", "contraction", "churn", "fx")
# The roll-forward's movements in reporting order, with the sign each changes MRR by (§5):
# MRR(D) = MRR(D-1) + new + expansion + reactivation - contraction - churn + fx.
MOVEMENT_SIGNS = {
    "new": 1,
    "expansion": 1,
    "reactivation": 1,
    "contraction": -1,
    "churn": -1,
    "fx": 1,
}
ONE_DAY = timedelta(days=1)
# Exact values stay plain ints while whole (lib.mrr.Exact): the reporting currency's rate is 1.
_ZERO: Exact = 0
_ONE: Exact = 1

FxLookup = Callable[[str, date], Fraction | None]
CustomerKey = tuple[str, str]


@dataclass(frozen=True)
class ManualRecurring:
    """A manual recurring revenue entry: one month of MRR on days `day` .. `day + 29` (§4).

    `amount_micros` is in micro-units of `currency`; customer None counts under `manual`.
    """

    workspace_id: str
    customer_id: str | None
    day: date
    currency: str
    amount_micros: int | Fraction
    plan_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "currency", normalize_currency(self.currency))


@dataclass(frozen=True)
class MrrChange:
    """A customer's end-of-day MRR state in one currency from `day` until its next row.

    A row exists only where mrr, cmrr, active_subscriptions or the per-plan breakdown change.
    `by_plan` splits `mrr` by plan (sums to it exactly); `plan_subscriptions` counts counting
    subscriptions per plan. `churn_reason` is set on the row where mrr drops to 0.
    """

    workspace_id: str
    customer_id: str
    currency: str
    day: date
    mrr: Fraction
    cmrr: Fraction
    active_subscriptions: int
    by_plan: dict[str, Fraction] = field(default_factory=dict)
    plan_subscriptions: dict[str, int] = field(default_factory=dict)
    churn_reason: ChurnReason | None = None

    def same_values(self, other: MrrChange) -> bool:
        """True iff both rows carry the same balances (ignores day and churn tag)."""
        return _values(self) == _values(other)


def _values(row: MrrChange | _Agg) -> tuple[object, ...]:
    return (row.mrr, row.cmrr, row.active_subscriptions, row.by_plan, row.plan_subscriptions)


@dataclass
class _Agg:
    """Mutable per-currency accumulator for one customer on one day."""

    mrr: Exact = 0
    cmrr: Exact = 0
    active_subscriptions: int = 0
    by_plan: dict[str, Exact] = field(default_factory=dict)
    plan_subscriptions: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Movement:
    """One customer's MRR movement on a day, in reporting-currency micro-units (§5).

    `reason` is `delinquent`/`voluntary` on churn and `rate_gap` on an fx row caused by a missing
    rate; `unconverted` lists currencies whose amount was left out for lack of a rate (§2).
    """

    workspace_id: str
    customer_id: str
    day: date
    kind: str
    amount: Fraction
    reason: str | None = None
    unconverted: tuple[str, ...] = ()


@dataclass(frozen=True)
class CurrencyFx:
    """The fx movement of one currency's customers on a day (§5 summed over them, exact).

    `amount = previous_native x rate - previous_native x previous_rate`, a missing rate counting
    as 0 on its side (the customers' amounts then show as a `rate_gap`).
    """

    currency: str
    previous_native: Fraction
    previous_rate: Fraction | None
    rate: Fraction | None
    amount: Fraction


@dataclass(frozen=True)
class CompanyDay:
    """Company MRR balance and movement sums on one day, exact, in reporting micro-units.

    `previous_mrr` is MRR(D-1) so the roll-forward identity can be checked on every row.
    """

    day: date
    mrr: Fraction
    previous_mrr: Fraction
    cmrr: Fraction
    active_subscriptions: int
    paying_customers: int
    new: Fraction
    expansion: Fraction
    reactivation: Fraction
    contraction: Fraction
    churn: Fraction
    fx: Fraction
    new_customers: int
    reactivated_customers: int
    churned_customers: int
    delinquent_churned_customers: int
    skipped_currencies: tuple[str, ...]
    fx_by_currency: tuple[CurrencyFx, ...] = ()

    @property
    def arr(self) -> Fraction:
        """ARR = 12 x MRR (§4)."""
        return 12 * self.mrr

    @property
    def net_movement(self) -> Fraction:
        """new + expansion + reactivation - contraction - churn + fx."""
        return (
            self.new + self.expansion + self.reactivation - self.contraction - self.churn + self.fx
        )

    def identity_holds(self) -> bool:
        """The blocking roll-forward check: MRR(D) = MRR(D-1) + movements, exactly (§5)."""
        return self.mrr == self.previous_mrr + self.net_movement


@dataclass(frozen=True)
class CountingChange:
    """A subscription starting (`counts`) or stopping to count as active on a local day (§3).

    Stored per day, these decide Stripe's 30-day subscriber churn (§6) with one small read.
    """

    workspace_id: str
    customer_id: str
    subscription_id: str
    day: date
    counts: bool


@dataclass(frozen=True)
class PlanDay:
    """A plan's MRR (reporting micro-units) and counting subscriptions on one day."""

    day: date
    plan: str
    mrr: Fraction
    subscriptions: int
    skipped_currencies: tuple[str, ...]


# --------------------------------------------------------------------------------------------
# Change rows
# --------------------------------------------------------------------------------------------


def expand_converted_trials(states: Iterable[SubscriptionState]) -> list[SubscriptionState]:
    """Split a `trialing` state at its trial_end when the next state shows the trial converted.

    A trial that converts counts from trial_end (§3), even if the history only saw the new status
    later (e.g. at the next sync): the gap [trial_end, next.valid_from) takes the next status.
    """
    by_sub: dict[tuple[str, str], list[SubscriptionState]] = defaultdict(list)
    for state in states:
        by_sub[(state.workspace_id, state.subscription_id)].append(state)
    out: list[SubscriptionState] = []
    for seq in by_sub.values():
        seq.sort(key=lambda s: s.valid_from)
        for index, state in enumerate(seq):
            nxt = seq[index + 1] if index + 1 < len(seq) else None
            te = state.trial_end
            if (
                state.status == "trialing"
                and te is not None
                and state.valid_to is not None
                and state.valid_from < te < state.valid_to
                and nxt is not None
                and nxt.valid_from == state.valid_to
                and nxt.status in COUNTING_STATUSES
            ):
                out.append(replace(state, valid_to=te))
                out.append(
                    replace(
                        state,
                        valid_from=te,
                        status=nxt.status,
                        past_due_since=nxt.past_due_since,
                    )
                )
            else:
                out.append(state)
    return out


class _DayClock:
    """Cached S(D+1) per local day for one time zone."""

    def __init__(self, tz: str) -> None:
        self.tz = tz
        self._cache: dict[date, int] = {}

    def end_instant(self, day: date) -> int:
        value = self._cache.get(day)
        if value is None:
            value = day_start_ts(day + ONE_DAY, self.tz)
            self._cache[day] = value
        return value


@dataclass
class _SubTimeline:
    """One subscription's states, sorted, with a bisect index on valid_from."""

    states: list[SubscriptionState]
    starts: list[int]

    def state_before(self, instant: int) -> SubscriptionState | None:
        index = bisect.bisect_left(self.starts, instant) - 1
        if index < 0:
            return None
        state = self.states[index]
        return state if in_force_before(state, instant) else None


@dataclass
class _SubEval:
    state: SubscriptionState | None
    value: SubscriptionValue


def _sub_churn_reason(previous: _SubEval, current: _SubEval) -> ChurnReason:
    """Why a subscription that had MRR yesterday has none today."""
    if current.value.stop_reason == "delinquent":
        return "delinquent"
    was_unpaid = previous.state is not None and previous.state.status in ("past_due", "unpaid")
    ended = current.state is None or current.state.status == "canceled"
    # A past-due subscription that then ends was cancelled by dunning, not by the customer.
    return "delinquent" if was_unpaid and ended else "voluntary"


class _CustomerEngine:
    """Evaluates one customer (all its subscriptions and manual entries) on chosen days."""

    def __init__(
        self,
        subs: dict[str, _SubTimeline],
        manual: list[ManualRecurring],
        settings: Settings,
        clock: _DayClock,
    ) -> None:
        self.subs = subs
        self.manual = sorted(manual, key=lambda m: m.day)
        self.manual_days = [m.day for m in self.manual]
        self.settings = settings
        self.clock = clock

    def breakpoint_days(self) -> set[date]:
        days: set[date] = set()
        tz = self.settings.tz
        for timeline in self.subs.values():
            for state in timeline.states:
                days.update(local_day(p, tz) for p in state_breakpoints(state, self.settings))
        for entry in self.manual:
            days.add(entry.day)
            days.add(entry.day + timedelta(days=MANUAL_WINDOW_DAYS))
        return days

    def evaluate(self, day: date) -> tuple[dict[str, _Agg], dict[str, _SubEval]]:
        instant = self.clock.end_instant(day)
        per_currency: dict[str, _Agg] = {}
        per_sub: dict[str, _SubEval] = {}
        for sub_id, timeline in self.subs.items():
            state = timeline.state_before(instant)
            value = evaluate_at(state, instant, self.settings) if state else NOT_IN_FORCE
            per_sub[sub_id] = _SubEval(state, value)
            if state is None or not value.counts:
                continue
            agg = per_currency.setdefault(state.currency, _Agg())
            agg.mrr += value.mrr
            agg.cmrr += value.cmrr
            agg.active_subscriptions += 1
            for plan, amount in value.by_plan.items():
                agg.by_plan[plan] = agg.by_plan.get(plan, 0) + amount
            for plan in value.plans:
                agg.plan_subscriptions[plan] = agg.plan_subscriptions.get(plan, 0) + 1
        lo = bisect.bisect_left(self.manual_days, day - timedelta(days=MANUAL_WINDOW_DAYS - 1))
        hi = bisect.bisect_right(self.manual_days, day)
        for entry in self.manual[lo:hi]:
            agg = per_currency.setdefault(entry.currency, _Agg())
            amount = entry.amount_micros
            agg.mrr += amount
            agg.cmrr += amount
            plan = entry.plan_id or MANUAL_PLAN
            agg.by_plan[plan] = agg.by_plan.get(plan, 0) + amount
        for agg in per_currency.values():
            agg.by_plan = {k: v for k, v in agg.by_plan.items() if v}
        return per_currency, per_sub


def _customer_engines(
    states: Iterable[SubscriptionState],
    manual_recurring: Iterable[ManualRecurring],
    settings: Settings,
) -> Iterator[tuple[CustomerKey, _CustomerEngine]]:
    """One evaluation engine per customer, in (workspace, customer) order."""
    clock = _DayClock(settings.tz)
    subs_by_customer: dict[CustomerKey, dict[str, list[SubscriptionState]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for state in expand_converted_trials(states):
        key = (state.workspace_id, state.customer_id)
        subs_by_customer[key][state.subscription_id].append(state)
    manual_by_customer: dict[CustomerKey, list[ManualRecurring]] = defaultdict(list)
    for entry in manual_recurring:
        key = (entry.workspace_id, entry.customer_id or MANUAL_CUSTOMER)
        manual_by_customer[key].append(entry)
    for key in sorted(set(subs_by_customer) | set(manual_by_customer)):
        timelines: dict[str, _SubTimeline] = {}
        for sub_id, seq in subs_by_customer.get(key, {}).items():
            seq.sort(key=lambda s: s.valid_from)
            for a, b in itertools.pairwise(seq):
                if a.valid_to is None or a.valid_to > b.valid_from:
                    raise ValueError(f"subscription {sub_id}: overlapping history intervals")
            timelines[sub_id] = _SubTimeline(seq, [s.valid_from for s in seq])
        yield key, _CustomerEngine(timelines, manual_by_customer.get(key, []), settings, clock)


def _change_rows(
    key: CustomerKey,
    engine: _CustomerEngine,
    days: Iterable[date],
    prev_aggs: dict[str, _Agg],
    prev_subs: dict[str, _SubEval],
    counting: list[CountingChange] | None = None,
) -> list[MrrChange]:
    """The customer's rows on `days` (ascending) where a currency's values differ from the day
    before's (`prev_*`: the values on the day before the first one). With `counting`, each
    subscription's starts and stops of counting on those days are appended to it."""
    customer_rows: list[MrrChange] = []
    for day in days:
        aggs, subs_now = engine.evaluate(day)
        if counting is not None:
            for sub_id, now in subs_now.items():
                before = prev_subs.get(sub_id)
                if now.value.counts != (before is not None and before.value.counts):
                    counting.append(
                        CountingChange(key[0], key[1], sub_id, day, bool(now.value.counts))
                    )
        for currency in sorted(set(aggs) | set(prev_aggs)):
            cur = aggs.get(currency, _Agg())
            prev = prev_aggs.get(currency, _Agg())
            if _values(cur) == _values(prev):
                continue
            reason: ChurnReason | None = None
            if prev.mrr > 0 and cur.mrr == 0:
                reason = _churn_reason(prev_subs, subs_now, currency)
            customer_rows.append(_row(key, currency, day, cur, reason))
        prev_aggs, prev_subs = aggs, subs_now
    customer_rows.sort(key=lambda r: (r.currency, r.day))
    return customer_rows


def _row(
    key: CustomerKey, currency: str, day: date, agg: _Agg, reason: ChurnReason | None = None
) -> MrrChange:
    return MrrChange(
        key[0],
        key[1],
        currency,
        day,
        agg.mrr,
        agg.cmrr,
        agg.active_subscriptions,
        dict(agg.by_plan),
        dict(agg.plan_subscriptions),
        reason,
    )


def customer_mrr_changes(
    states: Iterable[SubscriptionState],
    manual_recurring: Iterable[ManualRecurring],
    settings: Settings,
    start: date | None,
    end: date,
) -> list[MrrChange]:
    """Per-customer, per-currency rows on each local day in [start, end] where the end-of-day MRR,
    CMRR, counted subscriptions or plan mix change (§4). Sorted by workspace, customer, currency,
    day.

    With `start`, the baseline is the value on start-1, so the rows equal the full history's rows
    restricted to the window. Cost grows with breakpoints, not customers x days.
    """
    rows: list[MrrChange] = []
    for key, engine in _customer_engines(states, manual_recurring, settings):
        days = sorted(
            d for d in engine.breakpoint_days() if d <= end and (start is None or d >= start)
        )
        if start is not None:
            prev_aggs, prev_subs = engine.evaluate(start - ONE_DAY)
        else:
            prev_aggs, prev_subs = {}, {}
        rows.extend(_change_rows(key, engine, days, prev_aggs, prev_subs))
    return rows


@dataclass
class WindowChanges:
    """What a window of days needs from the history, evaluated on the window's days only.

    `rows`: change rows on days in [start, end]; `opening`: each customer's nonzero values on
    start-1 as rows dated start-1 (the running totals and movements start from them);
    `had_mrr_before`: customers with MRR on some day before start (reactivation vs new, §5);
    `counting`: the subscriptions' starts and stops of counting on the window's days.
    """

    rows: list[MrrChange]
    opening: list[MrrChange]
    had_mrr_before: set[CustomerKey]
    counting: list[CountingChange] = field(default_factory=list)


def _had_mrr_before(engine: _CustomerEngine, breakpoints: list[date], day: date) -> bool:
    """Whether the customer had MRR on some day before `day`: its end-of-day values change only
    on breakpoint days, so those are scanned in order until the first with MRR."""
    for bp in breakpoints:
        if bp >= day:
            return False
        if any(a.mrr > 0 for a in engine.evaluate(bp)[0].values()):
            return True
    return False


def customers_with_mrr_before(
    states: Iterable[SubscriptionState],
    manual_recurring: Iterable[ManualRecurring],
    settings: Settings,
    day: date,
) -> set[CustomerKey]:
    """The customers with MRR on some day before `day` (for "had MRR before", §5)."""
    return {
        key
        for key, engine in _customer_engines(states, manual_recurring, settings)
        if _had_mrr_before(engine, sorted(engine.breakpoint_days()), day)
    }


def customer_mrr_window(
    states: Iterable[SubscriptionState],
    manual_recurring: Iterable[ManualRecurring],
    settings: Settings,
    start: date,
    end: date,
) -> WindowChanges:
    """`customer_mrr_changes` for [start, end] plus the opening state on start-1, evaluating each
    customer on the window's breakpoint days, so a daily run does not replay every history.

    `states` need only cover start-1 onwards (intervals ending earlier change nothing here).
    `had_mrr_before` holds the customers with MRR on start-1; the caller adds, with
    `customers_with_mrr_before` on their full histories, those who gain MRR in the window after
    having had it earlier (reactivation rather than new).
    """
    out = WindowChanges([], [], set())
    before = start - ONE_DAY
    for key, engine in _customer_engines(states, manual_recurring, settings):
        prev_aggs, prev_subs = engine.evaluate(before)
        for currency, agg in sorted(prev_aggs.items()):
            if _values(agg) != _values(_Agg()):
                out.opening.append(_row(key, currency, before, agg))
        if any(a.mrr > 0 for a in prev_aggs.values()):
            out.had_mrr_before.add(key)
        days = sorted(d for d in engine.breakpoint_days() if start <= d <= end)
        out.rows.extend(_change_rows(key, engine, days, prev_aggs, prev_subs, out.counting))
    return out


def _churn_reason(
    previous: dict[str, _SubEval], current: dict[str, _SubEval], currency: str
) -> ChurnReason:
    """Delinquent iff any subscription lost today in this currency stopped for non-payment."""
    for sub_id, before in previous.items():
        if before.state is None or before.state.currency != currency or before.value.mrr <= 0:
            continue
        now = current.get(sub_id, _SubEval(None, NOT_IN_FORCE))
        if now.value.mrr == 0 and _sub_churn_reason(before, now) == "delinquent":
            return "delinquent"
    return "voluntary"


# --------------------------------------------------------------------------------------------
# Movements
# --------------------------------------------------------------------------------------------


class _Stream:
    """One customer's change rows in one currency, with a bisect index on day."""

    def __init__(self, rows: list[MrrChange]) -> None:
        self.rows = sorted(rows, key=lambda r: r.day)
        self.days = [r.day for r in self.rows]
        if len(set(self.days)) != len(self.days):
            raise ValueError("two change rows for the same customer, currency and day")

    def row_on(self, day: date) -> MrrChange | None:
        index = bisect.bisect_right(self.days, day) - 1
        return self.rows[index] if index >= 0 else None

    def mrr_on(self, day: date) -> Fraction:
        row = self.row_on(day)
        return row.mrr if row is not None else _ZERO


class _RateBook:
    """Cached FX rates (reporting units per unit) and the days each currency's rate changes."""

    def __init__(self, fx: FxLookup, reporting_currency: str) -> None:
        self.fx = fx
        self.reporting = normalize_currency(reporting_currency)
        self._rates: dict[tuple[str, date], Fraction | None] = {}
        self._deltas: dict[tuple[str, date], Fraction] = {}

    def delta(self, currency: str, day: date) -> Fraction:
        """rate(D) - rate(D-1), both present (cached: every customer in a currency needs it)."""
        key = (currency, day)
        value = self._deltas.get(key)
        if value is None:
            value = self.rate(currency, day) - self.rate(currency, day - ONE_DAY)  # type: ignore[operator]
            self._deltas[key] = value
        return value

    def rate(self, currency: str, day: date) -> Fraction | None:
        if currency == self.reporting:
            return _ONE
        key = (currency, day)
        if key not in self._rates:
            value = self.fx(currency, day)
            if value is not None:
                value = Fraction(value)
                if value <= 0:
                    raise ValueError(f"FX rate for {currency} on {day} must be positive: {value}")
            self._rates[key] = value
        return self._rates[key]

    def change_days(self, currency: str, first: date, last: date) -> list[date]:
        """Days D in [first, last] with rate(D) != rate(D-1) (a missing rate counts as a value)."""
        if currency == self.reporting:
            return []
        found: list[date] = []
        previous = self.rate(currency, first - ONE_DAY)
        day = first
        while day <= last:
            current = self.rate(currency, day)
            if current != previous:
                found.append(day)
            previous = current
            day += ONE_DAY
        return found


def daily_movements(
    changes: Iterable[MrrChange],
    fx: FxLookup,
    reporting_currency: str,
    *,
    start: date | None = None,
    end: date | None = None,
    include_fx: bool = True,
    had_mrr_before: set[CustomerKey] | None = None,
) -> list[Movement]:
    """Per-customer daily movements in reporting micro-units, exactly as in §5.

    Needs the customer's full change history (to know "had MRR before"); emits rows for days in
    [start, end] (end defaults to the last change day). Classification uses native amounts: with
    p/q yesterday/today and r/r' today's/yesterday's rates, change amounts use r and
    fx = p x (r - r'); a missing rate contributes 0, so its edges show as fx with reason `rate_gap`.
    For a multi-currency customer the amounts are summed over currencies. Sorted by day, customer.
    Without `include_fx` only new, expansion, reactivation, contraction and churn are produced, on
    change days only: `company_daily` gives the fx movement per currency. `had_mrr_before` names
    customers known to have had MRR before the earliest of their rows given (a window's opening).
    """
    streams: dict[CustomerKey, dict[str, _Stream]] = {}
    grouped: dict[CustomerKey, dict[str, list[MrrChange]]] = defaultdict(lambda: defaultdict(list))
    all_days: list[date] = []
    for row in changes:
        grouped[(row.workspace_id, row.customer_id)][row.currency].append(row)
        all_days.append(row.day)
    if not all_days:
        return []
    last = end if end is not None else max(all_days)
    for key, per_currency in grouped.items():
        streams[key] = {cur: _Stream(rows) for cur, rows in per_currency.items()}

    rates = _RateBook(fx, reporting_currency)
    first_by_currency: dict[str, date] = {}
    for per_currency in streams.values():
        for cur, stream in per_currency.items():
            if stream.days and (
                cur not in first_by_currency or stream.days[0] < first_by_currency[cur]
            ):
                first_by_currency[cur] = stream.days[0]
    rate_days = (
        {cur: rates.change_days(cur, first, last) for cur, first in first_by_currency.items()}
        if include_fx
        else {}
    )

    out: list[Movement] = []
    for key in sorted(streams):
        out.extend(
            _customer_movements(
                key,
                streams[key],
                rates,
                rate_days,
                start,
                last,
                include_fx,
                had_mrr_before is not None and key in had_mrr_before,
            )
        )
    # Customers come in (workspace, customer) order and each one's movements by day, in
    # MOVEMENT_KINDS order within a day (a kind, then fx): a stable sort on the day alone gives
    # the (day, workspace, customer, kind) order without building a key tuple per movement.
    out.sort(key=_movement_day)
    return out


def _movement_day(m: Movement) -> date:
    return m.day


def _customer_movements(
    key: CustomerKey,
    per_currency: dict[str, _Stream],
    rates: _RateBook,
    rate_days: dict[str, list[date]],
    start: date | None,
    last: date,
    include_fx: bool = True,
    had_mrr: bool = False,
) -> list[Movement]:
    """Movements of one customer, visiting its change days and in-MRR rate-change days."""
    change_days = sorted({d for s in per_currency.values() for d in s.days if d <= last})
    fx_days: set[date] = set()
    for cur, stream in per_currency.items():
        days_for_cur = rate_days.get(cur, [])
        if not days_for_cur:
            continue
        for index, row in enumerate(stream.rows):
            if row.mrr <= 0:
                continue
            seg_end = stream.rows[index + 1].day if index + 1 < len(stream.rows) else last
            lo = bisect.bisect_left(days_for_cur, row.day + ONE_DAY)
            hi = bisect.bisect_right(days_for_cur, min(seg_end, last))
            fx_days.update(days_for_cur[lo:hi])
    if start is not None:
        # Rate-only days before the window emit nothing and cannot change `had_mrr` (see below).
        fx_days = {d for d in fx_days if d >= start}
    change_set = set(change_days)
    out: list[Movement] = []
    for day in sorted(change_set | fx_days):
        emit = start is None or day >= start
        if day not in change_set:
            # No change row today in any currency, so p = q everywhere: §5 leaves only fx. Any
            # q > 0 today was set by an earlier change day, which already set `had_mrr`.
            if emit:
                fx = _fx_only(key, day, per_currency, rates)
                if fx is not None:
                    out.append(fx)
            continue
        ps = {cur: s.mrr_on(day - ONE_DAY) for cur, s in per_currency.items()}
        qs = {cur: s.mrr_on(day) for cur, s in per_currency.items()}
        if emit:
            out.extend(_classify(key, day, per_currency, ps, qs, rates, had_mrr, include_fx))
        if any(q > 0 for q in qs.values()):
            had_mrr = True
    return out


def _fx_only(
    key: CustomerKey, day: date, per_currency: dict[str, _Stream], rates: _RateBook
) -> Movement | None:
    """§5 on a day without change rows: the fx movement p x (r - r'), summed over currencies.

    Equal to `_classify` with q = p (no new, churn, expansion or contraction then). A currency
    whose rate is missing on one of the two days contributes its converted side only and tags
    the row `rate_gap`.
    """
    amount: Fraction | None = None
    gap = False
    yesterday = day - ONE_DAY
    for cur, stream in per_currency.items():
        p = stream.mrr_on(yesterday)
        if not p:
            continue  # contributes 0 and cannot open a gap
        r = rates.rate(cur, day)
        r_prev = rates.rate(cur, yesterday)
        if r is not None and r_prev is not None:
            if r == r_prev:
                continue
            term = p * rates.delta(cur, day)
        elif r is not None:
            term = p * r
            gap = gap or p > 0
        elif r_prev is not None:
            term = -(p * r_prev)
            gap = gap or p > 0
        else:
            continue
        amount = term if amount is None else amount + term
    if not amount:
        return None
    ws, customer = key
    return Movement(ws, customer, day, "fx", amount, "rate_gap" if gap else None)


def _classify(
    key: CustomerKey,
    day: date,
    per_currency: dict[str, _Stream],
    ps: dict[str, Fraction],
    qs: dict[str, Fraction],
    rates: _RateBook,
    had_mrr: bool,
    include_fx: bool = True,
) -> list[Movement]:
    """§5 for one customer and day; amounts summed over the customer's currencies."""
    p_at_r: Exact = 0  # yesterday's MRR at today's rates
    p_at_prev: Exact = 0  # yesterday's MRR at yesterday's rates (what MRR(D-1) holds)
    q_at_r: Exact = 0
    gap = False
    unconverted_q: set[str] = set()
    unconverted_p: set[str] = set()
    for cur in per_currency:
        p, q = ps[cur], qs[cur]
        r = rates.rate(cur, day)
        r_prev = rates.rate(cur, day - ONE_DAY)
        if r is not None:
            p_at_r += p * r
            q_at_r += q * r
        else:
            if q > 0:
                unconverted_q.add(cur)
            if p > 0:
                unconverted_p.add(cur)
        if r_prev is not None:
            p_at_prev += p * r_prev
        if p > 0 and (r is None) != (r_prev is None):
            gap = True
    p_any = any(v > 0 for v in ps.values())
    q_any = any(v > 0 for v in qs.values())
    ws, customer = key
    out: list[Movement] = []
    if not p_any and q_any:
        kind = "reactivation" if had_mrr else "new"
        out.append(Movement(ws, customer, day, kind, q_at_r, None, tuple(sorted(unconverted_q))))
    elif p_any and not q_any:
        reasons = [
            r.churn_reason
            for s in per_currency.values()
            if (r := s.row_on(day)) is not None and r.day == day
        ]
        reason = "delinquent" if "delinquent" in reasons else "voluntary"
        out.append(
            Movement(ws, customer, day, "churn", p_at_r, reason, tuple(sorted(unconverted_p)))
        )
    elif p_any and q_any and q_at_r != p_at_r:
        kind = "expansion" if q_at_r > p_at_r else "contraction"
        unconverted = tuple(sorted(unconverted_p | unconverted_q))
        out.append(Movement(ws, customer, day, kind, abs(q_at_r - p_at_r), None, unconverted))
    fx_amount = p_at_r - p_at_prev
    if include_fx and fx_amount:
        out.append(Movement(ws, customer, day, "fx", fx_amount, "rate_gap" if gap else None))
    return out


def period_movements(movements: Iterable[Movement], start: date, end: date) -> dict[str, Fraction]:
    """Sum of daily movements per kind over [start, end] (§5: period movements are sums)."""
    totals = {kind: Fraction(0) for kind in MOVEMENT_KINDS}
    for m in movements:
        if start <= m.day <= end:
            totals[m.kind] += m.amount
    return totals


# --------------------------------------------------------------------------------------------
# Company and plan summaries
# --------------------------------------------------------------------------------------------


def company_daily(
    changes: Iterable[MrrChange],
    movements: Iterable[Movement],
    days: Iterable[date],
    fx: FxLookup,
    reporting_currency: str,
) -> list[CompanyDay]:
    """Company MRR, CMRR, counts and movement sums for each requested day (§4-5).

    Native totals per currency are kept running over the change rows and converted once per day,
    so cost is O(changes + days x currencies). Currencies with MRR but no rate that day are left
    out and listed in `skipped_currencies` (§2). Paying customers and active subscriptions are
    counts of native values, independent of rates. The fx movement comes from the native totals
    per currency (exactly the sum of the customers' fx movements); fx rows in `movements`, if
    any, are not added again.
    """
    return company_days(company_totals(changes, movements, days), fx, reporting_currency)


def _add_per_day(mine: dict[Any, dict[Any, Any]], theirs: dict[Any, dict[Any, Any]]) -> None:
    """Add `theirs` into `mine`, day by day and key by key (exact sums of a batch's totals)."""
    for day, values in theirs.items():
        into = mine.get(day)
        if into is None:
            mine[day] = dict(values)
            continue
        for k, v in values.items():
            into[k] = into[k] + v if k in into else v


@dataclass
class CompanyTotals:
    """Native changes of a set of customers, keyed by the evaluated day they first count on,
    before conversion: the part of `company_daily` that adds up over disjoint sets of customers
    (exactly, so the marts can be computed a batch of customers at a time and merged with `add`;
    sparse, so merging costs the changes, not days x currencies)."""

    days: list[date]
    # Per evaluated day (each wanted day and the day before it): the change since the evaluated
    # day before it in native MRR and CMRR per currency, active subscriptions, paying customers.
    mrr_native: dict[date, dict[str, Fraction]] = field(default_factory=dict)
    cmrr_native: dict[date, dict[str, Fraction]] = field(default_factory=dict)
    active: dict[date, int] = field(default_factory=dict)
    paying: dict[date, int] = field(default_factory=dict)
    # Per wanted day: movement sums per kind and customer counts (new, reactivation, churn,
    # delinquent).
    sums: dict[date, dict[str, Fraction]] = field(default_factory=dict)
    counts: dict[date, dict[str, int]] = field(default_factory=dict)

    @property
    def eval_days(self) -> list[date]:
        """The wanted days and the day before each, ascending."""
        return sorted(set(self.days) | {d - ONE_DAY for d in self.days})

    def add(self, other: CompanyTotals) -> None:
        """Add another, disjoint set of customers' totals (same days) into these."""
        if other.days != self.days:
            raise ValueError("company totals of different days cannot be added")
        for mine, theirs in (
            (self.mrr_native, other.mrr_native),
            (self.cmrr_native, other.cmrr_native),
            (self.sums, other.sums),
            (self.counts, other.counts),
        ):
            _add_per_day(mine, theirs)
        for mine_n, theirs_n in ((self.active, other.active), (self.paying, other.paying)):
            for day, n in theirs_n.items():
                mine_n[day] = mine_n.get(day, 0) + n


def company_totals(
    changes: Iterable[MrrChange], movements: Iterable[Movement], days: Iterable[date]
) -> CompanyTotals:
    """The native, additive half of `company_daily` for the customers of `changes`."""
    out = CompanyTotals(sorted(set(days)))
    if not out.days:
        return out
    eval_days = out.eval_days
    current: dict[tuple[str, str, str], MrrChange] = {}
    positive_streams: dict[CustomerKey, int] = defaultdict(int)
    for row in sorted(changes, key=lambda r: r.day):
        # A row counts from the first evaluated day on or after its own.
        index = bisect.bisect_left(eval_days, row.day)
        if index == len(eval_days):
            break
        day = eval_days[index]
        skey = (row.workspace_id, row.customer_id, row.currency)
        ckey = (row.workspace_id, row.customer_id)
        old = current.get(skey)
        old_mrr = old.mrr if old else _ZERO
        cur = row.currency
        mrr = out.mrr_native.setdefault(day, {})
        mrr[cur] = mrr.get(cur, _ZERO) + (row.mrr - old_mrr)
        cmrr = out.cmrr_native.setdefault(day, {})
        cmrr[cur] = cmrr.get(cur, _ZERO) + (row.cmrr - (old.cmrr if old else _ZERO))
        active = row.active_subscriptions - (old.active_subscriptions if old else 0)
        if active:
            out.active[day] = out.active.get(day, 0) + active
        step = (row.mrr > 0) - (old_mrr > 0)
        if step:
            # Paying customers: those with a positive stream, counted as streams change.
            before = positive_streams[ckey]
            positive_streams[ckey] = before + step
            paying = (before + step > 0) - (before > 0)
            if paying:
                out.paying[day] = out.paying.get(day, 0) + paying
        current[skey] = row

    wanted_set = set(out.days)
    for m in movements:
        if m.day not in wanted_set or m.kind == "fx":
            continue
        s = out.sums.setdefault(m.day, {})
        s[m.kind] = s.get(m.kind, _ZERO) + m.amount
        if m.kind in ("new", "reactivation", "churn"):
            c = out.counts.setdefault(m.day, {})
            c[m.kind] = c.get(m.kind, 0) + 1
            if m.kind == "churn" and m.reason == "delinquent":
                c["delinquent"] = c.get("delinquent", 0) + 1
    return out


def company_days(totals: CompanyTotals, fx: FxLookup, reporting_currency: str) -> list[CompanyDay]:
    """`company_daily` from (merged) native totals: convert once per day, take fx per currency."""
    wanted = totals.days
    if not wanted:
        return []
    rates = _RateBook(fx, reporting_currency)
    mrr_native: dict[str, Fraction] = {}
    cmrr_native: dict[str, Fraction] = {}
    active = paying = 0
    snapshots: dict[date, tuple[Fraction, Fraction, tuple[str, ...], int, int]] = {}
    natives: dict[date, dict[str, Fraction]] = {}
    for day in totals.eval_days:
        for into, delta in (
            (mrr_native, totals.mrr_native.get(day, {})),
            (cmrr_native, totals.cmrr_native.get(day, {})),
        ):
            for cur, v in delta.items():
                into[cur] = into[cur] + v if cur in into else v
        active += totals.active.get(day, 0)
        paying += totals.paying.get(day, 0)
        mrr = _ZERO
        cmrr = _ZERO
        skipped: list[str] = []
        for cur in sorted(set(mrr_native) | set(cmrr_native)):
            m = mrr_native.get(cur, _ZERO)
            c = cmrr_native.get(cur, _ZERO)
            rate = rates.rate(cur, day)
            if rate is None:
                if m or c:
                    skipped.append(cur)
                continue
            mrr += m * rate
            cmrr += c * rate
        snapshots[day] = (mrr, cmrr, tuple(skipped), active, paying)
        natives[day] = {cur: v for cur, v in mrr_native.items() if v}

    out: list[CompanyDay] = []
    for day in wanted:
        mrr, cmrr, skipped, active_subs, paying_customers = snapshots[day]
        s = totals.sums.get(day, {})
        c = totals.counts.get(day, {})
        fx_rows = _currency_fx(natives[day - ONE_DAY], day, rates)
        out.append(
            CompanyDay(
                day=day,
                mrr=mrr,
                previous_mrr=snapshots[day - ONE_DAY][0],
                cmrr=cmrr,
                active_subscriptions=active_subs,
                paying_customers=paying_customers,
                new=s.get("new", _ZERO),
                expansion=s.get("expansion", _ZERO),
                reactivation=s.get("reactivation", _ZERO),
                contraction=s.get("contraction", _ZERO),
                churn=s.get("churn", _ZERO),
                fx=sum((f.amount for f in fx_rows), _ZERO),
                new_customers=c.get("new", 0),
                reactivated_customers=c.get("reactivation", 0),
                churned_customers=c.get("churn", 0),
                delinquent_churned_customers=c.get("delinquent", 0),
                skipped_currencies=skipped,
                fx_by_currency=fx_rows,
            )
        )
    return out


def _currency_fx(
    previous: dict[str, Fraction], day: date, rates: _RateBook
) -> tuple[CurrencyFx, ...]:
    """§5's fx movement of each currency with MRR on D-1: P x r - P x r', a missing rate as 0."""
    out: list[CurrencyFx] = []
    yesterday = day - ONE_DAY
    for cur in sorted(previous):
        if cur == rates.reporting:
            continue
        p = previous[cur]
        r, r_prev = rates.rate(cur, day), rates.rate(cur, yesterday)
        amount = (p * r if r is not None else _ZERO) - (p * r_prev if r_prev is not None else _ZERO)
        if amount:
            out.append(CurrencyFx(cur, p, r_prev, r, amount))
    return tuple(out)


def plan_daily(
    changes: Iterable[MrrChange],
    days: Iterable[date],
    fx: FxLookup,
    reporting_currency: str,
) -> list[PlanDay]:
    """Per-plan MRR (reporting micro-units, rate of the day) and subscriptions for each day.

    For the seeds' `plan_id` filter. Plans with neither MRR nor subscriptions that day have no row.
    """
    return plan_days(plan_totals(changes, days), fx, reporting_currency)


@dataclass
class PlanTotals:
    """Native per-plan changes of a set of customers, keyed by the requested day they first count
    on, before conversion: the additive half of `plan_daily` (merge disjoint sets of customers
    with `add`; sparse, so merging costs the changes, not days x plans)."""

    days: list[date]
    # Per requested day: the change in native MRR per (plan, currency) and in counting
    # subscriptions per plan since the requested day before it.
    native: dict[date, dict[tuple[str, str], Fraction]] = field(default_factory=dict)
    subs: dict[date, dict[str, int]] = field(default_factory=dict)

    def add(self, other: PlanTotals) -> None:
        """Add another, disjoint set of customers' totals (same days) into these."""
        if other.days != self.days:
            raise ValueError("plan totals of different days cannot be added")
        for mine, theirs in ((self.native, other.native), (self.subs, other.subs)):
            _add_per_day(mine, theirs)


def plan_totals(changes: Iterable[MrrChange], days: Iterable[date]) -> PlanTotals:
    """The native, additive half of `plan_daily` for the customers of `changes`."""
    wanted = sorted(set(days))
    out = PlanTotals(wanted)
    current: dict[tuple[str, str, str], MrrChange] = {}
    for row in sorted(changes, key=lambda r: r.day):
        # A row counts from the first requested day on or after its own.
        index = bisect.bisect_left(wanted, row.day)
        if index == len(wanted):
            break
        day = wanted[index]
        native = out.native.setdefault(day, {})
        subs = out.subs.setdefault(day, {})
        skey = (row.workspace_id, row.customer_id, row.currency)
        old = current.get(skey)
        if old is not None:
            for plan, amount in old.by_plan.items():
                k = (plan, old.currency)
                native[k] = native[k] - amount if k in native else -amount
            for plan, n in old.plan_subscriptions.items():
                subs[plan] = subs.get(plan, 0) - n
        for plan, amount in row.by_plan.items():
            k = (plan, row.currency)
            native[k] = native[k] + amount if k in native else amount
        for plan, n in row.plan_subscriptions.items():
            subs[plan] = subs.get(plan, 0) + n
        current[skey] = row
    return out


_Key = TypeVar("_Key")


def _add_running(running: dict[_Key, Exact], key: _Key, change: Exact) -> None:
    """Add `change` to the running total at `key`; a total that reaches zero leaves the dict, so
    only non-zero totals are carried from day to day."""
    value = running[key] + change if key in running else change
    if value:
        running[key] = value
    else:
        running.pop(key, None)


def plan_days(totals: PlanTotals, fx: FxLookup, reporting_currency: str) -> list[PlanDay]:
    """`plan_daily` from (merged) native totals, converted at each day's rate."""
    rates = _RateBook(fx, reporting_currency)
    reporting = rates.reporting
    # Running native MRR, nonzero entries only: per plan in the reporting currency (its value
    # needs no conversion, so it is kept from day to day and only changes on a delta), and per
    # (plan, currency) in the others (converted at each day's rate). The per-day work is then
    # the foreign amounts and the rows, not every plan's every currency: this loop is days x plans.
    in_reporting: dict[str, Exact] = {}
    foreign: dict[tuple[str, str], Exact] = {}
    subs: dict[str, int] = {}
    with_subs: set[str] = set()
    out: list[PlanDay] = []
    for day in totals.days:
        for (plan, cur), v in totals.native.get(day, {}).items():
            if cur == reporting:
                _add_running(in_reporting, plan, v)
            else:
                _add_running(foreign, (plan, cur), v)
        for plan, n in totals.subs.get(day, {}).items():
            count = subs.get(plan, 0) + n
            subs[plan] = count
            if count:
                with_subs.add(plan)
            else:
                with_subs.discard(plan)
        values: dict[str, Exact] = dict(in_reporting)
        plans = with_subs | values.keys()
        skipped: dict[str, set[str]] = {}
        for (plan, cur), amount in foreign.items():
            plans.add(plan)
            rate = rates.rate(cur, day)
            if rate is None:
                skipped.setdefault(plan, set()).add(cur)
                continue
            value = amount * rate
            total = values.get(plan)
            values[plan] = value if total is None else total + value
        for plan in sorted(plans):
            gaps = skipped.get(plan)
            out.append(
                PlanDay(
                    day,
                    plan,
                    values.get(plan, _ZERO),
                    subs.get(plan, 0),
                    tuple(sorted(gaps)) if gaps else (),
                )
            )
    return out
