"""Core assets: FX rates, the cash ledger and subscription history, each rebuilt from raw."""

import time
from collections.abc import Callable, Iterator

import dagster as dg
import sqlalchemy as sa

from finance_pipeline.core.history_io import history_rows, load_history_inputs
from finance_pipeline.lib.ledger import LedgerBuilder, fx_lookup
from finance_pipeline.lib.subscription_history import build_history
from finance_pipeline.resources import WarehouseResource
from finance_pipeline.tenancy import list_workspaces
from finance_pipeline.warehouse.db import Warehouse

RAW_STRIPE = [
    "stripe_charges",
    "stripe_refunds",
    "stripe_invoices",
    "stripe_invoice_payments",
    "stripe_balance_transactions",
]


def _replace_workspace(
    wh: Warehouse, db: sa.Connection, table: str, workspace_id: str, rows: list[dict]
) -> None:
    db.execute(wh.text(f"DELETE FROM {table} WHERE workspace_id = :w"), {"w": workspace_id})
    if rows:
        db.execute(sa.insert(wh.table(table)), rows)


@dg.asset(
    key=["core", "fx_rates"],
    deps=[dg.AssetKey(["raw", "fx_rates"])],
    group_name="core",
    kinds={"sql"},
)
def fx_rates(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Daily FX rates (1 unit of currency = rate units of the reporting currency), exact decimals."""
    wh = warehouse.get()
    with wh.begin() as db:
        db.execute(wh.text("DELETE FROM core.fx_rates"))
        db.execute(
            wh.text(
                "INSERT INTO core.fx_rates (base, currency, date, rate)"
                " SELECT base, currency, date, rate FROM raw.fx_rates"
            )
        )
    summary = wh.rows(
        "SELECT base, currency, COUNT(*) AS days, MIN(date) AS first, MAX(date) AS last"
        " FROM core.fx_rates GROUP BY base, currency ORDER BY base, currency"
    )
    table = "\n".join(
        ["| base | currency | days | first | last |", "|---|---|---|---|---|"]
        + [
            f"| {r['base']} | {r['currency']} | {r['days']} | {r['first']} | {r['last']} |"
            for r in summary
        ]
    )
    return dg.MaterializeResult(
        metadata={"rows": sum(r["days"] for r in summary), "coverage": dg.MetadataValue.md(table)}
    )


def _ledger_rows(wh: Warehouse, ws) -> list[dict]:
    q = {"w": ws.id}
    rates = fx_lookup(
        wh.rows(
            "SELECT base, currency, date, rate FROM core.fx_rates WHERE base = :b",
            b=ws.reporting_currency,
        ),
        ws.reporting_currency,
    )
    b = LedgerBuilder(ws.id, ws.reporting_currency, ws.time_zone, rates)
    invoice_for_charge = {
        r["charge"]: r
        for r in wh.rows(
            "SELECT p.charge, i.total, i.total_excluding_tax FROM raw.stripe_invoice_payments p"
            " JOIN raw.stripe_invoices i ON i.workspace_id = p.workspace_id AND i.id = p.invoice"
            " WHERE p.workspace_id = :w AND p.charge IS NOT NULL",
            **q,
        )
    }
    b.stripe(
        wh.rows(
            "SELECT id, created, amount, currency, status, customer FROM raw.stripe_charges WHERE workspace_id = :w",
            **q,
        ),
        wh.rows(
            "SELECT id, created, amount, currency, status, charge FROM raw.stripe_refunds WHERE workspace_id = :w",
            **q,
        ),
        invoice_for_charge,
        wh.rows(
            "SELECT id, created, fee, currency FROM raw.stripe_balance_transactions WHERE workspace_id = :w",
            **q,
        ),
    )
    b.manual(
        wh.rows("SELECT * FROM raw.manual_revenue WHERE workspace_id = :w", **q),
        wh.rows("SELECT * FROM raw.cost_records WHERE workspace_id = :w", **q),
        wh.rows("SELECT * FROM raw.expense_events WHERE workspace_id = :w", **q),
        wh.rows("SELECT * FROM raw.usage_costs WHERE workspace_id = :w", **q),
    )
    # LedgerRow holds scalars only: a shallow copy of its fields is what `asdict` returns, without
    # the recursive deep copy that made this a hotspot of the rebuild.
    return [dict(vars(r)) for r in b.rows]


def reconcile_ledger_with_raw(rows: Callable[..., list[dict]]) -> list[str]:
    """Differences between ledger cash entries and raw Stripe totals, per workspace and currency.

    Counts must match exactly; sums must match the raw tax-exclusive totals (computed here in SQL,
    independently of the ledger code) within half a micro-unit per entry. `rows(sql, **params)`
    runs a query, so the check can see an uncommitted rebuild.
    """
    problems = []
    raw = rows(
        "SELECT c.workspace_id, c.currency, COUNT(*) AS n,"
        " SUM(CASE WHEN i.total IS NULL OR i.total = 0 OR i.total_excluding_tax IS NULL"
        "          THEN c.amount * 1.0 ELSE c.amount * 1.0 * i.total_excluding_tax / i.total END) AS minor"
        " FROM raw.stripe_charges c"
        " LEFT JOIN raw.stripe_invoice_payments p ON p.workspace_id = c.workspace_id AND p.charge = c.id"
        " LEFT JOIN raw.stripe_invoices i ON i.workspace_id = p.workspace_id AND i.id = p.invoice"
        " WHERE c.status = 'succeeded' GROUP BY c.workspace_id, c.currency"
    )
    led = {
        (r["workspace_id"], r["currency"]): r
        for r in rows(
            "SELECT workspace_id, currency, COUNT(*) AS n, SUM(amount_micros) AS micros FROM core.ledger"
            " WHERE kind = 'gross_revenue' AND source_table = 'raw.stripe_charges'"
            " GROUP BY workspace_id, currency"
        )
    }
    from finance_pipeline.lib.money import micros_per_minor

    for r in raw:
        got = led.get((r["workspace_id"], r["currency"]))
        if got is None or got["n"] != r["n"]:
            problems.append(
                f"{r['workspace_id']} {r['currency']}: {r['n']} succeeded charges, "
                f"{0 if got is None else got['n']} ledger entries"
            )
            continue
        expected = float(r["minor"]) * micros_per_minor(r["currency"])
        if abs(int(got["micros"]) - expected) > max(1.0, r["n"] * 0.5 + expected * 1e-12):
            problems.append(
                f"{r['workspace_id']} {r['currency']}: ledger gross {got['micros']} micros,"
                f" raw tax-exclusive charges {expected:.0f}"
            )
    raw_refunds = {
        (r["workspace_id"], r["currency"]): r["n"]
        for r in rows(
            "SELECT workspace_id, currency, COUNT(*) AS n FROM raw.stripe_refunds WHERE status = 'succeeded'"
            " GROUP BY workspace_id, currency"
        )
    }
    led_refunds = {
        (r["workspace_id"], r["currency"]): r["n"]
        for r in rows(
            "SELECT workspace_id, currency, COUNT(*) AS n FROM core.ledger WHERE kind = 'refund'"
            " AND source_table = 'raw.stripe_refunds' GROUP BY workspace_id, currency"
        )
    }
    if raw_refunds != led_refunds:
        problems.append(f"refund counts differ: raw {raw_refunds} vs ledger {led_refunds}")
    return problems


@dg.asset(
    key=["core", "ledger"],
    deps=[dg.AssetKey(["raw", t]) for t in RAW_STRIPE]
    + [
        dg.AssetKey(["raw", t])
        for t in ("manual_revenue", "cost_records", "expense_events", "usage_costs")
    ]
    + [dg.AssetKey(["core", "fx_rates"])],
    group_name="core",
    kinds={"sql", "python"},
    check_specs=[
        dg.AssetCheckSpec(
            "ledger_matches_raw_stripe",
            asset=["core", "ledger"],
            blocking=True,
            description="Succeeded charges and refunds appear once each, and "
            "gross revenue equals raw tax-exclusive charge totals.",
        )
    ],
)
def ledger(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> Iterator:
    """One row per money movement (metrics.md §7): tax-exclusive cash revenue, refunds on their own
    day, fees and every expense, in native and reporting currency (FX of the local day)."""
    wh = warehouse.get()
    totals: dict[str, int] = {}
    skipped: dict[str, int] = {}
    with wh.begin() as db:
        for ws in list_workspaces(wh):
            rows = _ledger_rows(wh, ws)
            _replace_workspace(wh, db, "core.ledger", ws.id, rows)
            for r in rows:
                if r["amount_reporting_micros"] is None:
                    skipped[r["currency"]] = skipped.get(r["currency"], 0) + 1
                else:
                    totals[r["kind"]] = totals.get(r["kind"], 0) + r["amount_reporting_micros"]
        # Validate inside the transaction: a failed reconciliation rolls the rebuild back.
        problems = reconcile_ledger_with_raw(
            lambda sql, **p: [dict(r._mapping) for r in db.execute(wh.text(sql), p)]
        )
        if problems:
            raise dg.Failure(
                "ledger does not reconcile with raw Stripe data; nothing was written",
                metadata={
                    "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems[:50]))
                },
            )
    yield dg.MaterializeResult(
        metadata={
            "rows": int(wh.scalar("SELECT COUNT(*) FROM core.ledger") or 0),
            **{f"total_{k}_reporting_micros": v for k, v in sorted(totals.items())},
            "skipped_currencies": dg.MetadataValue.json(skipped),
        }
    )
    yield dg.AssetCheckResult(
        check_name="ledger_matches_raw_stripe",
        passed=True,
        metadata={"checked_at": int(time.time())},
    )


@dg.asset(
    key=["core", "subscription_history"],
    deps=[
        dg.AssetKey(["raw", t])
        for t in (
            "stripe_subscriptions",
            "stripe_subscription_items",
            "stripe_events",
            "stripe_invoice_lines",
            "stripe_prices",
            "stripe_invoices",
            "stripe_invoice_payments",
            "stripe_charges",
        )
    ],
    group_name="core",
    kinds={"sql", "python"},
)
def subscription_history(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Each subscription item's state over time (price, quantity, status, trial, pause, discounts,
    scheduled cancellation) as half-open intervals, from events, the synced state and invoices (§4)."""
    wh = warehouse.get()
    now = int(time.time())
    n_subs = n_rows = 0
    with wh.begin() as db:
        for ws in list_workspaces(wh):
            rows = []
            for inp in load_history_inputs(wh, ws.id):
                rows += history_rows(build_history(inp, now))
                n_subs += 1
            _replace_workspace(wh, db, "core.subscription_history", ws.id, rows)
            n_rows += len(rows)
    return dg.MaterializeResult(metadata={"subscriptions": n_subs, "rows": n_rows})
