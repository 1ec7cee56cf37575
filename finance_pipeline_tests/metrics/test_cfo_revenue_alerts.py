"""CFO metrics, daily revenue and alerts marts through Dagster on a hand-built ledger (SQLite and
PostgreSQL): the v1 API example numbers exactly, alert thresholds at and just past the limit,
re-runs restate without duplicates, an empty workspace yields clean zeros and nulls."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finance_pipeline.alerts.assets import alerts
from finance_pipeline.lib.alerts import AlertThresholds, alert_id
from finance_pipeline.lib.cfo_daily import (
    entries_by_day,
    metrics_on,
    revenue_entries,
    thresholds_from_settings,
)
from finance_pipeline.lib.cfo_metrics import LedgerEntry, cfo_metrics
from finance_pipeline.lib.revenue_analytics import revenue_analytics
from finance_pipeline.metrics import cfo_assets
from finance_pipeline.metrics.cfo_assets import cfo_marts
from finance_pipeline.tenancy import create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse
from finance_pipeline_tests.dagster_runs import check_results, materialize_days

AS_OF = date(2026, 2, 28)
C = 10_000  # micros per cent


def _ledger(wh: Warehouse, ws: str, rows: list[tuple[Any, ...]]) -> None:
    """rows: (day, kind, subtype, cents or None for missing FX, currency)."""
    with wh.begin() as db:
        db.execute(
            wh.table("core.ledger").insert(),
            [
                {
                    "workspace_id": ws,
                    "entry_id": f"e{i}",
                    "day": day,
                    "kind": kind,
                    "subtype": subtype,
                    "amount_micros": 0 if cents is None else cents * C,
                    "currency": cur,
                    "amount_reporting_micros": None if cents is None else cents * C,
                    "reporting_currency": "usd",
                    "source_table": "test",
                    "source_id": f"e{i}",
                }
                for i, (day, kind, subtype, cents, cur) in enumerate(rows)
            ],
        )


def _mrr(wh: Warehouse, ws: str, day: date, micros: int, exact: str | None = None) -> None:
    zero = {
        k: 0
        for k in (
            "cmrr_micros",
            "arr_micros",
            "active_subscriptions",
            "paying_customers",
            "new_micros",
            "expansion_micros",
            "reactivation_micros",
            "contraction_micros",
            "churn_micros",
            "fx_micros",
            "new_customers",
            "reactivated_customers",
            "churned_customers",
            "delinquent_churned_customers",
        )
    }
    with wh.begin() as db:
        db.execute(
            wh.table("mart.mrr_daily").insert(),
            [
                {
                    "workspace_id": ws,
                    "day": day,
                    "currency": "usd",
                    "mrr_micros": micros,
                    **zero,
                    "skipped_currencies_json": [],
                    "exact_json": {"mrr": exact or str(micros), "previous_mrr": "0"},
                }
            ],
        )


def _workspace(wh: Warehouse, ws: str, cash_cents: int | None, **settings: Any) -> None:
    create_organization(wh, "o", org_id="o")
    create_workspace(
        wh,
        "o",
        ws,
        workspace_id=ws,
        cash_on_hand_micros=None if cash_cents is None else cash_cents * C,
        settings=settings or None,
    )


def _run(wh: Warehouse, start: date, end: date, assets: list | None = None) -> Any:
    return materialize_days(assets or [cfo_marts, alerts], wh, start, end)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _cfo(wh: Warehouse, ws: str, day: date) -> dict[str, Any]:
    [row] = wh.rows(
        "SELECT * FROM mart.cfo_metrics_daily WHERE workspace_id = :w AND day = :d", w=ws, d=day
    )
    row["warnings_json"] = _json(row["warnings_json"])
    row["skipped_currencies_json"] = _json(row["skipped_currencies_json"])
    return row


def _alerts(wh: Warehouse, ws: str | None = None) -> list[dict[str, Any]]:
    rows = wh.rows(
        "SELECT * FROM mart.alerts WHERE (CAST(:w AS TEXT) IS NULL OR workspace_id = :w)"
        " ORDER BY workspace_id, day, type",
        w=ws,
    )
    for r in rows:
        r["payload_json"] = _json(r["payload_json"])
    return rows


# The v1 API example: 2,400,000 gross, -80,000 refunds, 2,670,000 recurring expenses (a fee
# included), 130,000 one-time, cash 5,000,000 -> runway 14.29 months. Outside the 30 days: one sale.
SEED_LEDGER = [
    (date(2026, 2, 10), "gross_revenue", None, 1_500_000, "usd"),
    (date(2026, 2, 1), "manual_revenue", "recurring", 900_000, "usd"),
    (date(2026, 2, 12), "refund", None, -80_000, "usd"),
    (date(2026, 2, 1), "expense", "recurring_expense", 2_600_000, "usd"),
    (date(2026, 1, 30), "fee", None, 70_000, "usd"),
    (date(2026, 2, 15), "expense", "one_time_expense", 130_000, "usd"),
    (date(2026, 1, 29), "gross_revenue", None, 999, "usd"),
]


@pytest.fixture
def seed_ws(warehouse: Warehouse) -> Warehouse:
    _workspace(warehouse, "ws_seed", 5_000_000)
    _ledger(warehouse, "ws_seed", SEED_LEDGER)
    # Exact MRR 21,500,000,000 1/3 micros: whole cents after the single rounding.
    _mrr(warehouse, "ws_seed", AS_OF, 21_500_000_000, "64500000001/3")
    return warehouse


def test_seed_example_metrics_and_revenue_are_exact(seed_ws: Warehouse) -> None:
    wh = seed_ws
    result = _run(wh, date(2026, 1, 25), AS_OF)
    assert result.success
    checks = check_results(result)
    # No workspace configured a webhook: nothing to deliver, the WARN check passes.
    assert checks == {"revenue_matches_ledger": True, "webhook_delivered": True}
    row = _cfo(wh, "ws_seed", AS_OF)
    assert {k: row[k] for k in row if k not in ("workspace_id", "day")} == {
        "currency": "usd",
        "gross_revenue_cents_30d": 2_400_000,
        "refunds_cents_30d": -80_000,
        "net_revenue_cents_30d": 2_320_000,
        "mrr_cents": 2_150_000,
        "arr_cents": 25_800_000,
        "burn_cents_30d": 480_000,
        "recurring_burn_cents_30d": 350_000,
        "one_time_expenses_cents_30d": 130_000,
        "cash_on_hand_cents": 5_000_000,
        "runway_months": "14.29",
        "runway_days": "428.57",
        "total_expenses_cents_30d": 2_800_000,
        "recurring_expenses_cents_30d": 2_670_000,
        "warnings_json": [],
        "skipped_currencies_json": {},
    }
    # One day earlier the 999-cent sale of Jan 29 is inside the window and there is no MRR row.
    prev = _cfo(wh, "ws_seed", AS_OF - timedelta(days=1))
    assert prev["gross_revenue_cents_30d"] == 2_400_999 and prev["mrr_cents"] == 0
    # revenue_daily: one row per day of the window, with the manual/fee split.
    days = wh.rows("SELECT * FROM mart.revenue_daily WHERE workspace_id = 'ws_seed' ORDER BY day")
    assert len(days) == 35
    by_day = {str(r["day"])[:10]: r for r in days}
    feb1 = by_day["2026-02-01"]
    assert (
        feb1["gross_revenue_micros"],
        feb1["manual_revenue_micros"],
        feb1["expenses_micros"],
        feb1["net_micros"],
        feb1["net_revenue_micros"],
    ) == (900_000 * C, 900_000 * C, 2_600_000 * C, -1_700_000 * C, 900_000 * C)
    jan30 = by_day["2026-01-30"]
    assert (jan30["expenses_micros"], jan30["fees_micros"]) == (70_000 * C, 70_000 * C)
    feb12 = by_day["2026-02-12"]
    assert (feb12["refunds_micros"], feb12["net_micros"], feb12["net_revenue_micros"]) == (
        -80_000 * C,
        0,
        -80_000 * C,
    )
    assert sum(r["gross_revenue_micros"] for r in days) == 2_400_999 * C
    assert sum(r["net_micros"] for r in days) == (2_400_999 - 2_800_000) * C
    # Bucketing the daily rows with lib.revenue_analytics gives the workspace analytics API shape.
    monthly = revenue_analytics(
        revenue_entries(days), "custom", "2026-01-01", "2026-12-31", today=AS_OF
    )
    assert monthly["totals"] == {
        "revenue": Decimal("24009.99"),
        "expenses": Decimal("28000.00"),
        "net": Decimal("-3990.01"),
        "refunds": Decimal("-800.00"),
    }
    # On Feb 28, 14.29 months of runway is above 6: no runway alert, but refunds appeared after
    # none in the 30 days before (lib.alerts: a spike from zero). On Feb 1 the recurring expenses
    # (2,670,000 with the fee) face 900,999 of revenue: 5,000,000 / 1,769,001 = 2.83, critical.
    found = {(str(a["day"])[:10], a["type"], a["severity"]) for a in _alerts(wh)}
    assert {(t, s) for d, t, s in found if d == "2026-02-28"} == {("refund_spike", "warn")}
    assert ("2026-02-01", "runway_low", "critical") in found
    assert not any(d < "2026-02-01" for d, _, _ in found)
    assert not any(t == "refund_spike" and d < "2026-02-12" for d, t, _ in found)
    assert {t for _, t, _ in found} == {"runway_low", "refund_spike"}
    feb1_alert = next(a for a in _alerts(wh) if str(a["day"])[:10] == "2026-02-01")
    assert feb1_alert["payload_json"]["runway_months"] == "2.83"


def test_missing_cash_and_missing_fx_are_warnings_with_null_runway(warehouse: Warehouse) -> None:
    wh = warehouse
    _workspace(wh, "ws_nocash", None)
    _ledger(
        wh,
        "ws_nocash",
        [
            (AS_OF, "expense", "recurring_expense", 10_000, "usd"),
            (AS_OF, "gross_revenue", None, None, "eur"),
            (AS_OF, "gross_revenue", None, None, "eur"),
        ],
    )
    assert _run(wh, AS_OF, AS_OF).success
    row = _cfo(wh, "ws_nocash", AS_OF)
    assert row["cash_on_hand_cents"] is None
    assert row["runway_months"] is None and row["runway_days"] is None
    assert row["recurring_burn_cents_30d"] == 10_000
    assert [w["code"] for w in row["warnings_json"]] == ["missing_cash", "missing_fx_rate"]
    assert row["skipped_currencies_json"] == {"eur": 2}
    [rev] = wh.rows("SELECT * FROM mart.revenue_daily WHERE workspace_id = 'ws_nocash'")
    assert rev["gross_revenue_micros"] == 0 and _json(rev["skipped_currencies_json"]) == {"eur": 2}
    assert _alerts(wh) == []  # no cash -> no runway alert


def test_empty_workspace_gets_clean_zeros_and_nulls(warehouse: Warehouse) -> None:
    wh = warehouse
    _workspace(wh, "ws_empty", 1_000_000)
    assert _run(wh, AS_OF - timedelta(days=2), AS_OF).success
    row = _cfo(wh, "ws_empty", AS_OF)
    money = [k for k in row if k.endswith("_cents_30d") or k in ("mrr_cents", "arr_cents")]
    assert len(money) == 10 and all(row[k] == 0 for k in money)
    assert (row["runway_months"], row["runway_days"], row["warnings_json"]) == (None, None, [])
    assert row["cash_on_hand_cents"] == 1_000_000
    assert wh.scalar("SELECT COUNT(*) FROM mart.revenue_daily") == 3
    assert wh.scalar("SELECT SUM(net_micros) FROM mart.revenue_daily") == 0
    assert _alerts(wh) == []


def test_runway_alert_at_and_just_past_thresholds(warehouse: Warehouse) -> None:
    wh = warehouse
    # Recurring burn 100,000 cents over the 30 days: cash / burn is the runway in months.
    for ws, cash, extra in (
        ("ws_at6", 600_000, {}),
        ("ws_below6", 599_999, {}),
        ("ws_at3", 300_000, {}),
        ("ws_below3", 299_999, {}),
        ("ws_custom", 600_000, {"alert_thresholds": {"runway_warn_months": "6.5"}}),
    ):
        _workspace(wh, ws, cash, **extra)
        _ledger(
            wh, ws, [(AS_OF - timedelta(days=29), "expense", "recurring_expense", 100_000, "usd")]
        )
    assert _run(wh, AS_OF, AS_OF).success
    got = {(a["workspace_id"], a["type"], a["severity"]) for a in _alerts(wh)}
    assert got == {
        ("ws_below6", "runway_low", "warn"),
        ("ws_at3", "runway_low", "warn"),
        ("ws_below3", "runway_low", "critical"),
        ("ws_custom", "runway_low", "warn"),
    }
    [a] = _alerts(wh, "ws_below3")
    assert a["alert_id"] == alert_id("ws_below3", AS_OF, "runway_low")
    assert a["message"] == "Runway is below 6 months (3)."
    assert a["payload_json"]["runway_months"] == "3.00"
    assert _cfo(wh, "ws_below3", AS_OF)["runway_months"] == "3.00"
    [custom] = _alerts(wh, "ws_custom")
    assert custom["message"] == "Runway is below 6.5 months (6)."


def test_decline_and_spike_alerts_compare_with_the_30_days_before(warehouse: Warehouse) -> None:
    wh = warehouse
    prior_day, today = AS_OF - timedelta(days=40), AS_OF - timedelta(days=5)
    cases = {
        # net revenue prior 100,000 -> now 92,000 is exactly -8 %: no alert; 91,999 fires.
        "ws_rev_at": [(prior_day, 100_000, 0), (today, 92_000, 0)],
        "ws_rev_past": [(prior_day, 100_000, 0), (today, 91_999, 0)],
        # refunds prior -1,000 -> now -2,000 is exactly 2x: no alert; -2,001 fires. Revenue is
        # raised to keep net revenue flat. ws_ref_small is ws_ref_past under the default
        # 500.00 minimum of refunds; the others lower it to 20.00 (reached: -2,001 >= 2,000).
        "ws_ref_at": [(prior_day, 101_000, -1_000), (today, 102_000, -2_000)],
        "ws_ref_past": [(prior_day, 101_000, -1_000), (today, 102_001, -2_001)],
        "ws_ref_small": [(prior_day, 101_000, -1_000), (today, 102_001, -2_001)],
    }
    low_minimum = {"alert_thresholds": {"refund_spike_min_cents": 2_000}}
    for ws, rows in cases.items():
        _workspace(wh, ws, None, **(low_minimum if ws in ("ws_ref_at", "ws_ref_past") else {}))
        ledger = []
        for day, gross, refund in rows:
            ledger.append((day, "gross_revenue", None, gross, "usd"))
            if refund:
                ledger.append((day, "refund", None, refund, "usd"))
        _ledger(wh, ws, ledger)
    # MRR 100 -> 92 over 30 days is exactly -8 %; 91.999999 fires.
    _workspace(wh, "ws_mrr_at", None)
    _workspace(wh, "ws_mrr_past", None)
    for ws, now in (("ws_mrr_at", 92_000_000), ("ws_mrr_past", 91_999_999)):
        _mrr(wh, ws, AS_OF - timedelta(days=30), 100_000_000)
        _mrr(wh, ws, AS_OF, now)
    assert _run(wh, AS_OF, AS_OF).success
    got = {(a["workspace_id"], a["type"]) for a in _alerts(wh)}
    assert got == {
        ("ws_rev_past", "revenue_decline"),
        ("ws_ref_past", "refund_spike"),
        ("ws_mrr_past", "mrr_decline"),
    }
    rev = _alerts(wh, "ws_rev_past")[0]["payload_json"]
    assert rev == {
        "decline_percent": "8.00",
        "net_revenue_cents_30d": 91_999,
        "net_revenue_cents_prior_30d": 100_000,
    }


def test_rerun_restates_without_duplicates(seed_ws: Warehouse) -> None:
    wh = seed_ws
    _workspace(wh, "ws_low", 100_000)
    _ledger(wh, "ws_low", [(AS_OF, "expense", "recurring_expense", 50_000, "usd")])
    start = AS_OF - timedelta(days=3)
    assert _run(wh, start, AS_OF).success
    tables = ("mart.cfo_metrics_daily", "mart.revenue_daily", "mart.alerts")

    def snapshot() -> dict[str, list[dict]]:
        out = {}
        for t in tables:
            rows = wh.rows(f"SELECT * FROM {t} ORDER BY workspace_id, day")
            out[t] = [{k: v for k, v in r.items() if k != "created_at"} for r in rows]
        return out

    before = snapshot()
    # ws_seed: a refund spike on each of the 4 days; ws_low: runway 100,000 / 50,000 = 2 months.
    assert len(before["mart.cfo_metrics_daily"]) == 8 and len(before["mart.alerts"]) == 5
    assert _run(wh, start, AS_OF).success
    assert snapshot() == before
    # A corrected ledger restates the window: the expense is gone, so is the alert.
    with wh.begin() as db:
        db.execute(wh.text("DELETE FROM core.ledger WHERE workspace_id = 'ws_low'"))
    assert _run(wh, start, AS_OF).success
    assert _alerts(wh, "ws_low") == []
    assert _cfo(wh, "ws_low", AS_OF)["recurring_burn_cents_30d"] == 0
    assert wh.scalar("SELECT COUNT(*) FROM mart.cfo_metrics_daily") == 8


def test_failed_ledger_check_blocks_and_writes_nothing(
    sqlite_warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    wh = sqlite_warehouse
    _workspace(wh, "ws_seed", 5_000_000)
    _ledger(wh, "ws_seed", SEED_LEDGER)
    real = cfo_assets.revenue_day

    def off_by_one(day: date, entries: Any) -> dict[str, Any]:
        row = real(day, entries)
        row["gross_revenue_micros"] += 1
        return row

    monkeypatch.setattr(cfo_assets, "revenue_day", off_by_one)
    result = _run(wh, AS_OF, AS_OF, [cfo_marts])
    assert not result.success
    [check] = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert check.check_name == "revenue_matches_ledger" and not check.passed
    assert wh.scalar("SELECT COUNT(*) FROM mart.revenue_daily") == 0
    assert wh.scalar("SELECT COUNT(*) FROM mart.cfo_metrics_daily") == 0


def test_thresholds_from_settings_are_exact_and_strict() -> None:
    from fractions import Fraction

    assert thresholds_from_settings({}) == AlertThresholds()
    t = thresholds_from_settings(
        {"alert_thresholds": {"mrr_decline_pct": 5.5, "runway_warn_months": 9}}
    )
    assert (t.mrr_decline_pct, t.runway_warn_months) == (Fraction(11, 2), 9)
    with pytest.raises(ValueError, match="unknown alert threshold"):
        thresholds_from_settings({"alert_thresholds": {"runway_months": 3}})
    with pytest.raises(ValueError, match="must be a number"):
        thresholds_from_settings({"alert_thresholds": {"runway_warn_months": True}})
    assert AlertThresholds().refund_spike_min_cents == 50_000
    t = thresholds_from_settings({"alert_thresholds": {"refund_spike_min_cents": "0"}})
    assert t.refund_spike_min_cents == 0
    with pytest.raises(ValueError, match="whole number of cents"):
        thresholds_from_settings({"alert_thresholds": {"refund_spike_min_cents": "500.5"}})
    with pytest.raises(ValueError, match="must not be negative"):
        thresholds_from_settings({"alert_thresholds": {"refund_spike_min_cents": -1}})


KINDS = st.sampled_from(
    [
        ("gross_revenue", None),
        ("manual_revenue", "recurring"),
        ("refund", None),
        ("expense", "recurring_expense"),
        ("expense", "one_time_expense"),
        ("fee", None),
    ]
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 45),
            KINDS,
            st.one_of(st.none(), st.integers(1, 10**12)),
            st.sampled_from(["usd", "eur"]),
        ),
        max_size=40,
    ),
    st.one_of(st.none(), st.integers(0, 10**12)),
)
def test_daily_sums_give_the_same_metrics_as_raw_entries(
    raw: list[tuple[int, tuple[str, str | None], int | None, str]], cash_cents: int | None
) -> None:
    start = AS_OF - timedelta(days=45)
    entries = [
        LedgerEntry(
            "w",
            f"e{i}",
            start + timedelta(days=d),
            kind,
            0,
            cur,
            None if amt is None else (-amt if kind == "refund" else amt),
            subtype,
        )
        for i, (d, (kind, subtype), amt, cur) in enumerate(raw)
    ]
    groups: dict[tuple, dict[str, Any]] = {}
    for e in entries:
        cur = e.currency if e.amount_micros_reporting is None else None
        g = groups.setdefault(
            (e.day, e.kind, e.subtype, cur),
            {"day": e.day, "kind": e.kind, "subtype": e.subtype, "currency": cur, "n": 0},
        )
        g["n"] += 1
        if e.amount_micros_reporting is not None:
            g["amount"] = g.get("amount", 0) + e.amount_micros_reporting
        else:
            g["amount"] = None
    summed = entries_by_day(groups.values())
    cash_micros = None if cash_cents is None else cash_cents * C
    assert metrics_on(AS_OF, summed, 7, cash_micros, "usd") == cfo_metrics(
        AS_OF, entries, 7, cash_cents, "usd"
    )
