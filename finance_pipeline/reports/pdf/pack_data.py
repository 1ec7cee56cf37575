"""The month-end close pack's figures, read from the marts: exact values, and their displayed
roundings footed per docs/metrics.md §2 so every printed table adds up at the reporting
currency's grain (its minor unit: the cent for USD, the yen for JPY)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from finance_pipeline.lib.close_pack import (
    cohort_retention,
    customer_churn_rate,
    month_end,
    month_key,
    shift_month,
    subscriber_churn_30d_from_changes,
    trailing_months,
)
from finance_pipeline.lib.ledger import RateLookup, fx_lookup
from finance_pipeline.lib.money import (
    MICROS_PER_CENT,
    foot,
    foot_roll_forward,
    micros_per_minor,
    percent,
    round_half_away,
    shown_units,
)
from finance_pipeline.lib.mrr_timeline import (
    MANUAL_CUSTOMER,
    MOVEMENT_SIGNS,
)
from finance_pipeline.lib.retention import RetentionRates
from finance_pipeline.lib.timeutil import day_start_ts
from finance_pipeline.metrics.retention_io import (
    StoredBalances,
    load_balances,
    retention_for_period,
)
from finance_pipeline.stripe_sync.health import sync_status
from finance_pipeline.tenancy import Workspace, list_workspaces
from finance_pipeline.warehouse.db import Warehouse

#: Movements of the MRR roll-forward in print order, with their sign (§5).
MOVEMENTS = tuple(MOVEMENT_SIGNS.items())
PLAN_LINES = 6  # the largest plans are named; the rest fold into "Other plans" so a chart reads


@dataclass(frozen=True)
class Kpi:
    """A headline figure this month and the month before (money in micro-units, exact)."""

    key: str
    label: str
    kind: str  # money | percent | count | months
    current: Fraction | None
    previous: Fraction | None
    current_shown: Decimal | None
    previous_shown: Decimal | None
    note: str = ""


@dataclass(frozen=True)
class Line:
    """One displayed line of a footed table: label, exact micro-units, shown micro-units."""

    label: str
    exact: Fraction
    shown: int
    kind: str = "line"  # line | balance | total


@dataclass(frozen=True)
class ChurnRate:
    """One churn convention for the month and the month before, as labelled in §6."""

    label: str
    definition: str
    current: Decimal | None
    previous: Decimal | None
    detail: str


@dataclass(frozen=True)
class CountLine:
    """A customers or subscriptions roll-forward line (counts are exact)."""

    label: str
    value: int
    kind: str = "line"


@dataclass(frozen=True)
class PlanSeries:
    """MRR per month-end of one plan (or "Other plans"), shown values footed to the month total."""

    plan: str
    exact: tuple[Fraction, ...]
    shown: tuple[int, ...]


@dataclass(frozen=True)
class CohortLine:
    """One first-paid cohort: customers, starting MRR and net MRR retention per month after."""

    month: str
    customers: int
    starting_mrr_shown: int
    retention: tuple[Decimal | None, ...]


@dataclass(frozen=True)
class MonthMoney:
    """Revenue, refunds, expenses and net of one month (shown micro-units, footed by column)."""

    month: str
    revenue: int
    refunds: int
    expenses: int
    net: int
    revenue_exact: int
    refunds_exact: int
    expenses_exact: int


@dataclass(frozen=True)
class MarginTier:
    """Customers, revenue, cost and margin of one health tier (§11), footed over the tiers."""

    tier: str
    customers: int
    revenue: int
    cost: int
    margin: int


@dataclass(frozen=True)
class MarginCustomer:
    """A critical or at-risk customer named in the pack."""

    name: str
    tier: str
    revenue: int
    cost: int
    margin_percent: Decimal | None
    projected_margin_percent: Decimal | None
    budget_suggestion: int | None


@dataclass(frozen=True)
class AlertEpisode:
    """Consecutive days of the same alert in the month (§14 episodes), with its peak severity."""

    type: str
    subject: str
    first_day: date
    last_day: date
    peak_severity: str
    message: str
    open_at_month_end: bool


@dataclass(frozen=True)
class ForecastVariant:
    """One forecast variant: its assumptions and monthly MRR, cash and runway (rounded, §12)."""

    name: str
    assumptions: dict[str, str]
    mrr_cents: tuple[int, ...]
    cash_cents: tuple[int, ...]
    runway_months: tuple[str | None, ...]


@dataclass(frozen=True)
class FailedPayment:
    """A failed charge of the month, in its own currency (minor units)."""

    day: date
    customer: str
    amount_minor: int
    currency: str
    failure_code: str


@dataclass(frozen=True)
class TieOut:
    """A reconciliation computed for the pack: both sides and whether they agree exactly."""

    name: str
    left_label: str
    left: str
    right_label: str
    right: str
    passed: bool


@dataclass(frozen=True)
class CheckResult:
    """A data-quality check result handed in by the caller (e.g. Dagster's latest evaluation)."""

    name: str
    passed: bool
    description: str = ""
    severity: str = "ERROR"


@dataclass(frozen=True)
class Watermark:
    """How fresh one source or build is: last success, newest data it holds, and status."""

    source: str
    as_of: str | None
    status: str
    newest: str | None = None


@dataclass(frozen=True)
class FigureChange:
    """A pack figure restated: as closed, restated and the change (decimal strings; None: empty)."""

    metric: str
    as_closed: str | None
    restated: str | None
    change: str | None


@dataclass(frozen=True)
class RestatementNote:
    """A closed month recomputed differently after its close (alert close_restated)."""

    month: str
    close_version: int
    detected_at: datetime
    changes: tuple[FigureChange, ...]


@dataclass(frozen=True)
class ClosePackData:
    """Everything the close pack prints for one workspace and month, already rounded and footed."""

    workspace_id: str
    workspace_name: str
    currency: str
    time_zone: str
    month: str
    period_start: date
    period_end: date
    generated_at: datetime
    watermarks: tuple[Watermark, ...]
    kpis: tuple[Kpi, ...]
    churn: tuple[ChurnRate, ...]
    roll_forward: tuple[Line, ...]
    customers_roll: tuple[CountLine, ...]
    subscriptions_roll: tuple[CountLine, ...]
    plan_months: tuple[str, ...]
    plans: tuple[PlanSeries, ...]
    plan_totals: tuple[int, ...]
    cohort_months: tuple[str, ...]
    cohorts: tuple[CohortLine, ...]
    money_months: tuple[MonthMoney, ...]
    money_total: MonthMoney
    cfo: tuple[Kpi, ...]
    cfo_warnings: tuple[str, ...]
    margin_tiers: tuple[MarginTier, ...]
    margin_total: MarginTier
    blended_margin_percent: Decimal | None
    margin_watch: tuple[MarginCustomer, ...]
    untagged_cost: int
    alerts: tuple[AlertEpisode, ...]
    forecast_as_of: date | None
    forecast_start_mrr: int | None  # MRR on as_of (micro-units), where every variant starts
    forecast_months: tuple[str, ...]
    forecast: tuple[ForecastVariant, ...]
    failed_payments: tuple[FailedPayment, ...]
    checks: tuple[CheckResult, ...]
    sync_health: str
    sync_reason: str | None
    tie_outs: tuple[TieOut, ...]
    exact: dict[str, Any] = field(default_factory=dict, compare=False)
    # Set by the month-end close: the close version this pack belongs to, why the month was
    # reopened, the figures restated against the previous version, and restatements of earlier
    # closed months detected since (each listed in one month's pack).
    close_version: int = 1
    reopen_reason: str | None = None
    restated: tuple[FigureChange, ...] = ()
    restatements: tuple[RestatementNote, ...] = ()

    @property
    def grain(self) -> int:
        """Micros in one minor unit of the reporting currency: what every shown figure is a
        multiple of and is printed to (10,000 for USD cents, 1,000,000 for whole yen)."""
        return micros_per_minor(self.currency)

    @property
    def all_tie_outs_pass(self) -> bool:
        """True when every reconciliation printed in the appendix agrees."""
        return all(t.passed for t in self.tie_outs)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else (value or {})


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _units(micros: int | Fraction, grain: int) -> Decimal:
    """Exact micro-units rounded once to `grain`, in whole units with the grain's decimals."""
    return shown_units(round_half_away(micros, grain), grain)


def _pct(value: Fraction | None) -> Decimal | None:
    return None if value is None else percent(value, 1)


def _iso(ts: int | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _workspace(wh: Warehouse, workspace_id: str) -> Workspace:
    for ws in list_workspaces(wh):
        if ws.id == workspace_id:
            return ws
    raise KeyError(f"unknown workspace {workspace_id!r}")


def _mrr_day(wh: Warehouse, ws: str, day: date) -> dict[str, Any] | None:
    rows = wh.rows("SELECT * FROM mart.mrr_daily WHERE workspace_id = :w AND day = :d", w=ws, d=day)
    return rows[0] if rows else None


def _exact(row: Mapping[str, Any] | None, name: str) -> Fraction:
    """The stored exact value of a mrr_daily field ("num/den"), the micros without it."""
    if row is None:
        return Fraction(0)
    ex = _json(row["exact_json"])
    return Fraction(ex[name]) if name in ex else Fraction(row[f"{name}_micros"])


def _cfo_day(wh: Warehouse, ws: str, day: date) -> dict[str, Any] | None:
    rows = wh.rows(
        "SELECT * FROM mart.cfo_metrics_daily WHERE workspace_id = :w AND day = :d", w=ws, d=day
    )
    return rows[0] if rows else None


def _money_kpi(
    grain: int,
    key: str,
    label: str,
    cur: Fraction | None,
    prev: Fraction | None,
    note: str = "",
) -> Kpi:
    return Kpi(
        key,
        label,
        "money",
        cur,
        prev,
        None if cur is None else _units(cur, grain),
        None if prev is None else _units(prev, grain),
        note,
    )


def _cents_kpi(
    grain: int,
    key: str,
    label: str,
    cur: dict | None,
    prev: dict | None,
    col: str,
    note: str = "",
) -> Kpi:
    # The CFO mart stores only hundredths (its API's `*_cents`): a coarser grain (whole yen)
    # is rounded from them, the one figure rounded twice (docs/metrics.md §2).
    def get(r: dict | None) -> Fraction | None:
        return None if r is None or r[col] is None else Fraction(int(r[col]) * MICROS_PER_CENT)

    return _money_kpi(grain, key, label, get(cur), get(prev), note)


def _ratio_kpi(
    key: str, label: str, cur: Fraction | None, prev: Fraction | None, note: str = ""
) -> Kpi:
    return Kpi(key, label, "percent", cur, prev, _pct(cur), _pct(prev), note)


def _retention(
    wh: Warehouse,
    ws: Workspace,
    start: date,
    end: date,
    stored: StoredBalances,
    fx: RateLookup,
) -> RetentionRates | None:
    try:
        return retention_for_period(
            wh, ws.id, ws.reporting_currency, start, end, balances=stored.on, fx=fx
        )
    except ValueError:  # the marts do not cover the period (e.g. the first month of data)
        return None


@dataclass(frozen=True)
class _Period:
    """The month being closed and the month before it, in the workspace's local days."""

    ws: Workspace
    month: str
    start: date
    end: date
    prev_start: date
    prev_end: date

    @classmethod
    def of(cls, ws: Workspace, day: date) -> _Period:
        month = month_key(day)
        prev = shift_month(month, -1)
        return cls(
            ws,
            month,
            day.replace(day=1),
            month_end(month),
            date.fromisoformat(prev + "-01"),
            month_end(prev),
        )

    @property
    def grain(self) -> int:
        """The reporting currency's minor unit in micros: the pack's rounding grain (§2)."""
        return micros_per_minor(self.ws.reporting_currency)

    @property
    def opening_day(self) -> date:
        return self.start - timedelta(days=1)


@dataclass(frozen=True)
class _MrrMonth:
    """mart.mrr_daily rows of the month and the month before, with the exact roll-forward."""

    rows: list[dict[str, Any]]
    prev_rows: list[dict[str, Any]]
    open_row: dict[str, Any] | None
    opening: Fraction
    closing: Fraction
    movements: dict[str, Fraction]
    prev_movements: dict[str, Fraction]

    @property
    def close_row(self) -> dict[str, Any] | None:
        return self.rows[-1] if self.rows else None

    @property
    def prev_close_row(self) -> dict[str, Any] | None:
        return self.prev_rows[-1] if self.prev_rows else None

    @classmethod
    def load(cls, wh: Warehouse, p: _Period) -> _MrrMonth:
        days = wh.rows(
            "SELECT * FROM mart.mrr_daily WHERE workspace_id = :w AND day >= :a AND day <= :b"
            " ORDER BY day",
            w=p.ws.id,
            a=p.prev_start,
            b=p.end,
        )
        rows = [r for r in days if _day(r["day"]) >= p.start]
        prev_rows = [r for r in days if _day(r["day"]) < p.start]

        def movements(rs: list[dict[str, Any]]) -> dict[str, Fraction]:
            return {k: sum((_exact(r, k) for r in rs), Fraction(0)) for k, _s in MOVEMENTS}

        return cls(
            rows=rows,
            prev_rows=prev_rows,
            open_row=_mrr_day(wh, p.ws.id, p.opening_day),
            # Period movements are sums of daily ones; balances are the values on a day (§5).
            opening=_exact(rows[0], "previous_mrr") if rows else Fraction(0),
            closing=_exact(rows[-1], "mrr") if rows else Fraction(0),
            movements=movements(rows),
            prev_movements=movements(prev_rows),
        )


def _net_new(m: Mapping[str, Fraction]) -> Fraction:
    # Net new MRR leaves fx out: it is the business's own movement, not the exchange rate's.
    return m["new"] + m["expansion"] + m["reactivation"] - m["contraction"] - m["churn"]


def _roll_forward(mrr: _MrrMonth, p: _Period) -> tuple[Line, ...]:
    """Opening, movements and closing MRR, footed at the grain with `foot_roll_forward` (§2)."""
    signed = {k: s * mrr.movements[k] for k, s in MOVEMENTS}
    opening_r, moves_r, closing_r = foot_roll_forward(mrr.opening, signed, mrr.closing, p.grain)
    closing_day = _day(mrr.close_row["day"]) if mrr.close_row else p.end
    return (
        Line(f"Opening MRR ({p.opening_day.isoformat()})", mrr.opening, opening_r, "balance"),
        *(Line("FX" if k == "fx" else k.capitalize(), signed[k], moves_r[k]) for k, _ in MOVEMENTS),
        Line(f"Closing MRR ({closing_day.isoformat()})", mrr.closing, closing_r, "balance"),
    )


def _runway(r: Mapping[str, Any] | None, col: str = "runway_months") -> Decimal | None:
    return None if r is None or r[col] is None else Decimal(str(r[col]))


def _frac(value: Decimal | None) -> Fraction | None:
    return None if value is None else Fraction(value)


def _kpis(
    grain: int,
    mrr: _MrrMonth,
    rates: RetentionRates | None,
    prev_rates: RetentionRates | None,
    cfo_now: dict[str, Any] | None,
    cfo_prev: dict[str, Any] | None,
) -> tuple[Kpi, ...]:
    """The headline KPIs of the month against the month before."""
    now, before = mrr.close_row, mrr.prev_close_row

    def mrr_of(row: dict[str, Any] | None, name: str = "mrr", factor: int = 1) -> Fraction | None:
        return None if row is None else factor * _exact(row, name)

    def arpa(row: dict[str, Any] | None) -> Fraction | None:
        if row is None or not row["paying_customers"]:
            return None
        return _exact(row, "mrr") / row["paying_customers"]

    def paying(row: dict[str, Any] | None) -> Decimal | None:
        return None if row is None else Decimal(row["paying_customers"])

    def attr(r: RetentionRates | None, name: str) -> Fraction | None:
        return None if r is None else getattr(r, name)

    return (
        _money_kpi(grain, "mrr", "MRR", mrr_of(now), mrr_of(before)),
        _money_kpi(
            grain,
            "cmrr",
            "Committed MRR (CMRR)",
            mrr_of(now, "cmrr"),
            mrr_of(before, "cmrr"),
            "stops at a scheduled cancellation",
        ),
        _money_kpi(
            grain, "arr", "ARR", mrr_of(now, factor=12), mrr_of(before, factor=12), "12 x MRR"
        ),
        _money_kpi(
            grain,
            "net_new_mrr",
            "Net new MRR",
            _net_new(mrr.movements) if mrr.rows else None,
            _net_new(mrr.prev_movements) if mrr.prev_rows else None,
            "excludes FX",
        ),
        _ratio_kpi(
            "nrr",
            "Net revenue retention (NRR)",
            attr(rates, "nrr"),
            attr(prev_rates, "nrr"),
            "cohort paying at month start",
        ),
        _ratio_kpi(
            "grr",
            "Gross revenue retention (GRR)",
            attr(rates, "grr"),
            attr(prev_rates, "grr"),
            "capped at starting MRR",
        ),
        _money_kpi(grain, "arpa", "ARPA", arpa(now), arpa(before), "MRR / paying customers"),
        Kpi(
            "paying_customers",
            "Paying customers",
            "count",
            _frac(paying(now)),
            _frac(paying(before)),
            paying(now),
            paying(before),
        ),
        _cents_kpi(
            grain,
            "burn",
            "Burn (30 days)",
            cfo_now,
            cfo_prev,
            "burn_cents_30d",
            "expenses - net revenue",
        ),
        _cents_kpi(
            grain,
            "recurring_burn",
            "Recurring burn (30 days)",
            cfo_now,
            cfo_prev,
            "recurring_burn_cents_30d",
            "used for runway",
        ),
        Kpi(
            "runway",
            "Runway",
            "months",
            _frac(_runway(cfo_now)),
            _frac(_runway(cfo_prev)),
            _runway(cfo_now),
            _runway(cfo_prev),
            "months of cash at recurring burn",
        ),
    )


def _churn_events(wh: Warehouse, ws: str, a: date, b: date) -> int:
    """Churn movements (a customer's MRR going to 0) on the days a..b, each one counted."""
    return int(
        wh.scalar(
            "SELECT COUNT(*) FROM mart.mrr_movements WHERE workspace_id = :w AND kind = 'churn'"
            " AND day >= :a AND day <= :b",
            w=ws,
            a=a,
            b=b,
        )
        or 0
    )


def _counted_subscriptions(wh: Warehouse, ws: str, end: date) -> bool:
    """Whether any subscription counted in MRR up to `end`, by the stored change rows."""
    return bool(
        wh.rows(
            "SELECT 1 AS x FROM mart.mrr_changes WHERE workspace_id = :w AND day <= :b"
            " AND active_subscriptions > 0 LIMIT 1",
            w=ws,
            b=end,
        )
    )


def _churn(
    wh: Warehouse, p: _Period, rates: RetentionRates | None, prev_rates: RetentionRates | None
) -> tuple[ChurnRate, ...]:
    """Churn in the conventions finance compares against, labelled as in docs/metrics.md §6."""
    # A subscription's counting changes only on the days the MRR marts stored for it, so the two
    # 30-day windows need only those rows up to the close, not every subscription's history.
    changes = [
        (r["subscription_id"], _day(r["day"]), bool(r["counts"]))
        for r in wh.rows(
            "SELECT subscription_id, day, counts FROM mart.subscription_counting"
            " WHERE workspace_id = :w AND day <= :b",
            w=p.ws.id,
            b=p.end,
        )
    ]
    stripe_now = subscriber_churn_30d_from_changes(changes, p.end)
    stripe_prev = subscriber_churn_30d_from_changes(changes, p.prev_end)
    stripe_detail = f"{stripe_now[0]} of {stripe_now[1]} subscriptions"
    if not changes and _counted_subscriptions(wh, p.ws.id, p.end):
        # MRR marts built before the counting changes were stored: say so, never show 0 of 0.
        stripe_now = stripe_prev = (0, 0, None)
        stripe_detail = "not stored: rebuild the MRR marts (rebuild_marts)"
    events = _churn_events(wh, p.ws.id, p.start, p.end)
    cm_now = customer_churn_rate(events, rates.starting_customers if rates else 0)
    cm_prev = customer_churn_rate(
        _churn_events(wh, p.ws.id, p.prev_start, p.prev_end),
        prev_rates.starting_customers if prev_rates else 0,
    )

    def rate(r: RetentionRates | None, name: str) -> Decimal | None:
        return None if r is None else _pct(getattr(r, name))

    return (
        ChurnRate(
            "cohort logo churn (ours)",
            "paying at month start, paying nothing at month end",
            rate(rates, "logo_churn_rate"),
            rate(prev_rates, "logo_churn_rate"),
            f"{rates.churned_customers} of {rates.starting_customers} customers"
            if rates
            else "no data",
        ),
        ChurnRate(
            "ChartMogul customer churn rate",
            "churn events in the month / customers at start",
            _pct(cm_now),
            _pct(cm_prev),
            f"{events} churn events",
        ),
        ChurnRate(
            "Stripe 30-day subscriber churn",
            "subscriptions churned in 30 days / subscriptions 30 days before",
            _pct(stripe_now[2]),
            _pct(stripe_prev[2]),
            stripe_detail,
        ),
        ChurnRate(
            "gross MRR churn",
            "(churn + contraction) / opening MRR",
            rate(rates, "gross_mrr_churn_rate"),
            rate(prev_rates, "gross_mrr_churn_rate"),
            "MRR churn rate",
        ),
        ChurnRate(
            "net MRR churn",
            "(churn + contraction - expansion - reactivation) / opening MRR",
            rate(rates, "net_mrr_churn_rate"),
            rate(prev_rates, "net_mrr_churn_rate"),
            "negative: expansion outweighs churn",
        ),
    )


def _count_rolls(mrr: _MrrMonth, p: _Period) -> tuple[tuple[CountLine, ...], tuple[CountLine, ...]]:
    """Paying customers (opening, new, reactivated, churned, closing) and active subscriptions."""

    def col(name: str) -> int:
        return sum(int(r[name]) for r in mrr.rows)

    def at(row: dict[str, Any] | None, name: str) -> int:
        return int(row[name]) if row else 0

    opening, closing = at(mrr.open_row, "paying_customers"), at(mrr.close_row, "paying_customers")
    new, back, gone = col("new_customers"), col("reactivated_customers"), col("churned_customers")
    customers = [
        CountLine(f"Paying customers ({p.opening_day.isoformat()})", opening, "balance"),
        CountLine("New", new),
        CountLine("Reactivated", back),
        CountLine(f"Churned (of which delinquent: {col('delinquent_churned_customers')})", -gone),
    ]
    other = closing - (opening + new + back - gone)
    if other:  # counts that the movements do not explain are shown, never hidden
        customers.append(CountLine("Other", other))
    customers.append(CountLine(f"Paying customers ({p.end.isoformat()})", closing, "balance"))
    subs_open = at(mrr.open_row, "active_subscriptions")
    subs_close = at(mrr.close_row, "active_subscriptions")
    subscriptions = (
        CountLine(f"Active subscriptions ({p.opening_day.isoformat()})", subs_open, "balance"),
        CountLine("Net change", subs_close - subs_open),
        CountLine(f"Active subscriptions ({p.end.isoformat()})", subs_close, "balance"),
    )
    return tuple(customers), subscriptions


def _plans(
    wh: Warehouse, p: _Period
) -> tuple[tuple[str, ...], tuple[PlanSeries, ...], tuple[int, ...]]:
    """MRR by plan (product name) at the last 13 month ends, each month footed to its total."""
    months = tuple(trailing_months(p.month, 13))
    names = {
        r["id"]: r["name"] or r["id"]
        for r in wh.rows(
            "SELECT p.id AS id, pr.name AS name FROM raw.stripe_prices p"
            " LEFT JOIN raw.stripe_products pr"
            " ON pr.id = p.product AND pr.workspace_id = p.workspace_id WHERE p.workspace_id = :w",
            w=p.ws.id,
        )
    }
    ends = [month_end(m) for m in months]
    by_plan: dict[str, dict[date, Fraction]] = defaultdict(dict)
    # Only the 13 month ends' rows: the daily rows in between are 30 times as many.
    for r in wh.rows_in(
        "SELECT day, plan_id, mrr_exact FROM mart.mrr_plan_daily WHERE workspace_id = :w",
        "day",
        ends,
        w=p.ws.id,
    ):
        d = _day(r["day"])
        name = names.get(r["plan_id"], r["plan_id"])
        by_plan[name][d] = by_plan[name].get(d, Fraction(0)) + Fraction(r["mrr_exact"])
    ranked = sorted(by_plan, key=lambda n: (-by_plan[n].get(ends[-1], Fraction(0)), n))
    named = ranked[:PLAN_LINES] if len(ranked) > PLAN_LINES + 1 else ranked
    series = [(n, [by_plan[n].get(d, Fraction(0)) for d in ends]) for n in named]
    rest = [n for n in ranked if n not in named]
    if rest:
        zero = Fraction(0)
        series.append(
            ("Other plans", [sum((by_plan[n].get(d, zero) for n in rest), zero) for d in ends])
        )
    columns = [foot([s[1][i] for s in series], p.grain) if series else [] for i in range(len(ends))]
    plans = tuple(
        PlanSeries(name, tuple(values), tuple(columns[i][j] for i in range(len(ends))))
        for j, (name, values) in enumerate(series)
    )
    return months, plans, tuple(sum(c) for c in columns)


COHORT_MONTHS = 12


def _cohorts(
    p: _Period, stored: StoredBalances, fx: RateLookup
) -> tuple[tuple[str, ...], tuple[CohortLine, ...]]:
    """Net-MRR retention of the last 12 first-paid cohorts at each month end."""
    cur = p.ws.reporting_currency
    months = tuple(trailing_months(p.month, COHORT_MONTHS))
    # The synthetic customer of manual recurring revenue without a customer (§4) is no cohort:
    # its 30-day entries make it flicker at month ends.
    first_paid = {
        customer: month_key(day)
        for customer, day in stored.first_paid.items()
        if customer != MANUAL_CUSTOMER and month_key(day) in months
    }
    month_end_mrr: dict[str, dict[str, Fraction]] = defaultdict(dict)
    for m in months:
        d = month_end(m)
        for (_w, customer), amounts in stored.on[d].items():
            if customer not in first_paid:
                continue  # only the 12 cohorts' members are read
            total = Fraction(0)
            for currency, amount in amounts.items():
                # MRR converts at the rate of the day it is reported on; without one it is
                # left out, as in every converted total (§2).
                r = Fraction(1) if currency == cur else fx(currency, d)
                total += 0 if r is None else amount * r
            month_end_mrr[customer][m] = total
    rows = cohort_retention(first_paid, month_end_mrr, list(months))
    return months, tuple(
        CohortLine(
            row.month,
            row.customers,
            round_half_away(row.starting_mrr, p.grain),
            tuple(_pct(v) for v in row.retention),
        )
        for row in rows
    )


def _money_by_month(wh: Warehouse, p: _Period) -> tuple[tuple[MonthMoney, ...], MonthMoney]:
    """Revenue, refunds, expenses and net of the last 12 months (§10), footed by column."""
    keys = list(trailing_months(p.month, 12))
    sums: dict[str, list[int]] = {m: [0, 0, 0] for m in keys}
    for r in wh.rows(
        "SELECT day, gross_revenue_micros, refunds_micros, expenses_micros FROM mart.revenue_daily"
        " WHERE workspace_id = :w AND day >= :a AND day <= :b",
        w=p.ws.id,
        a=date.fromisoformat(keys[0] + "-01"),
        b=p.end,
    ):
        s = sums[month_key(_day(r["day"]))]
        s[0] += int(r["gross_revenue_micros"])
        s[1] += int(r["refunds_micros"])
        s[2] += int(r["expenses_micros"])
    cols = [foot([sums[m][i] for m in keys], p.grain) for i in range(3)]
    months = tuple(
        MonthMoney(m, cols[0][i], cols[1][i], cols[2][i], cols[0][i] - cols[2][i], *sums[m])
        for i, m in enumerate(keys)
    )
    exact = [sum(sums[m][i] for m in keys) for i in range(3)]
    shown = [sum(c) for c in cols]
    # Net = revenue - expenses (§10); the columns are footed, so net cross-foots the table.
    total = MonthMoney("Total", shown[0], shown[1], shown[2], shown[0] - shown[2], *exact)
    return months, total


CFO_COLUMNS = (
    ("gross_revenue", "Gross revenue (30 days)", "gross_revenue_cents_30d"),
    ("refunds", "Refunds (30 days)", "refunds_cents_30d"),
    ("net_revenue", "Net revenue (30 days)", "net_revenue_cents_30d"),
    ("total_expenses", "Total expenses (30 days)", "total_expenses_cents_30d"),
    ("recurring_expenses", "Recurring expenses (30 days)", "recurring_expenses_cents_30d"),
    ("one_time_expenses", "One-time expenses (30 days)", "one_time_expenses_cents_30d"),
    ("burn", "Burn (30 days)", "burn_cents_30d"),
    ("recurring_burn", "Recurring burn (30 days)", "recurring_burn_cents_30d"),
    ("cash_on_hand", "Cash on hand", "cash_on_hand_cents"),
)


def _cfo(
    grain: int, cfo_now: dict[str, Any] | None, cfo_prev: dict[str, Any] | None
) -> tuple[tuple[Kpi, ...], tuple[str, ...]]:
    """The §9 CFO metrics at both month ends (the mart's cents) and the month's warnings."""
    metrics = (
        *(_cents_kpi(grain, k, label, cfo_now, cfo_prev, col) for k, label, col in CFO_COLUMNS),
        Kpi(
            "runway_months",
            "Runway (months)",
            "months",
            _frac(_runway(cfo_now)),
            _frac(_runway(cfo_prev)),
            _runway(cfo_now),
            _runway(cfo_prev),
        ),
        Kpi(
            "runway_days",
            "Runway (days)",
            "months",
            None,
            None,
            _runway(cfo_now, "runway_days"),
            _runway(cfo_prev, "runway_days"),
        ),
    )
    warnings = tuple(
        w if isinstance(w, str) else str(w.get("message") or w.get("code") or w)
        for w in (_json(cfo_now["warnings_json"]) if cfo_now else [])
    )
    return metrics, warnings


@dataclass(frozen=True)
class _Margins:
    tiers: tuple[MarginTier, ...]
    total: MarginTier
    watch: tuple[MarginCustomer, ...]
    blended: Decimal | None
    untagged: int


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _shown(value: Any, grain: int) -> int | None:
    return None if value is None else round_half_away(int(value), grain)


def _margins(wh: Warehouse, p: _Period) -> _Margins:
    """Customer margins by health tier (§11), footed over tiers; critical and at-risk named."""
    rows = wh.rows(
        "SELECT * FROM mart.customer_margins_monthly WHERE workspace_id = :w AND month = :m"
        " ORDER BY sort_order",
        w=p.ws.id,
        m=p.month,
    )
    summary = wh.rows(
        "SELECT * FROM mart.customer_margins_summary_monthly WHERE workspace_id = :w AND month = :m",
        w=p.ws.id,
        m=p.month,
    )
    tiers = ("healthy", "at_risk", "critical")
    in_tier = {t: [r for r in rows if r["health_tier"] == t] for t in tiers}
    rev = foot([sum(int(r["revenue_micros"]) for r in in_tier[t]) for t in tiers], p.grain)
    cost = foot([sum(int(r["cost_micros"]) for r in in_tier[t]) for t in tiers], p.grain)
    watch = sorted(
        in_tier["critical"] + in_tier["at_risk"],
        key=lambda r: (
            r["health_tier"] != "critical",
            Decimal(r["margin_percent"] or "-1e9"),  # no percent (no revenue) sorts first
            r["customer_key"],
        ),
    )
    return _Margins(
        tiers=tuple(
            MarginTier(t, len(in_tier[t]), rev[i], cost[i], rev[i] - cost[i])
            for i, t in enumerate(tiers)
        ),
        total=MarginTier("Total", len(rows), sum(rev), sum(cost), sum(rev) - sum(cost)),
        watch=tuple(
            MarginCustomer(
                r["customer_name"] or r["stripe_customer_id"] or r["customer_key"],
                r["health_tier"],
                round_half_away(int(r["revenue_micros"]), p.grain),
                round_half_away(int(r["cost_micros"]), p.grain),
                _dec(r["margin_percent"]),
                _dec(r["projected_margin_percent"]),
                _shown(r["budget_suggestion_micros"], p.grain),
            )
            for r in watch
        ),
        blended=_dec(summary[0]["blended_margin_percent"]) if summary else None,
        untagged=_shown(summary[0]["untagged_cost_micros"], p.grain) or 0 if summary else 0,
    )


SEVERITY_RANK = {"info": 0, "warn": 1, "critical": 2}


def _alerts(wh: Warehouse, p: _Period, names: Mapping[str, str]) -> tuple[AlertEpisode, ...]:
    """The month's alerts as episodes (§14): consecutive days of the same type and subject."""
    episodes: list[AlertEpisode] = []
    for r in wh.rows(
        "SELECT day, type, subject, severity, message FROM mart.alerts WHERE workspace_id = :w"
        " AND day >= :a AND day <= :b ORDER BY type, subject, day",
        w=p.ws.id,
        a=p.start,
        b=p.end,
    ):
        d = _day(r["day"])
        last = episodes[-1] if episodes else None
        same = last is not None and (last.type, last.subject) == (r["type"], r["subject"])
        if last is not None and same and d == last.last_day + timedelta(days=1):
            peak = max(last.peak_severity, r["severity"], key=lambda s: SEVERITY_RANK.get(s, 0))
            episodes[-1] = replace(
                last,
                last_day=d,
                peak_severity=peak,
                message=r["message"],
                open_at_month_end=d == p.end,
            )
        else:
            episodes.append(
                AlertEpisode(r["type"], r["subject"], d, d, r["severity"], r["message"], d == p.end)
            )
    episodes.sort(
        key=lambda e: (-SEVERITY_RANK.get(e.peak_severity, 0), e.first_day, e.type, e.subject)
    )
    # The subject of a margin alert is the customer: print its name.
    return tuple(replace(e, subject=names.get(e.subject, e.subject)) for e in episodes)


@dataclass(frozen=True)
class _Forecast:
    as_of: date | None = None
    start_mrr: int | None = None
    months: tuple[str, ...] = ()
    variants: tuple[ForecastVariant, ...] = ()


def _forecast(wh: Warehouse, p: _Period) -> _Forecast:
    """The workspace's default forecast as of the month's last day (§12), if stored."""
    rows = wh.rows(
        "SELECT as_of, response_json FROM mart.forecasts WHERE workspace_id = :w"
        " AND is_default = :t AND as_of = :d",
        w=p.ws.id,
        t=True,
        d=p.end,
    )
    if not rows:
        return _Forecast()
    resp = _json(rows[0]["response_json"])
    series = resp["series"]
    return _Forecast(
        as_of=_day(rows[0]["as_of"]),
        start_mrr=int((resp.get("start") or {}).get("mrr_micros") or 0),
        months=tuple(series["months"]),
        variants=tuple(
            ForecastVariant(
                name,
                {k: str(v) for k, v in (resp.get("variants") or {}).get(name, {}).items()},
                tuple(series[name]["mrr_cents"]),
                tuple(series[name]["cash_cents"]),
                tuple(None if x is None else str(x) for x in series[name]["runway_months"]),
            )
            for name in ("base", "best", "worst")
            if name in series
        ),
    )


def _failed_payments(
    wh: Warehouse, p: _Period, names: Mapping[str, str]
) -> tuple[FailedPayment, ...]:
    """Failed charges created on the month's local days, in their own currency."""
    tz = p.ws.time_zone
    return tuple(
        FailedPayment(
            _local_day(int(r["created"]), tz),
            names.get(r["customer"], r["customer"] or "(no customer)"),
            int(r["amount"]),
            str(r["currency"]).lower(),
            r["failure_code"] or "",
        )
        for r in wh.rows(
            "SELECT created, customer, amount, currency, failure_code FROM raw.stripe_charges"
            " WHERE workspace_id = :w AND status = 'failed' AND created >= :a AND created < :b"
            " ORDER BY created, id",
            w=p.ws.id,
            a=day_start_ts(p.start, tz),
            b=day_start_ts(p.end + timedelta(days=1), tz),
        )
    )


def _watermarks(wh: Warehouse, ws: str) -> tuple[Watermark, ...]:
    """Per-source freshness: each Stripe stream's last success and high water, each build."""
    streams = wh.rows(
        "SELECT stream, last_success_at, status, high_water FROM raw.sync_state"
        " WHERE workspace_id = :w ORDER BY stream",
        w=ws,
    )
    builds = wh.rows(
        "SELECT asset, built_at, mode, watermark FROM core.build_state WHERE workspace_id = :w"
        " ORDER BY asset",
        w=ws,
    )
    return tuple(
        Watermark(
            f"Stripe {r['stream'].replace('_', ' ')}",
            _iso(r["last_success_at"]),
            r["status"],
            _iso(r["high_water"]),
        )
        for r in streams
    ) + tuple(
        Watermark(f"build {r['asset']}", _iso(r["built_at"]), r["mode"], _iso(r["watermark"]))
        for r in builds
    )


def _check(c: CheckResult | Mapping[str, Any]) -> CheckResult:
    if isinstance(c, CheckResult):
        return c
    return CheckResult(
        str(c["name"]),
        bool(c["passed"]),
        str(c.get("description", "")),
        str(c.get("severity", "ERROR")),
    )


def close_pack_data(
    wh: Warehouse,
    workspace_id: str,
    month: date,
    *,
    generated_at: datetime,
    checks: Sequence[CheckResult | Mapping[str, Any]] = (),
) -> ClosePackData:
    """Read the marts for `month` (any day in it) and build the close pack's footed figures.

    `generated_at` is printed on the cover and fixes the PDF's dates, so a re-render of an
    unchanged month is identical; `checks` are the latest data-quality check results.
    """
    ws = _workspace(wh, workspace_id)
    p = _Period.of(ws, month)
    mrr = _MrrMonth.load(wh, p)
    # The customers' balances at the month ends and FX rates are read once, for both months'
    # retention (start-1 and end of each) and the cohorts.
    balance_days = {p.prev_start - timedelta(days=1), p.prev_end, p.end}
    balance_days.update(month_end(m) for m in trailing_months(p.month, COHORT_MONTHS))
    stored = load_balances(wh, ws.id, balance_days)
    cur = ws.reporting_currency
    fx = fx_lookup(
        wh.rows("SELECT base, currency, date, rate FROM core.fx_rates WHERE base = :b", b=cur), cur
    )
    rates = _retention(wh, ws, p.start, p.end, stored, fx)
    prev_rates = _retention(wh, ws, p.prev_start, p.prev_end, stored, fx)
    cfo_now, cfo_prev = _cfo_day(wh, ws.id, p.end), _cfo_day(wh, ws.id, p.prev_end)
    names = _customer_names(wh, ws.id)
    customers_roll, subscriptions_roll = _count_rolls(mrr, p)
    plan_months, plans, plan_totals = _plans(wh, p)
    cohort_months, cohorts = _cohorts(p, stored, fx)
    money_months, money_total = _money_by_month(wh, p)
    cfo, cfo_warnings = _cfo(p.grain, cfo_now, cfo_prev)
    margins = _margins(wh, p)
    fc = _forecast(wh, p)
    health = sync_status(wh, ws.id, now=int(generated_at.timestamp()))
    return ClosePackData(
        workspace_id=ws.id,
        workspace_name=ws.name,
        currency=ws.reporting_currency,
        time_zone=ws.time_zone,
        month=p.month,
        period_start=p.start,
        period_end=p.end,
        generated_at=generated_at,
        watermarks=_watermarks(wh, ws.id),
        kpis=_kpis(p.grain, mrr, rates, prev_rates, cfo_now, cfo_prev),
        churn=_churn(wh, p, rates, prev_rates),
        roll_forward=_roll_forward(mrr, p),
        customers_roll=customers_roll,
        subscriptions_roll=subscriptions_roll,
        plan_months=plan_months,
        plans=plans,
        plan_totals=plan_totals,
        cohort_months=cohort_months,
        cohorts=cohorts,
        money_months=money_months,
        money_total=money_total,
        cfo=cfo,
        cfo_warnings=cfo_warnings,
        margin_tiers=margins.tiers,
        margin_total=margins.total,
        blended_margin_percent=margins.blended,
        margin_watch=margins.watch,
        untagged_cost=margins.untagged,
        alerts=_alerts(wh, p, names),
        forecast_as_of=fc.as_of,
        forecast_start_mrr=fc.start_mrr,
        forecast_months=fc.months,
        forecast=fc.variants,
        failed_payments=_failed_payments(wh, p, names),
        checks=tuple(_check(c) for c in checks),
        sync_health=health["sync_health"],
        sync_reason=health["health_reason"],
        tie_outs=_tie_outs(wh, ws, p.start, p.end, mrr.opening, mrr.movements, mrr.closing),
        exact={
            "opening": mrr.opening,
            "closing": mrr.closing,
            "movements": mrr.movements,
            "plan_exact": {s.plan: s.exact for s in plans},
        },
    )


def _local_day(ts: int, tz: str) -> date:
    from zoneinfo import ZoneInfo

    return datetime.fromtimestamp(ts, ZoneInfo(tz)).date()


def _customer_names(wh: Warehouse, ws: str) -> dict[str, str]:
    return {
        r["id"]: r["name"] or r["id"]
        for r in wh.rows("SELECT id, name FROM raw.stripe_customers WHERE workspace_id = :w", w=ws)
    }


def _fmt(micros: int | Fraction, grain: int) -> str:
    return f"{_units(micros, grain):,}"


def _tie_outs(
    wh: Warehouse,
    ws: Workspace,
    start: date,
    end: date,
    opening: Fraction,
    mv: Mapping[str, Fraction],
    closing: Fraction,
) -> tuple[TieOut, ...]:
    """Ledger = Stripe charges, revenue mart = ledger and the MRR identity for the month."""
    grain = micros_per_minor(ws.reporting_currency)
    t0, t1 = day_start_ts(start, ws.time_zone), day_start_ts(end + timedelta(days=1), ws.time_zone)
    charges = wh.rows(
        "SELECT COUNT(*) AS n, currency FROM raw.stripe_charges WHERE workspace_id = :w"
        " AND status = 'succeeded' AND created >= :a AND created < :b GROUP BY currency",
        w=ws.id,
        a=t0,
        b=t1,
    )
    ledger = wh.rows(
        "SELECT COUNT(*) AS n, currency FROM core.ledger WHERE workspace_id = :w"
        " AND kind = 'gross_revenue' AND source_table = 'raw.stripe_charges'"
        " AND day >= :a AND day <= :b GROUP BY currency",
        w=ws.id,
        a=start,
        b=end,
    )
    n_charges = {str(r["currency"]).lower(): int(r["n"]) for r in charges}
    n_ledger = {str(r["currency"]).lower(): int(r["n"]) for r in ledger}
    ledger_rev = int(
        wh.scalar(
            "SELECT COALESCE(SUM(amount_reporting_micros), 0) FROM core.ledger WHERE workspace_id = :w"
            " AND kind IN ('gross_revenue', 'manual_revenue') AND day >= :a AND day <= :b",
            w=ws.id,
            a=start,
            b=end,
        )
        or 0
    )
    mart_rev = int(
        wh.scalar(
            "SELECT COALESCE(SUM(gross_revenue_micros), 0) FROM mart.revenue_daily"
            " WHERE workspace_id = :w AND day >= :a AND day <= :b",
            w=ws.id,
            a=start,
            b=end,
        )
        or 0
    )
    moved = (
        mv["new"]
        + mv["expansion"]
        + mv["reactivation"]
        - mv["contraction"]
        - mv["churn"]
        + mv["fx"]
    )

    def counts(d: Mapping[str, int]) -> str:
        return ", ".join(f"{c.upper()} {n}" for c, n in sorted(d.items())) or "none"

    return (
        TieOut(
            "Ledger = Stripe charges (count per currency)",
            "Stripe succeeded charges",
            counts(n_charges),
            "ledger gross-revenue entries",
            counts(n_ledger),
            n_charges == n_ledger,
        ),
        TieOut(
            "Revenue mart = ledger",
            "ledger revenue",
            _fmt(ledger_rev, grain),
            "mart.revenue_daily revenue",
            _fmt(mart_rev, grain),
            ledger_rev == mart_rev,
        ),
        TieOut(
            "MRR identity (exact)",
            "opening + movements",
            _fmt(opening + moved, grain),
            "closing MRR",
            _fmt(closing, grain),
            opening + moved == closing,
        ),
    )
