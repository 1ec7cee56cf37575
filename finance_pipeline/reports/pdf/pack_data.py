"""The month-end close pack's figures, read from the marts: exact values, and their displayed
roundings footed per docs/metrics.md §2 so every printed table adds up to the cent."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from finance_pipeline.core.history_io import states_from_rows
from finance_pipeline.lib.close_pack import (
    cohort_retention,
    customer_churn_rate,
    month_end,
    month_key,
    shift_month,
    subscriber_churn_30d,
    trailing_months,
)
from finance_pipeline.lib.ledger import fx_lookup
from finance_pipeline.lib.money import (
    MICROS_PER_CENT,
    foot,
    foot_roll_forward,
    percent,
    round_half_away,
)
from finance_pipeline.lib.mrr import subscription_counts
from finance_pipeline.lib.mrr_timeline import expand_converted_trials
from finance_pipeline.lib.retention import RetentionRates, customer_balances
from finance_pipeline.metrics.mrr_compute import mrr_settings
from finance_pipeline.metrics.retention_io import load_mrr_changes, retention_for_period
from finance_pipeline.stripe_sync.health import sync_status
from finance_pipeline.tenancy import Workspace, list_workspaces
from finance_pipeline.warehouse.db import Warehouse

CENT = MICROS_PER_CENT
#: Movements of the MRR roll-forward in print order, with their sign (§5).
MOVEMENTS = (
    ("new", 1),
    ("expansion", 1),
    ("reactivation", 1),
    ("contraction", -1),
    ("churn", -1),
    ("fx", 1),
)
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

    @property
    def all_tie_outs_pass(self) -> bool:
        """True when every reconciliation printed in the appendix agrees."""
        return all(t.passed for t in self.tie_outs)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else (value or {})


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _units(micros: int | Fraction) -> Decimal:
    """Shown micro-units (a multiple of a cent) as a 2-decimal unit amount."""
    return Decimal(round_half_away(micros, CENT) // CENT).scaleb(-2)


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
    key: str, label: str, cur: Fraction | None, prev: Fraction | None, note: str = ""
) -> Kpi:
    return Kpi(
        key,
        label,
        "money",
        cur,
        prev,
        None if cur is None else _units(cur),
        None if prev is None else _units(prev),
        note,
    )


def _cents_kpi(
    key: str, label: str, cur: dict | None, prev: dict | None, col: str, note: str = ""
) -> Kpi:
    def get(r: dict | None) -> Fraction | None:
        return None if r is None or r[col] is None else Fraction(int(r[col]) * CENT)

    return _money_kpi(key, label, get(cur), get(prev), note)


def _ratio_kpi(
    key: str, label: str, cur: Fraction | None, prev: Fraction | None, note: str = ""
) -> Kpi:
    return Kpi(key, label, "percent", cur, prev, _pct(cur), _pct(prev), note)


def _retention(wh: Warehouse, ws: Workspace, start: date, end: date) -> RetentionRates | None:
    try:
        return retention_for_period(wh, ws.id, ws.reporting_currency, start, end)
    except ValueError:  # the marts do not cover the period (e.g. the first month of data)
        return None


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
    cur = ws.reporting_currency
    mkey = month_key(month)
    start, end = month.replace(day=1), month_end(mkey)
    prev_key = shift_month(mkey, -1)
    prev_start, prev_end = date.fromisoformat(prev_key + "-01"), month_end(prev_key)
    opening_day = start - timedelta(days=1)

    # --- MRR marts: balances at month ends, movements summed over the month (§5) ---------------
    days = wh.rows(
        "SELECT * FROM mart.mrr_daily WHERE workspace_id = :w AND day >= :a AND day <= :b"
        " ORDER BY day",
        w=ws.id,
        a=prev_start,
        b=end,
    )
    month_rows = [r for r in days if _day(r["day"]) >= start]
    prev_rows = [r for r in days if _day(r["day"]) < start]
    close_row = month_rows[-1] if month_rows else None
    open_row = _mrr_day(wh, ws.id, opening_day)

    def movements(rows: list[dict[str, Any]]) -> dict[str, Fraction]:
        return {k: sum((_exact(r, k) for r in rows), Fraction(0)) for k, _s in MOVEMENTS}

    mv, prev_mv = movements(month_rows), movements(prev_rows)
    opening = _exact(month_rows[0], "previous_mrr") if month_rows else Fraction(0)
    closing = _exact(close_row, "mrr")
    signed = {k: s * mv[k] for k, s in MOVEMENTS}
    opening_r, moves_r, closing_r = foot_roll_forward(opening, signed, closing, CENT)
    roll = (
        Line(f"Opening MRR ({opening_day.isoformat()})", opening, opening_r, "balance"),
        *(Line(k.capitalize() if k != "fx" else "FX", signed[k], moves_r[k]) for k, _ in MOVEMENTS),
        Line(f"Closing MRR ({end.isoformat()})", closing, closing_r, "balance"),
    )

    def net_new(m: dict[str, Fraction]) -> Fraction:
        # Net new MRR leaves fx out: it is the business's own movement, not the exchange rate's.
        return m["new"] + m["expansion"] + m["reactivation"] - m["contraction"] - m["churn"]

    prev_close = _exact(prev_rows[-1], "mrr") if prev_rows else None
    rates = _retention(wh, ws, start, end)
    prev_rates = _retention(wh, ws, prev_start, prev_end)

    def arpa(row: dict[str, Any] | None) -> Fraction | None:
        if row is None or not row["paying_customers"]:
            return None
        return _exact(row, "mrr") / row["paying_customers"]

    def cmrr(row: dict[str, Any] | None) -> Fraction | None:
        return None if row is None else _exact(row, "cmrr")

    cfo_now = _cfo_day(wh, ws.id, end)
    cfo_prev = _cfo_day(wh, ws.id, prev_end)
    last_prev = prev_rows[-1] if prev_rows else None

    def runway(r: dict | None) -> Fraction | None:
        return (
            None if r is None or r["runway_months"] is None else Fraction(str(r["runway_months"]))
        )

    kpis = (
        _money_kpi("mrr", "MRR", closing if close_row else None, prev_close),
        _money_kpi(
            "cmrr",
            "Committed MRR (CMRR)",
            cmrr(close_row),
            cmrr(last_prev),
            "stops at a scheduled cancellation",
        ),
        _money_kpi(
            "arr",
            "ARR",
            12 * closing if close_row else None,
            None if prev_close is None else 12 * prev_close,
            "12 x MRR",
        ),
        _money_kpi(
            "net_new_mrr",
            "Net new MRR",
            net_new(mv) if month_rows else None,
            net_new(prev_mv) if prev_rows else None,
            "excludes FX",
        ),
        _ratio_kpi(
            "nrr",
            "Net revenue retention (NRR)",
            rates and rates.nrr,
            prev_rates and prev_rates.nrr,
            "cohort paying at month start",
        ),
        _ratio_kpi(
            "grr",
            "Gross revenue retention (GRR)",
            rates and rates.grr,
            prev_rates and prev_rates.grr,
            "capped at starting MRR",
        ),
        _money_kpi("arpa", "ARPA", arpa(close_row), arpa(last_prev), "MRR / paying customers"),
        Kpi(
            "paying_customers",
            "Paying customers",
            "count",
            None if close_row is None else Fraction(close_row["paying_customers"]),
            None if last_prev is None else Fraction(last_prev["paying_customers"]),
            None if close_row is None else Decimal(close_row["paying_customers"]),
            None if last_prev is None else Decimal(last_prev["paying_customers"]),
        ),
        _cents_kpi(
            "burn", "Burn (30 days)", cfo_now, cfo_prev, "burn_cents_30d", "expenses - net revenue"
        ),
        _cents_kpi(
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
            runway(cfo_now),
            runway(cfo_prev),
            None if runway(cfo_now) is None else Decimal(str(cfo_now["runway_months"])),
            None if runway(cfo_prev) is None else Decimal(str(cfo_prev["runway_months"])),
            "months of cash at recurring burn",
        ),
    )

    # --- churn conventions (§6) ----------------------------------------------------------------
    changes = load_mrr_changes(wh, ws.id, end)

    def churn_events(a: date, b: date) -> int:
        return int(
            wh.scalar(
                "SELECT COUNT(*) FROM mart.mrr_movements WHERE workspace_id = :w AND kind = 'churn'"
                " AND day >= :a AND day <= :b",
                w=ws.id,
                a=a,
                b=b,
            )
            or 0
        )

    # A converted trial counts from trial_end (§3): split those states as the MRR engine does.
    states = expand_converted_trials(
        states_from_rows(
            wh.rows("SELECT * FROM core.subscription_history WHERE workspace_id = :w", w=ws.id)
        )
    )
    by_sub: dict[str, list[Any]] = defaultdict(list)
    for st in states:
        by_sub[st.subscription_id].append(st)
    settings = mrr_settings(ws)

    def counts_on(sub: str, day: date) -> bool:
        return any(subscription_counts(s, day, settings) for s in by_sub[sub])

    stripe_now = subscriber_churn_30d(sorted(by_sub), counts_on, end)
    stripe_prev = subscriber_churn_30d(sorted(by_sub), counts_on, prev_end)
    cm_now = customer_churn_rate(churn_events(start, end), rates.starting_customers if rates else 0)
    cm_prev = customer_churn_rate(
        churn_events(prev_start, prev_end), prev_rates.starting_customers if prev_rates else 0
    )

    def rate(r: RetentionRates | None, name: str) -> Decimal | None:
        return None if r is None else _pct(getattr(r, name))

    churn = (
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
            f"{churn_events(start, end)} churn events",
        ),
        ChurnRate(
            "Stripe 30-day subscriber churn",
            "subscriptions churned in 30 days / subscriptions 30 days before",
            _pct(stripe_now[2]),
            _pct(stripe_prev[2]),
            f"{stripe_now[0]} of {stripe_now[1]} subscriptions",
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

    # --- customers and subscriptions roll-forward ----------------------------------------------
    def count(rows: list[dict[str, Any]], col: str) -> int:
        return sum(int(r[col]) for r in rows)

    open_customers = int(open_row["paying_customers"]) if open_row else 0
    close_customers = int(close_row["paying_customers"]) if close_row else 0
    new_c, react_c = count(month_rows, "new_customers"), count(month_rows, "reactivated_customers")
    churn_c = count(month_rows, "churned_customers")
    delinquent = count(month_rows, "delinquent_churned_customers")
    customers_roll = [
        CountLine(f"Paying customers ({opening_day.isoformat()})", open_customers, "balance"),
        CountLine("New", new_c),
        CountLine("Reactivated", react_c),
        CountLine(f"Churned (of which delinquent: {delinquent})", -churn_c),
    ]
    other = close_customers - (open_customers + new_c + react_c - churn_c)
    if other:  # a customer moving between currencies only; shown rather than hidden
        customers_roll.append(CountLine("Other", other))
    customers_roll.append(
        CountLine(f"Paying customers ({end.isoformat()})", close_customers, "balance")
    )
    open_subs = int(open_row["active_subscriptions"]) if open_row else 0
    close_subs = int(close_row["active_subscriptions"]) if close_row else 0
    subscriptions_roll = (
        CountLine(f"Active subscriptions ({opening_day.isoformat()})", open_subs, "balance"),
        CountLine("Net change", close_subs - open_subs),
        CountLine(f"Active subscriptions ({end.isoformat()})", close_subs, "balance"),
    )

    # --- MRR by plan, last 13 month-ends --------------------------------------------------------
    plan_months = tuple(trailing_months(mkey, 13))
    plan_names = {
        r["id"]: r["name"] or r["id"]
        for r in wh.rows(
            "SELECT p.id AS id, pr.name AS name FROM raw.stripe_prices p"
            " LEFT JOIN raw.stripe_products pr"
            " ON pr.id = p.product AND pr.workspace_id = p.workspace_id WHERE p.workspace_id = :w",
            w=ws.id,
        )
    }
    ends = [month_end(m) for m in plan_months]
    plan_rows = wh.rows(
        "SELECT day, plan_id, mrr_exact FROM mart.mrr_plan_daily WHERE workspace_id = :w"
        " AND day >= :a AND day <= :b",
        w=ws.id,
        a=ends[0],
        b=ends[-1],
    )
    by_plan: dict[str, dict[date, Fraction]] = defaultdict(dict)
    end_set = set(ends)
    for r in plan_rows:
        d = _day(r["day"])
        if d in end_set:
            name = plan_names.get(r["plan_id"], r["plan_id"])
            by_plan[name][d] = by_plan[name].get(d, Fraction(0)) + Fraction(r["mrr_exact"])
    ranked = sorted(by_plan, key=lambda p: (-by_plan[p].get(ends[-1], Fraction(0)), p))
    named = ranked[:PLAN_LINES] if len(ranked) > PLAN_LINES + 1 else ranked
    series: list[tuple[str, list[Fraction]]] = [
        (p, [by_plan[p].get(d, Fraction(0)) for d in ends]) for p in named
    ]
    rest = [p for p in ranked if p not in named]
    if rest:
        series.append(
            (
                "Other plans",
                [sum((by_plan[p].get(d, Fraction(0)) for p in rest), Fraction(0)) for d in ends],
            )
        )
    columns = [foot([s[1][i] for s in series], CENT) if series else [] for i in range(len(ends))]
    plans = tuple(
        PlanSeries(name, tuple(values), tuple(columns[i][j] for i in range(len(ends))))
        for j, (name, values) in enumerate(series)
    )
    plan_totals = tuple(sum(col) for col in columns)

    # --- net-MRR cohort retention by first-paid month (12 cohorts) ------------------------------
    fx = fx_lookup(
        wh.rows("SELECT base, currency, date, rate FROM core.fx_rates WHERE base = :b", b=cur), cur
    )
    cohort_months = tuple(trailing_months(mkey, 12))
    first_paid: dict[str, str] = {}
    for ch in sorted(changes, key=lambda c: c.day):
        if ch.mrr > 0 and ch.customer_id not in first_paid:
            first_paid[ch.customer_id] = month_key(ch.day)
    month_end_mrr: dict[str, dict[str, Fraction]] = defaultdict(dict)
    for m in cohort_months:
        d = month_end(m)
        for (_w, customer), amounts in customer_balances(changes, d).items():
            total = Fraction(0)
            for currency, amount in amounts.items():
                r = Fraction(1) if currency == cur else fx(currency, d)
                total += 0 if r is None else amount * r  # a missing rate leaves it out (§2)
            month_end_mrr[customer][m] = total
    cohorts = tuple(
        CohortLine(
            row.month,
            row.customers,
            round_half_away(row.starting_mrr, CENT),
            tuple(_pct(v) for v in row.retention),
        )
        for row in cohort_retention(first_paid, month_end_mrr, list(cohort_months))
    )

    # --- revenue, refunds, expenses and net by month (§10), last 12 months ----------------------
    money_keys = list(trailing_months(mkey, 12))
    rev_rows = wh.rows(
        "SELECT day, gross_revenue_micros, refunds_micros, expenses_micros FROM mart.revenue_daily"
        " WHERE workspace_id = :w AND day >= :a AND day <= :b",
        w=ws.id,
        a=date.fromisoformat(money_keys[0] + "-01"),
        b=end,
    )
    sums: dict[str, list[int]] = {m: [0, 0, 0] for m in money_keys}
    for r in rev_rows:
        s = sums[month_key(_day(r["day"]))]
        s[0] += int(r["gross_revenue_micros"])
        s[1] += int(r["refunds_micros"])
        s[2] += int(r["expenses_micros"])
    cols = [foot([sums[m][i] for m in money_keys], CENT) for i in range(3)]
    money_months = tuple(
        MonthMoney(m, cols[0][i], cols[1][i], cols[2][i], cols[0][i] - cols[2][i], *sums[m])
        for i, m in enumerate(money_keys)
    )
    totals = [sum(sums[m][i] for m in money_keys) for i in range(3)]
    shown_totals = [sum(c) for c in cols]
    # Net = revenue - expenses (§10); the columns are footed, so net cross-foots the table.
    money_total = MonthMoney(
        "Total",
        shown_totals[0],
        shown_totals[1],
        shown_totals[2],
        shown_totals[0] - shown_totals[2],
        *totals,
    )

    # --- CFO metrics (§9) at month end ----------------------------------------------------------
    cfo_cols = (
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
    cfo = (
        *(_cents_kpi(k, label, cfo_now, cfo_prev, col) for k, label, col in cfo_cols),
        Kpi(
            "runway_months",
            "Runway (months)",
            "months",
            runway(cfo_now),
            runway(cfo_prev),
            None
            if cfo_now is None or cfo_now["runway_months"] is None
            else Decimal(str(cfo_now["runway_months"])),
            None
            if cfo_prev is None or cfo_prev["runway_months"] is None
            else Decimal(str(cfo_prev["runway_months"])),
        ),
        Kpi(
            "runway_days",
            "Runway (days)",
            "months",
            None,
            None,
            None
            if cfo_now is None or cfo_now["runway_days"] is None
            else Decimal(str(cfo_now["runway_days"])),
            None
            if cfo_prev is None or cfo_prev["runway_days"] is None
            else Decimal(str(cfo_prev["runway_days"])),
        ),
    )
    cfo_warnings = tuple(
        w if isinstance(w, str) else str(w.get("message") or w.get("code") or w)
        for w in (_json(cfo_now["warnings_json"]) if cfo_now else [])
    )

    # --- customer margins by tier (§11) ---------------------------------------------------------
    margin_rows = wh.rows(
        "SELECT * FROM mart.customer_margins_monthly WHERE workspace_id = :w AND month = :m"
        " ORDER BY sort_order",
        w=ws.id,
        m=mkey,
    )
    summary = wh.rows(
        "SELECT * FROM mart.customer_margins_summary_monthly WHERE workspace_id = :w AND month = :m",
        w=ws.id,
        m=mkey,
    )
    tiers = ("healthy", "at_risk", "critical")
    tier_rev = {
        t: sum(int(r["revenue_micros"]) for r in margin_rows if r["health_tier"] == t)
        for t in tiers
    }
    tier_cost = {
        t: sum(int(r["cost_micros"]) for r in margin_rows if r["health_tier"] == t) for t in tiers
    }
    rev_r = foot([tier_rev[t] for t in tiers], CENT)
    cost_r = foot([tier_cost[t] for t in tiers], CENT)
    margin_tiers = tuple(
        MarginTier(
            t,
            sum(1 for r in margin_rows if r["health_tier"] == t),
            rev_r[i],
            cost_r[i],
            rev_r[i] - cost_r[i],
        )
        for i, t in enumerate(tiers)
    )
    margin_total = MarginTier(
        "Total", len(margin_rows), sum(rev_r), sum(cost_r), sum(rev_r) - sum(cost_r)
    )
    watch = [r for r in margin_rows if r["health_tier"] in ("critical", "at_risk")]
    watch.sort(
        key=lambda r: (
            r["health_tier"] != "critical",
            Decimal(r["margin_percent"] or "-1e9"),
            r["customer_key"],
        )
    )
    margin_watch = tuple(
        MarginCustomer(
            r["customer_name"] or r["stripe_customer_id"] or r["customer_key"],
            r["health_tier"],
            round_half_away(int(r["revenue_micros"]), CENT),
            round_half_away(int(r["cost_micros"]), CENT),
            None if r["margin_percent"] is None else Decimal(str(r["margin_percent"])),
            None
            if r["projected_margin_percent"] is None
            else Decimal(str(r["projected_margin_percent"])),
            None
            if r["budget_suggestion_micros"] is None
            else round_half_away(int(r["budget_suggestion_micros"]), CENT),
        )
        for r in watch
    )
    blended = (
        Decimal(str(summary[0]["blended_margin_percent"]))
        if summary and summary[0]["blended_margin_percent"] is not None
        else None
    )
    untagged = round_half_away(int(summary[0]["untagged_cost_micros"]), CENT) if summary else 0

    # --- alerts of the month, as episodes (§14) -------------------------------------------------
    alert_rows = wh.rows(
        "SELECT day, type, subject, severity, message FROM mart.alerts WHERE workspace_id = :w"
        " AND day >= :a AND day <= :b ORDER BY type, subject, day",
        w=ws.id,
        a=start,
        b=end,
    )
    rank = {"info": 0, "warn": 1, "critical": 2}
    episodes: list[AlertEpisode] = []
    for r in alert_rows:
        d = _day(r["day"])
        last = episodes[-1] if episodes else None
        if (
            last
            and (last.type, last.subject) == (r["type"], r["subject"])
            and d == last.last_day + timedelta(days=1)
        ):
            peak = max(last.peak_severity, r["severity"], key=lambda s: rank.get(s, 0))
            episodes[-1] = AlertEpisode(
                last.type, last.subject, last.first_day, d, peak, r["message"], d == end
            )
        else:
            episodes.append(
                AlertEpisode(r["type"], r["subject"], d, d, r["severity"], r["message"], d == end)
            )
    episodes.sort(key=lambda e: (-rank.get(e.peak_severity, 0), e.first_day, e.type, e.subject))
    names = _customer_names(wh, ws.id)
    episodes = [
        AlertEpisode(
            e.type,
            names.get(e.subject, e.subject),
            e.first_day,
            e.last_day,
            e.peak_severity,
            e.message,
            e.open_at_month_end,
        )
        for e in episodes
    ]

    # --- default forecast (§12) -----------------------------------------------------------------
    fc_rows = wh.rows(
        "SELECT as_of, response_json FROM mart.forecasts WHERE workspace_id = :w"
        " AND is_default = :t AND as_of = :d",
        w=ws.id,
        t=True,
        d=end,
    )
    forecast: tuple[ForecastVariant, ...] = ()
    forecast_months: tuple[str, ...] = ()
    forecast_as_of = None
    forecast_start = None
    if fc_rows:
        resp = _json(fc_rows[0]["response_json"])
        forecast_as_of = _day(fc_rows[0]["as_of"])
        forecast_months = tuple(resp["series"]["months"])
        forecast_start = int((resp.get("start") or {}).get("mrr_micros") or 0)
        forecast = tuple(
            ForecastVariant(
                name,
                {k: str(v) for k, v in (resp.get("variants") or {}).get(name, {}).items()},
                tuple(resp["series"][name]["mrr_cents"]),
                tuple(resp["series"][name]["cash_cents"]),
                tuple(None if x is None else str(x) for x in resp["series"][name]["runway_months"]),
            )
            for name in ("base", "best", "worst")
            if name in resp["series"]
        )

    # --- failed payments of the month -----------------------------------------------------------
    from finance_pipeline.lib.timeutil import day_start_ts

    t0, t1 = day_start_ts(start, ws.time_zone), day_start_ts(end + timedelta(days=1), ws.time_zone)
    failed = tuple(
        FailedPayment(
            _local_day(int(r["created"]), ws.time_zone),
            names.get(r["customer"], r["customer"] or "(no customer)"),
            int(r["amount"]),
            str(r["currency"]).lower(),
            r["failure_code"] or "",
        )
        for r in wh.rows(
            "SELECT created, customer, amount, currency, failure_code FROM raw.stripe_charges"
            " WHERE workspace_id = :w AND status = 'failed' AND created >= :a AND created < :b"
            " ORDER BY created, id",
            w=ws.id,
            a=t0,
            b=t1,
        )
    )

    # --- data quality: sync, watermarks and tie-outs --------------------------------------------
    health = sync_status(wh, ws.id, now=int(generated_at.timestamp()))
    watermarks = tuple(
        Watermark(
            f"Stripe {r['stream'].replace('_', ' ')}",
            _iso(r["last_success_at"]),
            r["status"],
            _iso(r["high_water"]),
        )
        for r in wh.rows(
            "SELECT stream, last_success_at, status, high_water FROM raw.sync_state"
            " WHERE workspace_id = :w"
            " ORDER BY stream",
            w=ws.id,
        )
    ) + tuple(
        Watermark(f"build {r['asset']}", _iso(r["built_at"]), r["mode"], _iso(r["watermark"]))
        for r in wh.rows(
            "SELECT asset, built_at, mode, watermark FROM core.build_state WHERE workspace_id = :w"
            " ORDER BY asset",
            w=ws.id,
        )
    )
    tie_outs = _tie_outs(wh, ws, start, end, opening, mv, closing)
    check_results = tuple(
        c
        if isinstance(c, CheckResult)
        else CheckResult(
            str(c["name"]),
            bool(c["passed"]),
            str(c.get("description", "")),
            str(c.get("severity", "ERROR")),
        )
        for c in checks
    )
    return ClosePackData(
        workspace_id=ws.id,
        workspace_name=ws.name,
        currency=cur,
        time_zone=ws.time_zone,
        month=mkey,
        period_start=start,
        period_end=end,
        generated_at=generated_at,
        watermarks=watermarks,
        kpis=kpis,
        churn=churn,
        roll_forward=roll,
        customers_roll=tuple(customers_roll),
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
        margin_tiers=margin_tiers,
        margin_total=margin_total,
        blended_margin_percent=blended,
        margin_watch=margin_watch,
        untagged_cost=untagged,
        alerts=tuple(episodes),
        forecast_as_of=forecast_as_of,
        forecast_start_mrr=forecast_start,
        forecast_months=forecast_months,
        forecast=forecast,
        failed_payments=failed,
        checks=check_results,
        sync_health=health["sync_health"],
        sync_reason=health["health_reason"],
        tie_outs=tie_outs,
        exact={
            "opening": opening,
            "closing": closing,
            "movements": mv,
            "plan_exact": {p.plan: p.exact for p in plans},
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


def _fmt(micros: int | Fraction) -> str:
    return f"{_units(micros):,}"


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
    from finance_pipeline.lib.timeutil import day_start_ts

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
            _fmt(ledger_rev),
            "mart.revenue_daily revenue",
            _fmt(mart_rev),
            ledger_rev == mart_rev,
        ),
        TieOut(
            "MRR identity (exact)",
            "opening + movements",
            _fmt(opening + moved),
            "closing MRR",
            _fmt(closing),
            opening + moved == closing,
        ),
    )
