"""Local days at asset level (docs/metrics.md §1, §5, §7, §9, §10) for workspaces outside UTC, on
SQLite and PostgreSQL: hand-made raw Stripe rows, manual rows and FX rates go through the real core
and mart assets, and every number is checked against values worked out by hand below.

Two workspaces:
- `ws_ny`, America/New_York (UTC-5, UTC-4 in summer). 2026-03-08 (a Sunday) has 23 hours:
  S(Mar 8) = 05:00Z, S(Mar 9) = 04:00Z. 2026-11-01 (a Sunday) has 25 hours: S(Nov 1) = 04:00Z,
  S(Nov 2) = 05:00Z. Charges at 23:30 and 00:30 local around those days, subscriptions that
  start, change and end at local midnight, a trial that converts at local midnight.
- `ws_ch`, Pacific/Chatham (UTC+13:45 in summer, +12:45 in winter), reporting in USD: EUR charges
  and an EUR subscription whose local day is the next UTC day, so FX must use the local day's
  rate (§2, §7); 2026-09-27 has 23 hours (02:45 -> 03:45): S(Sep 27) = 2026-09-26T11:15Z,
  S(Sep 28) = 2026-09-27T10:15Z.

A mistake that bucketed by UTC day, or took S(D+1) = S(D) + 24 h, moves at least one of these
values to a neighbouring day. The data is built and materialized once per database (two partition
ranges, around the spring and the autumn changes) and the tests read the marts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from finance_pipeline.core.assets import fx_rates, ledger, subscription_history
from finance_pipeline.lib.cfo_daily import revenue_entries
from finance_pipeline.lib.revenue_analytics import revenue_analytics
from finance_pipeline.metrics.cfo_assets import cfo_marts
from finance_pipeline.metrics.mrr_assets import mrr_marts
from finance_pipeline.reports.queries import customer_movements
from finance_pipeline.reports.render import workspace
from finance_pipeline.settings import get_settings
from finance_pipeline.tenancy import create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse
from finance_pipeline_tests.conftest import fresh_warehouse
from finance_pipeline_tests.dagster_runs import check_results, materialize_days

NY = "America/New_York"
CHATHAM = "Pacific/Chatham"
C = 10_000  # micro-units per cent
# The materialized partition ranges: around the spring change, and around the autumn ones.
RANGES = [(date(2026, 1, 13), date(2026, 3, 10)), (date(2026, 9, 26), date(2026, 11, 3))]
LAST = RANGES[-1][1]
SYNCED_AT = 1_795_132_800  # 2026-11-20T00:00Z, after every instant below

PRICE_MONTHLY = {
    "id": "price_m",
    "object": "price",
    "currency": "usd",
    "unit_amount": 10_000,
    "unit_amount_decimal": "10000",
    "billing_scheme": "per_unit",
    "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"},
    "product": "prod_m",
    "tax_behavior": "exclusive",
    "type": "recurring",
}
# 120,000 cents a year: 10,000 cents of MRR (§3).
PRICE_YEARLY = {
    **PRICE_MONTHLY,
    "id": "price_y",
    "unit_amount": 120_000,
    "unit_amount_decimal": "120000",
    "recurring": {"interval": "year", "interval_count": 1, "usage_type": "licensed"},
}
PRICE_EUR = {
    **PRICE_MONTHLY,
    "id": "price_eur",
    "currency": "eur",
    "unit_amount": 5_000,
    "unit_amount_decimal": "5000",
}


def ts(utc: str) -> int:
    """Unix seconds of a UTC wall-clock time written as ISO text (test input, not code under test)."""
    return int(datetime.fromisoformat(utc).replace(tzinfo=UTC).timestamp())


def _stripe_rows(wh: Warehouse, ws: str, table: str, rows: list[dict[str, Any]]) -> None:
    """Insert Stripe objects as raw rows: the object is the payload, and the table's extracted
    columns take its top-level fields (an expanded object by its id)."""
    columns = set(wh.table(table).columns.keys())
    with wh.begin() as db:
        db.execute(
            wh.table(table).insert(),
            [
                {
                    **{
                        k: v["id"] if isinstance(v, dict) and k != "payload" else v
                        for k, v in r.items()
                        if k in columns
                    },
                    "workspace_id": ws,
                    "account_id": "acct_tz",
                    "livemode": False,
                    "payload": r,
                    "synced_at": SYNCED_AT,
                }
                for r in rows
            ],
        )


def _charges(wh: Warehouse, ws: str, charges: list[tuple[str, str, int, str]]) -> None:
    """(id, UTC time, amount in cents, currency): succeeded charges without an invoice (no tax)."""
    _stripe_rows(
        wh,
        ws,
        "raw.stripe_charges",
        [
            {
                "id": cid,
                "created": ts(when),
                "customer": "cus_cash",
                "amount": amount,
                "amount_captured": amount,
                "amount_refunded": 0,
                "currency": cur,
                "status": "succeeded",
                "paid": True,
                "refunded": False,
            }
            for cid, when, amount, cur in charges
        ],
    )


def _refunds(wh: Warehouse, ws: str, refunds: list[tuple[str, str, str, int, str]]) -> None:
    """(id, charge, UTC time, amount in cents, currency): succeeded refunds."""
    _stripe_rows(
        wh,
        ws,
        "raw.stripe_refunds",
        [
            {
                "id": rid,
                "charge": charge,
                "created": ts(when),
                "amount": amount,
                "currency": cur,
                "status": "succeeded",
            }
            for rid, charge, when, amount, cur in refunds
        ],
    )


def _subscription(
    wh: Warehouse,
    ws: str,
    sub_id: str,
    price: dict[str, Any],
    changes: list[tuple[str, str, int, dict[str, Any]]],
) -> None:
    """A subscription with its `customer.subscription.*` events, one per (type, UTC time, quantity,
    other fields) change; the synced object and its item are the state after the last one."""
    customer = sub_id.replace("sub_", "cus_")
    start = ts(changes[0][1])
    item_id = sub_id.replace("sub_", "si_")
    objects = []
    for _kind, _when, qty, extra in changes:
        item = {"id": item_id, "object": "subscription_item", "price": price, "quantity": qty}
        objects.append(
            {
                "id": sub_id,
                "object": "subscription",
                "customer": customer,
                "currency": price["currency"],
                "status": "active",
                "created": start,
                "start_date": start,
                "items": {"object": "list", "data": [item], "has_more": False},
                "trial_start": None,
                "trial_end": None,
                "cancel_at_period_end": False,
                "cancel_at": None,
                "canceled_at": None,
                "ended_at": None,
                "pause_collection": None,
                "discounts": [],
                **extra,
            }
        )
    final = objects[-1]
    _stripe_rows(
        wh,
        ws,
        "raw.stripe_events",
        [
            {
                "id": f"evt_{sub_id}_{i}",
                "created": ts(when),
                "type": f"customer.subscription.{kind}",
                "object_type": "subscription",
                "object_id": sub_id,
                "data": {"object": obj, "previous_attributes": {}},
            }
            for i, ((kind, when, _qty, _extra), obj) in enumerate(
                zip(changes, objects, strict=True)
            )
        ],
    )
    _stripe_rows(wh, ws, "raw.stripe_subscriptions", [final])
    _stripe_rows(
        wh,
        ws,
        "raw.stripe_subscription_items",
        [{**final["items"]["data"][0], "subscription": sub_id, "created": start}],
    )


def _ny(wh: Warehouse) -> None:
    """ws_ny's raw data. EST = UTC-5 until 2026-03-08 07:00Z and from 2026-11-01 06:00Z; EDT = UTC-4."""
    _charges(
        wh,
        "ws_ny",
        [
            ("ch_1", "2026-02-07T04:30:00", 100, "usd"),  # 23:30 EST Feb 6
            ("ch_2", "2026-02-07T05:30:00", 200, "usd"),  # 00:30 EST Feb 7
            ("ch_3", "2026-03-01T04:30:00", 400, "usd"),  # 23:30 EST Feb 28
            ("ch_4", "2026-03-01T05:30:00", 800, "usd"),  # 00:30 EST Mar 1
            ("ch_5", "2026-03-08T04:30:00", 1_600, "usd"),  # 23:30 EST Mar 7 (Saturday)
            ("ch_6", "2026-03-08T05:30:00", 3_200, "usd"),  # 00:30 EST Mar 8 (Sunday, 23 h)
            ("ch_7", "2026-03-09T03:30:00", 6_400, "usd"),  # 23:30 EDT Mar 8
            ("ch_8", "2026-03-09T04:30:00", 12_800, "usd"),  # 00:30 EDT Mar 9 (Monday)
            ("ch_9", "2026-11-01T03:30:00", 1_000, "usd"),  # 23:30 EDT Oct 31 (Saturday)
            ("ch_10", "2026-11-01T04:30:00", 2_000, "usd"),  # 00:30 EDT Nov 1 (Sunday, 25 h)
            ("ch_11", "2026-11-01T06:30:00", 4_000, "usd"),  # 01:30 EST Nov 1 (the second 01:30)
            ("ch_12", "2026-11-02T04:30:00", 8_000, "usd"),  # 23:30 EST Nov 1
            ("ch_13", "2026-11-02T05:30:00", 16_000, "usd"),  # 00:30 EST Nov 2 (Monday)
        ],
    )
    _refunds(
        wh,
        "ws_ny",
        [
            ("re_1", "ch_6", "2026-03-09T03:59:59", 1_000, "usd"),  # 23:59:59 EDT Mar 8
            ("re_2", "ch_6", "2026-03-09T04:00:00", 500, "usd"),  # 00:00:00 EDT Mar 9
        ],
    )
    _stripe_rows(
        wh,
        "ws_ny",
        "raw.stripe_balance_transactions",
        [
            # 23:30 EDT Mar 8 and 23:30 EST Mar 7: fees are expenses of their local day.
            {"id": "txn_1", "created": ts("2026-03-09T03:30:00"), "fee": 30, "currency": "usd"},
            {"id": "txn_2", "created": ts("2026-03-08T04:30:00"), "fee": 50, "currency": "usd"},
        ],
    )
    with wh.begin() as db:
        # A usage cost at 23:30 EST Mar 7: ingest keeps the instant and its UTC day (Mar 8); the
        # ledger dates it by the instant's local day.
        db.execute(
            wh.table("raw.usage_costs").insert(),
            [
                {
                    "workspace_id": "ws_ny",
                    "external_id": "u_1",
                    "customer_tag": "cus_a",
                    "model": "m",
                    "cost_micros": 70 * C,
                    "currency": "usd",
                    "request_count": 1,
                    "occurred_on": date(2026, 3, 8),
                    "occurred_at": ts("2026-03-08T04:30:00"),
                    "source": "test",
                    "ingested_at": SYNCED_AT,
                }
            ],
        )
        # Dated rows are already local days: they stay on their date.
        db.execute(
            wh.table("raw.expense_events").insert(),
            [
                {
                    "workspace_id": "ws_ny",
                    "external_id": "x_1",
                    "subtype": "one_time_expense",
                    "amount_micros": 9_000 * C,
                    "currency": "usd",
                    "occurred_on": date(2026, 3, 8),
                    "vendor": "v",
                    "source": "test",
                    "ingested_at": SYNCED_AT,
                }
            ],
        )
        db.execute(
            wh.table("raw.manual_revenue").insert(),
            [
                {
                    "workspace_id": "ws_ny",
                    "external_id": "m_1",
                    "type": "one_time",
                    "subtype": "one_time",
                    "amount_micros": 250 * C,
                    "currency": "usd",
                    "date": date(2026, 3, 8),
                    "ingested_via": "test",
                    "ingested_at": SYNCED_AT,
                }
            ],
        )
    # cus_a: starts at S(Mar 8) = 05:00Z, 1 -> 3 seats at S(Mar 9) = 04:00Z (23 h later),
    # 3 -> 2 seats at S(Nov 2) = 05:00Z (25 h after S(Nov 1)).
    _subscription(
        wh,
        "ws_ny",
        "sub_a",
        PRICE_MONTHLY,
        [
            ("created", "2026-03-08T05:00:00", 1, {}),
            ("updated", "2026-03-09T04:00:00", 3, {}),
            ("updated", "2026-11-02T05:00:00", 2, {}),
        ],
    )
    # cus_b: yearly from S(Feb 1) = 05:00Z, cancelled immediately at S(Mar 8): last day Mar 7.
    ended = ts("2026-03-08T05:00:00")
    _subscription(
        wh,
        "ws_ny",
        "sub_b",
        PRICE_YEARLY,
        [
            ("created", "2026-02-01T05:00:00", 1, {}),
            (
                "deleted",
                "2026-03-08T05:00:00",
                1,
                {"status": "canceled", "canceled_at": ended, "ended_at": ended},
            ),
        ],
    )
    # cus_c: 2 seats from 23:59:59 EDT Mar 8, the last second of the 23-hour day.
    _subscription(wh, "ws_ny", "sub_c", PRICE_MONTHLY, [("created", "2026-03-09T03:59:59", 2, {})])
    # cus_d: from 23:30 EST Nov 1, inside the 25th hour of that day.
    _subscription(wh, "ws_ny", "sub_d", PRICE_MONTHLY, [("created", "2026-11-02T04:30:00", 1, {})])
    # cus_e: trialing from S(Oct 20) = 04:00Z, converts at trial_end = S(Nov 1) = 04:00Z.
    trial = {"trial_start": ts("2026-10-20T04:00:00"), "trial_end": ts("2026-11-01T04:00:00")}
    _subscription(
        wh,
        "ws_ny",
        "sub_e",
        PRICE_MONTHLY,
        [
            ("created", "2026-10-20T04:00:00", 1, {"status": "trialing", **trial}),
            ("updated", "2026-11-01T04:00:00", 1, trial),
        ],
    )


def _chatham(wh: Warehouse) -> None:
    """ws_ch's raw data. CHADT = UTC+13:45 until 2026-04-04T14:00Z and from 2026-09-26T14:00Z;
    CHAST = UTC+12:45 in between."""
    _charges(
        wh,
        "ws_ch",
        [
            ("ch_c1", "2026-01-14T10:14:59", 10_000, "eur"),  # 23:59:59 Jan 14
            ("ch_c2", "2026-01-14T10:15:00", 10_000, "eur"),  # 00:00:00 Jan 15 (UTC: Jan 14)
            ("ch_c3", "2026-01-15T12:00:00", 10_000, "eur"),  # 01:45 Jan 16 (UTC: Jan 15)
            ("ch_c4", "2026-01-17T10:15:00", 10_000, "eur"),  # 00:00 Jan 18: no rate that day
            ("ch_c5", "2026-09-27T09:45:00", 700, "usd"),  # 23:30 CHADT Sep 27 (23 h day)
            ("ch_c6", "2026-09-27T10:45:00", 900, "usd"),  # 00:30 CHADT Sep 28
        ],
    )
    # 23:59:59 Jan 16, scaled like its charge (no tax): -2,000 EUR cents at Jan 16's rate.
    _refunds(wh, "ws_ch", [("re_c1", "ch_c1", "2026-01-16T10:14:59", 2_000, "eur")])
    with wh.begin() as db:
        # Jan 13 and Jan 18 have no rate; the UTC days Jan 13 and Jan 17 are not what counts.
        db.execute(
            wh.table("raw.fx_rates").insert(),
            [
                {
                    "base": "usd",
                    "currency": "eur",
                    "date": date(2026, 1, d),
                    "rate": rate,
                    "source": "test",
                    "ingested_at": SYNCED_AT,
                }
                for d, rate in ((14, "1.10"), (15, "1.20"), (16, "1.25"), (17, "1.30"))
            ],
        )
    # cus_f: 50 EUR a month from S(Jan 14) = 2026-01-13T10:15Z to S(Jan 17) = 2026-01-16T10:15Z.
    ended = ts("2026-01-16T10:15:00")
    _subscription(
        wh,
        "ws_ch",
        "sub_f",
        PRICE_EUR,
        [
            ("created", "2026-01-13T10:15:00", 1, {}),
            (
                "deleted",
                "2026-01-16T10:15:00",
                1,
                {"status": "canceled", "canceled_at": ended, "ended_at": ended},
            ),
        ],
    )
    # cus_g: from 23:30 CHADT Sep 27; 1 -> 2 seats at S(Sep 28) = 10:15Z, 23 h after S(Sep 27).
    _subscription(
        wh,
        "ws_ch",
        "sub_g",
        PRICE_MONTHLY,
        [("created", "2026-09-27T09:45:00", 1, {}), ("updated", "2026-09-27T10:15:00", 2, {})],
    )


def _build(wh: Warehouse) -> None:
    """Both workspaces' raw data, then fx_rates, ledger, history, MRR and CFO marts over RANGES."""
    create_organization(wh, "o", org_id="o")
    create_workspace(
        wh, "o", "ny", workspace_id="ws_ny", time_zone=NY, cash_on_hand_micros=1_000_000 * C
    )
    create_workspace(wh, "o", "chatham", workspace_id="ws_ch", time_zone=CHATHAM)
    _ny(wh)
    _chatham(wh)
    for first, last in RANGES:
        assets = [fx_rates, ledger, subscription_history, mrr_marts, cfo_marts]
        result = materialize_days(assets, wh, first, last)
        assert result.success
        checks = check_results(result)
        assert checks["ledger_matches_raw_stripe"] and checks["movement_identity_holds"]
        assert checks["revenue_matches_ledger"]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def built(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Warehouse]:
    """The built warehouse, once per database for the whole module (the same isolation as the
    `warehouse` fixture: its own SQLite file or PostgreSQL database, dropped afterwards)."""
    tmp = tmp_path_factory.mktemp("time_zones")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FP_DATA_DIR", str(tmp / "data"))
        get_settings.cache_clear()
        try:
            with fresh_warehouse(request.param, tmp, request) as wh:
                _build(wh)
                yield wh
        finally:
            get_settings.cache_clear()


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _by_day(wh: Warehouse, table: str, ws: str, cols: str) -> dict[date, dict[str, Any]]:
    return {
        _day(r["day"]): r
        for r in wh.rows(f"SELECT day, {cols} FROM {table} WHERE workspace_id = :w", w=ws)
    }


def test_ledger_puts_each_cash_movement_on_its_local_day(built: Warehouse) -> None:
    """§7: charges, refunds, fees and usage costs on the local day of their instant; dated rows on
    their date; EUR amounts at the rate of their local day, or left unconverted without one."""
    rows = {
        r["source_id"]: (r["kind"], _day(r["day"]), r["amount_reporting_micros"], r["fx_rate"])
        for r in built.rows(
            "SELECT source_id, kind, day, amount_reporting_micros, fx_rate FROM core.ledger"
        )
    }
    d = date
    assert rows == {
        "ch_1": ("gross_revenue", d(2026, 2, 6), 100 * C, "1"),
        "ch_2": ("gross_revenue", d(2026, 2, 7), 200 * C, "1"),
        "ch_3": ("gross_revenue", d(2026, 2, 28), 400 * C, "1"),
        "ch_4": ("gross_revenue", d(2026, 3, 1), 800 * C, "1"),
        "ch_5": ("gross_revenue", d(2026, 3, 7), 1_600 * C, "1"),
        "ch_6": ("gross_revenue", d(2026, 3, 8), 3_200 * C, "1"),
        "ch_7": ("gross_revenue", d(2026, 3, 8), 6_400 * C, "1"),
        "ch_8": ("gross_revenue", d(2026, 3, 9), 12_800 * C, "1"),
        "ch_9": ("gross_revenue", d(2026, 10, 31), 1_000 * C, "1"),
        "ch_10": ("gross_revenue", d(2026, 11, 1), 2_000 * C, "1"),
        "ch_11": ("gross_revenue", d(2026, 11, 1), 4_000 * C, "1"),
        "ch_12": ("gross_revenue", d(2026, 11, 1), 8_000 * C, "1"),
        "ch_13": ("gross_revenue", d(2026, 11, 2), 16_000 * C, "1"),
        "re_1": ("refund", d(2026, 3, 8), -1_000 * C, "1"),
        "re_2": ("refund", d(2026, 3, 9), -500 * C, "1"),
        "txn_1": ("fee", d(2026, 3, 8), 30 * C, "1"),
        "txn_2": ("fee", d(2026, 3, 7), 50 * C, "1"),
        "u_1": ("expense", d(2026, 3, 7), 70 * C, "1"),
        "x_1": ("expense", d(2026, 3, 8), 9_000 * C, "1"),
        "m_1": ("manual_revenue", d(2026, 3, 8), 250 * C, "1"),
        # 100 EUR x 1.10 (Jan 14) = 110 USD; x 1.20 (Jan 15) = 120; x 1.25 (Jan 16) = 125.
        "ch_c1": ("gross_revenue", d(2026, 1, 14), 110_000_000, "1.1"),
        "ch_c2": ("gross_revenue", d(2026, 1, 15), 120_000_000, "1.2"),
        "ch_c3": ("gross_revenue", d(2026, 1, 16), 125_000_000, "1.25"),
        # Local Jan 18 has no rate (its UTC day Jan 17 has one, 1.30): left unconverted (§2).
        "ch_c4": ("gross_revenue", d(2026, 1, 18), None, None),
        # -20 EUR x 1.25 (Jan 16).
        "re_c1": ("refund", d(2026, 1, 16), -25_000_000, "1.25"),
        "ch_c5": ("gross_revenue", d(2026, 9, 27), 700 * C, "1"),
        "ch_c6": ("gross_revenue", d(2026, 9, 28), 900 * C, "1"),
    }


def test_revenue_daily_sums_local_days(built: Warehouse) -> None:
    """§10: one row per local day with that day's ledger totals (cents x C = micro-units)."""
    cols = (
        "gross_revenue_micros, refunds_micros, expenses_micros, net_micros, skipped_currencies_json"
    )
    ny = _by_day(built, "mart.revenue_daily", "ws_ny", cols)
    ch = _by_day(built, "mart.revenue_daily", "ws_ch", cols)
    assert len(ny) == len(ch) == sum((b - a).days + 1 for a, b in RANGES)

    def day(rows: dict[date, dict[str, Any]], d: date) -> tuple[Any, ...]:
        r = rows[d]
        return (
            r["gross_revenue_micros"],
            r["refunds_micros"],
            r["expenses_micros"],
            r["net_micros"],
            _json(r["skipped_currencies_json"]) or {},
        )

    assert day(ny, date(2026, 3, 7)) == (1_600 * C, 0, 120 * C, 1_480 * C, {})  # fee 50 + usage 70
    # 3,200 + 6,400 + manual 250 = 9,850; fee 30 + one-time 9,000 = 9,030; net 9,850 - 9,030.
    assert day(ny, date(2026, 3, 8)) == (9_850 * C, -1_000 * C, 9_030 * C, 820 * C, {})
    assert day(ny, date(2026, 3, 9)) == (12_800 * C, -500 * C, 0, 12_800 * C, {})
    assert day(ny, date(2026, 10, 31)) == (1_000 * C, 0, 0, 1_000 * C, {})
    # The 25-hour Nov 1 holds 00:30 EDT, the second 01:30 and 23:30 EST: 2,000 + 4,000 + 8,000.
    assert day(ny, date(2026, 11, 1)) == (14_000 * C, 0, 0, 14_000 * C, {})
    assert day(ny, date(2026, 11, 2)) == (16_000 * C, 0, 0, 16_000 * C, {})
    assert day(ch, date(2026, 1, 13)) == (0, 0, 0, 0, {})
    assert day(ch, date(2026, 1, 14)) == (110_000_000, 0, 0, 110_000_000, {})
    assert day(ch, date(2026, 1, 15)) == (120_000_000, 0, 0, 120_000_000, {})
    assert day(ch, date(2026, 1, 16)) == (125_000_000, -25_000_000, 0, 125_000_000, {})
    assert day(ch, date(2026, 1, 18)) == (0, 0, 0, 0, {"eur": 1})
    assert day(ch, date(2026, 9, 27)) == (700 * C, 0, 0, 700 * C, {})
    assert day(ch, date(2026, 9, 28)) == (900 * C, 0, 0, 900 * C, {})


def test_cfo_metrics_roll_30_local_days(built: Warehouse) -> None:
    """§9: the 30 local days ending D (D-29 .. D), with end-of-day MRR of D from mart.mrr_daily."""
    cols = (
        "gross_revenue_cents_30d, refunds_cents_30d, net_revenue_cents_30d, mrr_cents, arr_cents,"
        " total_expenses_cents_30d, recurring_expenses_cents_30d, one_time_expenses_cents_30d,"
        " burn_cents_30d, recurring_burn_cents_30d, runway_months, skipped_currencies_json"
    )
    ny = _by_day(built, "mart.cfo_metrics_daily", "ws_ny", cols)
    ch = _by_day(built, "mart.cfo_metrics_daily", "ws_ch", cols)

    def m(rows: dict[date, dict[str, Any]], d: date) -> dict[str, Any]:
        r = dict(rows[d])
        r.pop("day")
        r["skipped_currencies_json"] = _json(r["skipped_currencies_json"])
        return r

    # Mar 7: Feb 6 .. Mar 7 = ch_1..ch_5 = 100 + 200 + 400 + 800 + 1,600 = 3,100; expenses fee 50 +
    # usage 70 = 120 (recurring); burn 120 - 3,100; MRR: cus_b's 10,000 alone.
    assert m(ny, date(2026, 3, 7)) == {
        "gross_revenue_cents_30d": 3_100,
        "refunds_cents_30d": 0,
        "net_revenue_cents_30d": 3_100,
        "mrr_cents": 10_000,
        "arr_cents": 120_000,
        "total_expenses_cents_30d": 120,
        "recurring_expenses_cents_30d": 120,
        "one_time_expenses_cents_30d": 0,
        "burn_cents_30d": -2_980,
        "recurring_burn_cents_30d": -2_980,
        "runway_months": None,
        "skipped_currencies_json": {},
    }
    # Mar 8: Feb 7 .. Mar 8: ch_1 (23:30 Feb 6) drops out, ch_7 (23:30 EDT, already Mar 9 in UTC)
    # is in: 200 + 400 + 800 + 1,600 + 3,200 + 6,400 + manual 250 = 12,850; refunds -1,000 (re_1);
    # expenses 50 + 70 + 30 + 9,000 = 9,150 of which 9,000 one-time; burn 9,150 - 11,850 = -2,700;
    # recurring burn 150 - 11,850 = -11,700. MRR: cus_a 10,000 + cus_c 20,000 (cus_b ended).
    assert m(ny, date(2026, 3, 8)) == {
        "gross_revenue_cents_30d": 12_850,
        "refunds_cents_30d": -1_000,
        "net_revenue_cents_30d": 11_850,
        "mrr_cents": 30_000,
        "arr_cents": 360_000,
        "total_expenses_cents_30d": 9_150,
        "recurring_expenses_cents_30d": 150,
        "one_time_expenses_cents_30d": 9_000,
        "burn_cents_30d": -2_700,
        "recurring_burn_cents_30d": -11_700,
        "runway_months": None,
        "skipped_currencies_json": {},
    }
    # Mar 9: Feb 8 .. Mar 9: 12,850 - 200 (ch_2) + 12,800 (ch_8) = 25,450; refunds -1,500;
    # MRR: cus_a 30,000 + cus_c 20,000.
    mar9 = m(ny, date(2026, 3, 9))
    assert (mar9["gross_revenue_cents_30d"], mar9["refunds_cents_30d"], mar9["mrr_cents"]) == (
        25_450,
        -1_500,
        50_000,
    )
    # Fall: Oct 31 = ch_9 (1,000); Nov 1 adds ch_10..ch_12 (14,000); Nov 2 adds ch_13 (16,000).
    # MRR: 50,000 on Oct 31; + cus_d 10,000 + cus_e 10,000 on Nov 1; cus_a 3 -> 2 seats on Nov 2.
    got = {
        d: (m(ny, d)["gross_revenue_cents_30d"], m(ny, d)["mrr_cents"])
        for d in (date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 2))
    }
    assert got == {
        date(2026, 10, 31): (1_000, 50_000),
        date(2026, 11, 1): (15_000, 70_000),
        date(2026, 11, 2): (31_000, 60_000),
    }
    # Chatham Jan 16: 11,000 + 12,000 + 12,500 USD cents, refund -2,500; MRR 50 EUR x 1.25.
    jan16 = m(ch, date(2026, 1, 16))
    assert (
        jan16["gross_revenue_cents_30d"],
        jan16["refunds_cents_30d"],
        jan16["mrr_cents"],
        jan16["skipped_currencies_json"],
    ) == (35_500, -2_500, 6_250, {})
    # Jan 18: the unconverted EUR charge is counted, never treated as USD; cus_f ended Jan 17.
    jan18 = m(ch, date(2026, 1, 18))
    assert (
        jan18["gross_revenue_cents_30d"],
        jan18["mrr_cents"],
        jan18["skipped_currencies_json"],
    ) == (35_500, 0, {"eur": 1})


def _mrr(wh: Warehouse, ws: str) -> dict[date, tuple[int, ...]]:
    """(MRR, new, expansion, contraction, churn, fx, active subscriptions) per day, in cents."""
    out = {}
    for d, r in _by_day(
        wh,
        "mart.mrr_daily",
        ws,
        "mrr_micros, new_micros, expansion_micros, contraction_micros, churn_micros, fx_micros,"
        " active_subscriptions",
    ).items():
        money = [r[k] for k in ("mrr_micros", "new_micros", "expansion_micros")]
        money += [r[k] for k in ("contraction_micros", "churn_micros", "fx_micros")]
        assert all(v % C == 0 for v in money)
        out[d] = (*(v // C for v in money), r["active_subscriptions"])
    return out


def _movements(wh: Warehouse, ws: str) -> list[tuple[date, str, str, int]]:
    return sorted(
        (_day(r["day"]), r["customer_id"], r["kind"], r["amount_micros"])
        for r in wh.rows(
            "SELECT day, customer_id, kind, amount_micros FROM mart.mrr_movements"
            " WHERE workspace_id = :w",
            w=ws,
        )
    )


def test_mrr_is_end_of_local_day_across_23_and_25_hour_days(built: Warehouse) -> None:
    """§1/§5: a change at S(D) counts on D, one at the last second of D counts on D, an end at
    S(D) leaves D-1 as the last day in force; the 23- and 25-hour days do not shift any of them."""
    ny = _mrr(built, "ws_ny")
    d = date
    # (MRR, new, expansion, contraction, churn, fx, active subscriptions), cents.
    assert ny[d(2026, 1, 31)] == (0, 0, 0, 0, 0, 0, 0)
    assert ny[d(2026, 2, 1)] == (10_000, 10_000, 0, 0, 0, 0, 1)  # cus_b from S(Feb 1)
    assert ny[d(2026, 3, 7)] == (10_000, 0, 0, 0, 0, 0, 1)  # cus_b in force until S(Mar 8)
    # Mar 8: cus_a new 10,000 (from S(Mar 8)), cus_c new 2 x 10,000 (from 23:59:59), cus_b churn
    # 10,000: 10,000 + 30,000 - 10,000 = 30,000.
    assert ny[d(2026, 3, 8)] == (30_000, 30_000, 0, 0, 10_000, 0, 2)
    # Mar 9: cus_a 1 -> 3 seats at S(Mar 9), 23 h after S(Mar 8): expansion 20,000.
    assert ny[d(2026, 3, 9)] == (50_000, 0, 20_000, 0, 0, 0, 2)
    # Oct 31: cus_e still trialing (trial_end = S(Nov 1) is not before S(Nov 1)).
    assert ny[d(2026, 10, 31)] == (50_000, 0, 0, 0, 0, 0, 2)
    # Nov 1: cus_e converts at S(Nov 1), cus_d starts at 23:30 EST (hour 25): new 20,000.
    assert ny[d(2026, 11, 1)] == (70_000, 20_000, 0, 0, 0, 0, 4)
    # Nov 2: cus_a 3 -> 2 seats at S(Nov 2), 25 h after S(Nov 1): contraction 10,000.
    assert ny[d(2026, 11, 2)] == (60_000, 0, 0, 10_000, 0, 0, 4)
    assert ny[d(2026, 11, 3)] == (60_000, 0, 0, 0, 0, 0, 4)
    assert _movements(built, "ws_ny") == [
        (d(2026, 2, 1), "cus_b", "new", 10_000 * C),
        (d(2026, 3, 8), "cus_a", "new", 10_000 * C),
        (d(2026, 3, 8), "cus_b", "churn", 10_000 * C),
        (d(2026, 3, 8), "cus_c", "new", 20_000 * C),
        (d(2026, 3, 9), "cus_a", "expansion", 20_000 * C),
        (d(2026, 11, 1), "cus_d", "new", 10_000 * C),
        (d(2026, 11, 1), "cus_e", "new", 10_000 * C),
        (d(2026, 11, 2), "cus_a", "contraction", 10_000 * C),
    ]
    ch = _mrr(built, "ws_ch")
    # cus_g starts at 23:30 CHADT Sep 27 (a 23-hour day); 1 -> 2 seats at S(Sep 28), which is
    # S(Sep 27) + 23 h: at S(Sep 27) + 24 h the second seat would already count on Sep 27.
    assert ch[d(2026, 9, 26)] == (0, 0, 0, 0, 0, 0, 0)
    assert ch[d(2026, 9, 27)] == (10_000, 10_000, 0, 0, 0, 0, 1)
    assert ch[d(2026, 9, 28)] == (20_000, 0, 10_000, 0, 0, 0, 1)


def test_movement_rows_trace_to_the_stripe_events_of_their_local_day(built: Warehouse) -> None:
    """The mrr_movements report's event ids are those created on the movement's local day: cus_c's
    creation at 23:59:59 EDT Mar 8 (UTC Mar 9) and cus_d's at 23:30 EST Nov 1 (UTC Nov 2) stay on
    their local day, next to the changes at S(Mar 8), S(Mar 9), S(Nov 1) and S(Nov 2)."""
    ny = workspace(built, "ws_ny")
    rows = customer_movements(built, ny, date(2026, 2, 1), date(2026, 3, 31))
    rows += customer_movements(built, ny, date(2026, 10, 31), date(2026, 11, 3))
    # No invoice lines were loaded for these subscriptions: that column stays empty.
    assert [
        (r["day"], r["customer_id"], r["kind"], r["event_ids"], r["invoice_line_ids"]) for r in rows
    ] == [
        (date(2026, 2, 1), "cus_b", "new", ["evt_sub_b_0"], []),
        (date(2026, 3, 8), "cus_a", "new", ["evt_sub_a_0"], []),
        (date(2026, 3, 8), "cus_b", "churn", ["evt_sub_b_1"], []),
        (date(2026, 3, 8), "cus_c", "new", ["evt_sub_c_0"], []),
        (date(2026, 3, 9), "cus_a", "expansion", ["evt_sub_a_1"], []),
        (date(2026, 11, 1), "cus_d", "new", ["evt_sub_d_0"], []),
        (date(2026, 11, 1), "cus_e", "new", ["evt_sub_e_1"], []),
        (date(2026, 11, 2), "cus_a", "contraction", ["evt_sub_a_2"], []),
    ]


def test_mrr_converts_at_the_local_days_rate(built: Warehouse) -> None:
    """§4-5: MRR_c(D) x rate(D) of the local day; fx = p x (r - r'); churn = p x r."""
    ch = _mrr(built, "ws_ch")
    d = date
    # 50 EUR from S(Jan 14) (UTC Jan 13, which has no rate): 50 x 1.10 = 55.00 USD, new.
    assert ch[d(2026, 1, 13)] == (0, 0, 0, 0, 0, 0, 0)
    assert ch[d(2026, 1, 14)] == (5_500, 5_500, 0, 0, 0, 0, 1)
    # 50 x 1.20 = 60.00; fx 50 x (1.20 - 1.10) = 5.00.
    assert ch[d(2026, 1, 15)] == (6_000, 0, 0, 0, 0, 500, 1)
    # 50 x 1.25 = 62.50; fx 50 x 0.05 = 2.50.
    assert ch[d(2026, 1, 16)] == (6_250, 0, 0, 0, 0, 250, 1)
    # Ended at S(Jan 17): churn 50 x 1.30 = 65.00, fx 50 x (1.30 - 1.25) = 2.50;
    # 62.50 + 2.50 - 65.00 = 0.
    assert ch[d(2026, 1, 17)] == (0, 0, 0, 0, 6_500, 250, 0)
    assert ch[d(2026, 1, 18)] == (0, 0, 0, 0, 0, 0, 0)
    assert [m for m in _movements(built, "ws_ch") if m[0] < d(2026, 2, 1)] == [
        (d(2026, 1, 14), "cus_f", "new", 55_000_000),
        (d(2026, 1, 17), "cus_f", "churn", 65_000_000),
    ]
    # The fx movements are stored per currency: EUR MRR of D-1 (50 EUR) x (r - r').
    fx = {
        r["day"] if isinstance(r["day"], date) else date.fromisoformat(r["day"]): (
            r["fx_by_currency_json"]
            if isinstance(r["fx_by_currency_json"], dict)
            else json.loads(r["fx_by_currency_json"])
        )
        for r in built.rows(
            "SELECT day, fx_by_currency_json FROM mart.mrr_daily WHERE workspace_id = 'ws_ch'"
            " AND day BETWEEN '2026-01-13' AND '2026-01-18'"
        )
    }
    eur = {day: v["eur"] for day, v in fx.items() if v}
    assert {day: (v["previous_mrr_native"], v["previous_rate"], v["rate"], v["fx_micros"])
            for day, v in eur.items()} == {
        d(2026, 1, 15): ("50000000", "11/10", "6/5", 5_000_000),
        d(2026, 1, 16): ("50000000", "6/5", "5/4", 2_500_000),
        d(2026, 1, 17): ("50000000", "5/4", "13/10", 2_500_000),
    }  # fmt: skip


def _points(result: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    return [
        (p["date"], str(p["revenue"]), str(p["expenses"]), str(p["net"]), str(p["refunds"]))
        for p in result["dataPoints"]
    ]


# (period, startDate, endDate, week_start, data points as (date, revenue, expenses, net, refunds)).
BUCKET_CASES: list[tuple[str, str, str, str, list[tuple[str, str, str, str, str]]]] = [
    # Sunday weeks: Mar 1-7 = ch_4 800 + ch_5 1,600, expenses 50 + 70; Mar 8-14 (the DST week)
    # = 3,200 + 6,400 + 12,800 + manual 250 = 22,650, expenses 30 + 9,000, refunds -1,500.
    (
        "weekly",
        "2026-03-01",
        "2026-03-14",
        "sunday",
        [
            ("2026-03-01", "24.00", "1.20", "22.80", "0.00"),
            ("2026-03-08", "226.50", "90.30", "136.20", "-15.00"),
        ],
    ),
    # Monday weeks: Mar 1 alone (clipped) = 800; Mar 2-8 = 1,600 + 3,200 + 6,400 + 250 = 11,450,
    # expenses 50 + 70 + 30 + 9,000 = 9,150, refund -1,000; Mar 9-14 = 12,800, refund -500.
    (
        "weekly",
        "2026-03-01",
        "2026-03-14",
        "monday",
        [
            ("2026-03-01", "8.00", "0.00", "8.00", "0.00"),
            ("2026-03-02", "114.50", "91.50", "23.00", "-10.00"),
            ("2026-03-09", "128.00", "0.00", "128.00", "-5.00"),
        ],
    ),
    # Feb = 100 + 200 + 400 (ch_3 at 23:30 EST Feb 28 is March in UTC); March = 25,050.
    (
        "monthly",
        "2026-02-01",
        "2026-03-31",
        "sunday",
        [
            ("2026-02-01", "7.00", "0.00", "7.00", "0.00"),
            ("2026-03-01", "250.50", "91.50", "159.00", "-15.00"),
        ],
    ),
    # Sunday weeks over the 25-hour Nov 1: Oct 25-31 = ch_9; Nov 1-7 = 2,000 + 4,000 + 8,000
    # + 16,000.
    (
        "weekly",
        "2026-10-25",
        "2026-11-07",
        "sunday",
        [
            ("2026-10-25", "10.00", "0.00", "10.00", "0.00"),
            ("2026-11-01", "300.00", "0.00", "300.00", "0.00"),
        ],
    ),
    # Monday weeks: Oct 25 alone (clipped) = 0; Oct 26 - Nov 1 = 1,000 + 2,000 + 4,000 + 8,000;
    # Nov 2-8 = 16,000.
    (
        "weekly",
        "2026-10-25",
        "2026-11-07",
        "monday",
        [
            ("2026-10-25", "0.00", "0.00", "0.00", "0.00"),
            ("2026-10-26", "150.00", "0.00", "150.00", "0.00"),
            ("2026-11-02", "160.00", "0.00", "160.00", "0.00"),
        ],
    ),
    # ch_9 at 23:30 EDT Oct 31 is November in UTC but October locally.
    (
        "monthly",
        "2026-10-01",
        "2026-11-30",
        "monday",
        [
            ("2026-10-01", "10.00", "0.00", "10.00", "0.00"),
            ("2026-11-01", "300.00", "0.00", "300.00", "0.00"),
        ],
    ),
]


def test_revenue_buckets_over_dst_weeks_and_months(built: Warehouse) -> None:
    """§10 buckets of the revenue_daily mart in the workspace's zone, both week starts (§1)."""
    days = built.rows("SELECT * FROM mart.revenue_daily WHERE workspace_id = 'ws_ny'")
    entries = revenue_entries(days)
    for period, start, end, week_start, expected in BUCKET_CASES:
        got = revenue_analytics(
            entries, period, start, end, tz=NY, week_start=week_start, today=LAST
        )
        assert _points(got) == expected, (period, start, week_start)
        assert got["totals"]["revenue"] == sum(Decimal(p[1]) for p in expected)
