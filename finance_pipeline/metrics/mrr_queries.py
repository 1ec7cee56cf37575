"""The platform finance API "Get MRR Metrics" and "Get MRR Trend" answers, read from the MRR marts.

Each function is one call for the read API and returns the seed's `data` object. Definitions
(docs/metrics.md):

- The **current day** D is the latest day materialized in `mart.mrr_daily` on or before `as_of`
  (the latest one overall when `as_of` is omitted). Nothing materialized -> every field null and an
  empty trend; a workspace whose marts hold zeros gets zeros (known) rather than nulls (unknown).
- `as_of` in the answer is the instant D's balances are taken at: the last second of local day D in
  the workspace's time zone, in UTC (§1: the state at the last instant of D counts).
- `current_mrr` is MRR(D) (§4) in the reporting currency; `active_subscriptions` the subscriptions
  that count on D (§4); `mrr_growth_percent` compares MRR(D) with MRR(D-30) and
  `churn_rate_percent` is the logo churn of the 30 days ending D (§6), both null when the
  denominator is 0 (or MRR(D-30) is not materialized). Churn reads the stored change rows, so like
  every §6 rate it assumes the marts were backfilled from the workspace's first data.
- A trend month's `mrr` and `subscriptions` are the balances on its last day (§5: period MRR is the
  value on its last day, never a sum), or on D for D's own, still open month. A month whose day
  is not materialized reports nulls instead of inventing a value. `growth_percent` compares that
  value with the previous month's (§6), null when either is null or the previous is 0. The
  `months` listed end with D's month; with `plan_id` both numbers come from `mart.mrr_plan_daily`
  (a materialized day without a row for the plan is 0: plans with nothing that day have no row).
- Money is a `Decimal` with 2 places, rounded once, half away from zero, from the exact stored
  values (§2); percentages are `Decimal` with 2 places.

Errors are `MrrQueryError` with the seed envelope's `code`/`param`/`message` and an HTTP `status`:
400 for malformed parameters (`months` outside 1..24, a bad `as_of` or `plan_id`), 404
`resource_missing` for an unknown workspace or a `plan_id` this workspace has never had (v1 API:
"not found or not owned by your org", so another org's plan looks exactly like a missing one).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import TypedDict

from finance_pipeline.lib.cfo_daily import as_date
from finance_pipeline.lib.margins import shift_month
from finance_pipeline.lib.money import micros_to_decimal, percent
from finance_pipeline.lib.recognition import month_key
from finance_pipeline.lib.retention import growth_percent, mrr_growth_percent
from finance_pipeline.lib.revenue_analytics import AnalyticsParamError, parse_date_param
from finance_pipeline.lib.timeutil import day_start
from finance_pipeline.metrics.cfo_assets import stored_exact_mrr
from finance_pipeline.metrics.retention_io import logo_churn_counts
from finance_pipeline.warehouse.db import Warehouse

DEFAULT_MONTHS = 12
MAX_MONTHS = 24
MAX_PLAN_ID_CHARS = 255
GROWTH_LOOKBACK_DAYS = 30  # §6: mrr_growth_percent compares MRR(D) with MRR(D-30)


class MrrMetrics(TypedDict):
    """The seed's `Get MRR Metrics` data object (money and percents as 2-place Decimals)."""

    current_mrr: Decimal | None
    mrr_growth_percent: Decimal | None
    active_subscriptions: int | None
    churn_rate_percent: Decimal | None
    as_of: str | None


class MrrTrendMonth(TypedDict):
    """One month of the seed's `Get MRR Trend`: balances on the month's last (or current) day."""

    month: str
    mrr: Decimal | None
    subscriptions: int | None
    growth_percent: Decimal | None


class MrrTrend(TypedDict):
    """The seed's `Get MRR Trend` data object, oldest month first."""

    months: list[MrrTrendMonth]


class MrrQueryError(AnalyticsParamError):
    """A request the MRR endpoints refuse: `status` 400 (bad parameter) or 404 (unknown resource)."""

    def __init__(self, code: str, param: str, message: str, status: int = 400) -> None:
        super().__init__(code, param, message)
        self.status = status


def mrr_metrics(
    wh: Warehouse,
    workspace_id: str,
    as_of: date | str | None = None,
    *,
    time_zone: str | None = None,
) -> MrrMetrics:
    """Seed `Get MRR Metrics`: MRR, 30-day growth, active subscriptions and 30-day logo churn on D.

    `time_zone`: the workspace's, from a caller that has already read the workspace (the API).
    """
    until = _as_of(as_of)
    tz = time_zone or _workspace_time_zone(wh, workspace_id)
    day = current_day(wh, workspace_id, until)
    if day is None:
        return {
            "current_mrr": None,
            "mrr_growth_percent": None,
            "active_subscriptions": None,
            "churn_rate_percent": None,
            "as_of": None,
        }
    back = day - timedelta(days=GROWTH_LOOKBACK_DAYS)
    daily = _daily_rows(wh, workspace_id, [back, day])
    mrr = {d: stored_exact_mrr(r) for d, r in daily.items()}
    return {
        "current_mrr": micros_to_decimal(mrr[day]),
        # An unmaterialized D-30 is unknown, not 0: null rather than a growth from nothing.
        "mrr_growth_percent": mrr_growth_percent(mrr, day) if back in mrr else None,
        "active_subscriptions": int(daily[day]["active_subscriptions"]),
        "churn_rate_percent": _churn_rate_percent(wh, workspace_id, day),
        "as_of": end_of_day_utc(day, tz),
    }


def mrr_trend(
    wh: Warehouse,
    workspace_id: str,
    months: int | str = DEFAULT_MONTHS,
    plan_id: str | None = None,
    as_of: date | str | None = None,
    *,
    known_workspace: bool = False,
) -> MrrTrend:
    """Seed `Get MRR Trend`: month-end MRR, subscriptions and growth for the last `months` months.

    `known_workspace`: the caller has read the workspace (the API), so its existence is not
    checked again.
    """
    n = _months(months)
    plan = _plan_id(plan_id)
    until = _as_of(as_of)
    if not known_workspace:
        _workspace_time_zone(wh, workspace_id)  # 404 for an unknown workspace
    day = current_day(wh, workspace_id, until)
    if day is None:
        if plan is not None:
            _require_known_plan(wh, workspace_id, plan)
        return {"months": []}
    labels = [shift_month(month_key(day), -i) for i in range(n, -1, -1)]  # one extra for growth
    value_days = [min(_month_end(m), day) for m in labels]
    values = _balances(wh, workspace_id, value_days, plan)
    if plan is not None and not values.plan_seen:
        _require_known_plan(wh, workspace_id, plan)
    out: list[MrrTrendMonth] = []
    for i in range(1, len(labels)):
        mrr, subs = values.on(value_days[i])
        previous, _ = values.on(value_days[i - 1])
        out.append(
            {
                "month": labels[i],
                "mrr": None if mrr is None else micros_to_decimal(mrr),
                "subscriptions": subs,
                "growth_percent": None
                if mrr is None or previous is None
                else growth_percent(mrr, previous),
            }
        )
    return {"months": out}


def _churn_rate_percent(wh: Warehouse, workspace_id: str, day: date) -> Decimal | None:
    """`churn_rate_percent` (lib.retention) of the 30 days ending `day`, from two small reads
    instead of the workspace's whole change history (same answer: `logo_churn_counts`)."""
    cohort, churned = logo_churn_counts(wh, workspace_id, day - timedelta(days=29), day)
    return percent(churned, cohort)


def current_day(wh: Warehouse, workspace_id: str, as_of: date | None = None) -> date | None:
    """The latest day materialized in mart.mrr_daily on or before `as_of` (any day if None)."""
    value = wh.scalar(
        "SELECT MAX(day) FROM mart.mrr_daily WHERE workspace_id = :w"
        + ("" if as_of is None else " AND day <= :d"),
        w=workspace_id,
        **({} if as_of is None else {"d": as_of}),
    )
    return None if value is None else as_date(value)


def end_of_day_utc(day: date, tz: str) -> str:
    """The last second of local day `day` as an ISO 8601 UTC timestamp ("...T23:59:59Z" in UTC)."""
    instant = day_start(day + timedelta(days=1), tz) - timedelta(seconds=1)
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Balances:
    """Exact MRR and subscription counts per materialized day (company or one plan)."""

    def __init__(
        self, mrr: dict[date, Fraction], subs: dict[date, int], plan_seen: bool = True
    ) -> None:
        self.mrr = mrr
        self.subs = subs
        self.plan_seen = plan_seen

    def on(self, day: date) -> tuple[Fraction | None, int | None]:
        """(MRR, subscriptions) on `day`, or (None, None) when the day is not materialized."""
        if day not in self.subs:
            return None, None
        return self.mrr.get(day, Fraction(0)), self.subs[day]


def _daily_rows(wh: Warehouse, workspace_id: str, days: Sequence[date]) -> dict[date, dict]:
    """The mart.mrr_daily rows (exact MRR and subscriptions) of the given days, by day; a day
    not materialized is absent. Only those days are read, not the days between them."""
    return {
        as_date(r["day"]): r
        for r in wh.rows_in(
            "SELECT day, mrr_micros, exact_json, active_subscriptions FROM mart.mrr_daily"
            " WHERE workspace_id = :w",
            "day",
            days,
            w=workspace_id,
        )
    }


def _balances(
    wh: Warehouse, workspace_id: str, days: Sequence[date], plan: str | None
) -> _Balances:
    """Balances on the given days: from mrr_daily, or for one plan from mrr_plan_daily."""
    # Which days exist comes from mrr_daily: the MRR run writes all four marts of a day together.
    daily = _daily_rows(wh, workspace_id, days)
    subs = {d: int(r["active_subscriptions"]) for d, r in daily.items()}
    if plan is None:
        return _Balances({d: stored_exact_mrr(r) for d, r in daily.items()}, subs)
    rows = wh.rows_in(
        "SELECT day, mrr_exact, subscriptions FROM mart.mrr_plan_daily"
        " WHERE workspace_id = :w AND plan_id = :p",
        "day",
        days,
        w=workspace_id,
        p=plan,
    )
    by_day = {as_date(r["day"]): r for r in rows}
    return _Balances(
        {d: Fraction(by_day[d]["mrr_exact"]) if d in by_day else Fraction(0) for d in subs},
        {d: int(by_day[d]["subscriptions"]) if d in by_day else 0 for d in subs},
        plan_seen=bool(rows),
    )


def _require_known_plan(wh: Warehouse, workspace_id: str, plan: str) -> None:
    """404 unless the plan has carried MRR or a counted subscription on some materialized day."""
    seen = wh.rows(
        "SELECT 1 AS x FROM mart.mrr_plan_daily WHERE workspace_id = :w AND plan_id = :p LIMIT 1",
        w=workspace_id,
        p=plan,
    )
    if not seen:
        raise MrrQueryError("resource_missing", "plan_id", f"No such plan: {plan}.", status=404)


def _workspace_time_zone(wh: Warehouse, workspace_id: str) -> str:
    rows = wh.rows("SELECT time_zone FROM app.workspaces WHERE id = :w", w=workspace_id)
    if not rows:
        raise MrrQueryError(
            "resource_missing", "workspace_id", f"No such workspace: {workspace_id}.", status=404
        )
    return rows[0]["time_zone"] or "UTC"


def _as_of(value: date | str | None) -> date | None:
    # A datetime is a date subclass; accepting one would silently drop its time and zone.
    if isinstance(value, datetime):
        raise MrrQueryError("invalid_date", "as_of", "as_of must be a date in YYYY-MM-DD format.")
    try:
        return parse_date_param(value, "as_of")
    except AnalyticsParamError as exc:
        raise MrrQueryError(exc.code, exc.param, exc.message) from exc


def _months(value: int | str) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)  # a query-string value
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_MONTHS:
        raise MrrQueryError(
            "invalid_value", "months", f"months must be an integer from 1 to {MAX_MONTHS}."
        )
    return value


def _plan_id(value: str | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_PLAN_ID_CHARS:
        raise MrrQueryError(
            "invalid_value",
            "plan_id",
            f"plan_id must be a non-empty plan id of at most {MAX_PLAN_ID_CHARS} characters.",
        )
    return value


def _month_end(month: str) -> date:
    """The last day of a "YYYY-MM" month."""
    following = shift_month(month, 1)
    return date(int(following[:4]), int(following[5:7]), 1) - timedelta(days=1)
