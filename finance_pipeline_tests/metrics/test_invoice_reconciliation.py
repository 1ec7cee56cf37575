"""The WARN check `invoices_reconcile_with_mrr` (docs/metrics.md §3-4) through the real history and MRR
assets, on hand-made raw Stripe rows synced into three workspaces that differ only in
`discount_mode`, on SQLite and PostgreSQL.

The account (USD, a 50.00 monthly price; workspace time zone America/New_York, EDT = UTC-4):
- sub_once starts 2026-05-01T16:00Z with a once coupon (20 %): the first invoice line is 50.00
  minus 10.00, the next one 50.00;
- sub_forever starts 2026-05-05T16:00Z with a forever coupon (10 %): every line is 50.00 minus 5.00;
- sub_stack starts 2026-05-20T16:00Z with a once (20 %) then a forever (10 %) coupon: 50.00 minus
  10.00 minus 4.00;
- sub_old started 2026-03-10T02:00Z (Mar 9 local), before the first stored event (sub_once's
  creation, 2026-05-01T16:00Z), so its history is rebuilt from invoices. Its first line carries a
  discount of 5.00 the history never saw (deleted before the first sync): a known approximation.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
import pytest

from finance_pipeline.core.assets import fx_rates, ledger, subscription_history
from finance_pipeline.lib.mrr import Settings
from finance_pipeline.metrics.mrr_assets import mrr_marts
from finance_pipeline.metrics.reconcile import invoice_mrr_mismatches
from finance_pipeline.tenancy import create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse
from finance_pipeline_tests.dagster_runs import materialize_days

NY = "America/New_York"
SYNCED_AT = 1_795_132_800  # 2026-11-20T00:00Z, after every instant below
FIRST, LAST = date(2026, 3, 1), date(2026, 6, 30)
MODES = {"ws_all": "all_active", "ws_fo": "forever_only", "ws_none": "none"}
PRICE = {
    "id": "price_m",
    "object": "price",
    "currency": "usd",
    "unit_amount": 5_000,
    "unit_amount_decimal": "5000",
    "billing_scheme": "per_unit",
    "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"},
    "product": "prod_m",
    "tax_behavior": "exclusive",
    "type": "recurring",
}


def ts(utc: str) -> int:
    """Unix seconds of a UTC wall-clock time written as ISO text (test input)."""
    return int(datetime.fromisoformat(utc).replace(tzinfo=UTC).timestamp())


def _coupon_discount(did: str, sub: str, coupon: str, pct: float, duration: str, start: int):
    return {
        "id": did,
        "object": "discount",
        "customer": sub.replace("sub_", "cus_"),
        "subscription": sub,
        "start": start,
        "end": None,
        "source": {
            "type": "coupon",
            "coupon": {"id": coupon, "percent_off": pct, "amount_off": None, "duration": duration},
        },
    }


def _rows(wh: Warehouse, ws: str, table: str, rows: list[dict[str, Any]]) -> None:
    """Stripe objects as raw rows: the payload, and the table's columns from top-level fields."""
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
                    "account_id": "acct_rec",
                    "livemode": False,
                    "payload": r,
                    "synced_at": SYNCED_AT,
                }
                for r in rows
            ],
        )


def _subscription(
    wh: Warehouse, ws: str, sub: str, start: str, discounts: list[dict[str, Any]], events: bool
) -> None:
    """An active one-seat subscription, with its creation event unless it predates the events."""
    item = {"id": sub.replace("sub_", "si_"), "object": "subscription_item", "price": PRICE}
    obj = {
        "id": sub,
        "object": "subscription",
        "customer": sub.replace("sub_", "cus_"),
        "currency": "usd",
        "status": "active",
        "created": ts(start),
        "start_date": ts(start),
        "items": {"object": "list", "data": [{**item, "quantity": 1}], "has_more": False},
        "trial_start": None,
        "trial_end": None,
        "cancel_at_period_end": False,
        "cancel_at": None,
        "canceled_at": None,
        "ended_at": None,
        "pause_collection": None,
        "discounts": discounts,
    }
    if events:
        event = {
            "id": f"evt_{sub}",
            "created": ts(start),
            "type": "customer.subscription.created",
            "object_type": "subscription",
            "object_id": sub,
            "data": {"object": obj, "previous_attributes": {}},
        }
        _rows(wh, ws, "raw.stripe_events", [event])
    _rows(wh, ws, "raw.stripe_subscriptions", [obj])
    _rows(
        wh,
        ws,
        "raw.stripe_subscription_items",
        [{**item, "quantity": 1, "subscription": sub, "created": ts(start)}],
    )


def _invoice(
    wh: Warehouse,
    ws: str,
    sub: str,
    n: int,
    period: tuple[str, str],
    off: Sequence[tuple[int, Any]] = (),
) -> None:
    """A paid renewal invoice with one 50.00 line; `off` = [(discount amount, discount)] in the
    order Stripe applied them (a discount by id only when it is not expanded)."""
    inv = f"in_{sub}_{n}"
    line = {
        "id": f"il_{sub}_{n}",
        "object": "line_item",
        "invoice": inv,
        "subscription": sub,
        "subscription_item": sub.replace("sub_", "si_"),
        "price": PRICE,
        "quantity": 1,
        "amount": 5_000,
        "currency": "usd",
        "period_start": ts(period[0]),
        "period_end": ts(period[1]),
        "period": {"start": ts(period[0]), "end": ts(period[1])},
        "proration": False,
        "discount_amounts": [
            {"amount": a, "discount": d["id"] if isinstance(d, dict) else d} for a, d in off
        ],
        "taxes": [],
    }
    _rows(
        wh,
        ws,
        "raw.stripe_invoices",
        [
            {
                "id": inv,
                "object": "invoice",
                "created": ts(period[0]),
                "customer": sub.replace("sub_", "cus_"),
                "subscription": sub,
                "status": "paid",
                "currency": "usd",
                "billing_reason": "subscription_cycle",
                "paid_at": ts(period[0]),
                "discounts": [d for _a, d in off],
            }
        ],
    )
    _rows(wh, ws, "raw.stripe_invoice_lines", [line])


def _account(wh: Warehouse, ws: str) -> None:
    once = _coupon_discount(
        "di_once", "sub_once", "WELCOME20", 20.0, "once", ts("2026-05-01T16:00:00")
    )
    forever = _coupon_discount(
        "di_forever", "sub_forever", "SAVE10", 10.0, "forever", ts("2026-05-05T16:00:00")
    )
    _rows(
        wh,
        ws,
        "raw.stripe_prices",
        [
            {
                **PRICE,
                "recurring_interval": "month",
                "recurring_interval_count": 1,
                "usage_type": "licensed",
            }
        ],
    )
    _subscription(wh, ws, "sub_once", "2026-05-01T16:00:00", [once], events=True)
    _invoice(wh, ws, "sub_once", 1, ("2026-05-01T16:00:00", "2026-06-01T16:00:00"), [(1_000, once)])
    _invoice(wh, ws, "sub_once", 2, ("2026-06-01T16:00:00", "2026-07-01T16:00:00"))
    _subscription(wh, ws, "sub_forever", "2026-05-05T16:00:00", [forever], events=True)
    for n, (a, b) in enumerate([("05-05", "06-05"), ("06-05", "07-05")]):
        _invoice(
            wh, ws, "sub_forever", n, (f"2026-{a}T16:00:00", f"2026-{b}T16:00:00"), [(500, forever)]
        )
    # Stacked: the once coupon first, so Stripe took the forever 10 % of 40.00, not of 50.00.
    stack = [
        _coupon_discount(f"di_stack_{d}", "sub_stack", c, p, d, ts("2026-05-20T16:00:00"))
        for c, p, d in (("WELCOME20", 20.0, "once"), ("SAVE10", 10.0, "forever"))
    ]
    _subscription(wh, ws, "sub_stack", "2026-05-20T16:00:00", stack, events=True)
    _invoice(
        wh,
        ws,
        "sub_stack",
        1,
        ("2026-05-20T16:00:00", "2026-06-20T16:00:00"),
        [(1_000, stack[0]), (400, stack[1])],
    )
    _subscription(wh, ws, "sub_old", "2026-03-10T02:00:00", [], events=False)
    # A discount seen only as an id on one invoice: the history cannot apply it.
    _invoice(
        wh, ws, "sub_old", 1, ("2026-03-10T02:00:00", "2026-04-10T02:00:00"), [(500, "di_gone")]
    )
    for n, (a, b) in enumerate([("04-10", "05-10"), ("05-10", "06-10"), ("06-10", "07-10")], 2):
        _invoice(wh, ws, "sub_old", n, (f"2026-{a}T02:00:00", f"2026-{b}T02:00:00"))


def _check(result: dg.ExecuteInProcessResult) -> tuple[bool, str, dict[str, Any]]:
    """The invoice check's outcome: passed, description and metadata values."""
    [data] = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.asset_check_evaluation_data.check_name == "invoices_reconcile_with_mrr"
    ]
    meta = {k: getattr(v, "value", v) for k, v in data.metadata.items()}
    return data.passed, data.description or "", meta


def _run(wh: Warehouse, first: date, last: date) -> dg.ExecuteInProcessResult:
    result = materialize_days([fx_rates, ledger, subscription_history, mrr_marts], wh, first, last)
    assert result.success
    return result


@pytest.fixture
def account(warehouse: Warehouse) -> Warehouse:
    create_organization(warehouse, "o", org_id="o")
    for ws, mode in MODES.items():
        create_workspace(
            warehouse, "o", ws, workspace_id=ws, time_zone=NY, settings={"discount_mode": mode}
        )
        _account(warehouse, ws)
    return warehouse


APPROX_ROW = (
    "| {ws} | cus_old | sub_old | 2026-03-09 to 2026-04-09 | 45.00 USD | 50.00 USD | -5.00 USD |"
)


def test_every_discount_mode_passes_and_lists_the_rebuilt_period(account: Warehouse) -> None:
    """A once coupon under forever_only and a forever one under none compare like with like; the
    period before the first stored event is listed (all_active and forever_only cannot tell its
    unknown discount apart) but does not fail the check."""
    passed, description, meta = _check(_run(account, FIRST, LAST))
    assert passed
    # 3 workspaces x 9 lines, one per billing period.
    assert (meta["lines_checked"], meta["periods_compared"], meta["mismatches"]) == (27, 27, 0)
    assert meta["known_approximations"] == 2
    assert description == (
        "27 invoice lines in 27 billing periods checked: 0 unexplained mismatches, 2 known "
        "approximations (history rebuilt from invoices before the first stored Stripe event)."
    )
    assert (
        meta["history_complete_from"]
        == "ws_all: 2026-05-01, ws_fo: 2026-05-01, ws_none: 2026-05-01"
    )
    table = meta["approximation_examples"].splitlines()
    assert table[0] == (
        "| workspace | customer | subscription | period | invoiced_per_month | mrr | difference |"
    )
    assert table[2:] == [APPROX_ROW.format(ws="ws_all"), APPROX_ROW.format(ws="ws_fo")]
    assert meta["mismatch_examples"] == "none"
    # The once coupon's line (50.00 - 10.00) equals MRR under each switch: 40.00 where MRR counts
    # the coupon, 50.00 where it does not.
    once = (ts("2026-05-01T16:00:00"), ts("2026-05-02T00:00:00"))
    for mode in ("all_active", "forever_only", "none"):
        rec = invoice_mrr_mismatches(account, "ws_fo", Settings(discount_mode=mode, tz=NY), *once)
        assert (rec.lines_checked, rec.approximations, rec.mismatches) == (1, [], [])
    # The stacked line under forever_only: 50.00 - 4.00 would not be MRR's 45.00, so the whole
    # line (36.00) is compared with MRR under all discounts in force (36.00).
    stack = (ts("2026-05-20T16:00:00"), ts("2026-05-21T00:00:00"))
    rec = invoice_mrr_mismatches(account, "ws_fo", Settings("forever_only", tz=NY), *stack)
    assert (rec.lines_checked, rec.approximations, rec.mismatches) == (1, [], [])


def test_a_tampered_line_fails_with_dates_and_amounts(account: Warehouse) -> None:
    """An invoice line after the first stored event that disagrees with MRR is an unexplained
    mismatch: WARN, passed=False, with local ISO dates and 2-decimal amounts."""
    with account.begin() as db:
        db.execute(
            account.text(
                "UPDATE raw.stripe_invoice_lines SET amount = 5123"
                " WHERE workspace_id = 'ws_fo' AND id = 'il_sub_old_3'"
            )
        )
    # A daily run checks its own renewals: 2026-05-10T02:00Z is May 9 in New York.
    passed, description, meta = _check(_run(account, date(2026, 5, 9), date(2026, 5, 9)))
    assert not passed
    assert (meta["lines_checked"], meta["mismatches"], meta["known_approximations"]) == (3, 1, 0)
    assert description.startswith(
        "3 invoice lines in 3 billing periods checked: 1 unexplained mismatches"
    )
    assert meta["mismatch_examples"].splitlines()[2] == (
        "| ws_fo | cus_old | sub_old | 2026-05-09 to 2026-06-09 | 51.23 USD | 50.00 USD | 1.23 USD |"
    )
    rec = invoice_mrr_mismatches(account, "ws_fo", Settings(discount_mode="forever_only", tz=NY))
    [bad] = rec.mismatches
    assert bad.describe(NY) == {
        "customer": "cus_old",
        "subscription": "sub_old",
        "period": "2026-05-09 to 2026-06-09",
        "invoiced_per_month": "51.23 USD",
        "mrr": "50.00 USD",
        "difference": "1.23 USD",
    }
    assert [m.describe(NY)["period"] for m in rec.approximations] == ["2026-03-09 to 2026-04-09"]
