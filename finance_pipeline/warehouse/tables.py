"""What every table an asset writes looks like: columns (type, nullability, meaning) and key.

This is the one description of the tables the assets write. The Dagster column schemas and the
blocking schema checks are generated from it, and a test compares it with what the DDL in `sql/`
creates on SQLite and PostgreSQL, so the metadata and the DDL cannot drift apart. `schema_problems`
compares a live table with its description (no Dagster here: the warehouse layer is plain
SQLAlchemy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa

from finance_pipeline.warehouse.db import Warehouse

# DDL type -> family compared by the schema check (INTEGER and BIGINT are both whole numbers).
TYPE_FAMILIES = {
    "TEXT": "text",
    "BIGINT": "integer",
    "INTEGER": "integer",
    "BOOLEAN": "boolean",
    "DATE": "date",
    "JSONB": "json",
}


@dataclass(frozen=True)
class Column:
    """One column: DDL type (TEXT, BIGINT, INTEGER, BOOLEAN, DATE, JSONB) and business meaning."""

    name: str
    type: str
    description: str
    nullable: bool = True

    @property
    def family(self) -> str:
        """The type family the schema check compares (dialects spell types differently)."""
        return TYPE_FAMILIES[self.type]


@dataclass(frozen=True)
class Table:
    """One warehouse table an asset writes (layer-qualified name, as its asset key)."""

    name: str
    description: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    # What the materialization's `dagster/row_count` counts: the rows the run wrote in its
    # partition window, or every row of the table after the run.
    row_count: Literal["window", "table"] = "table"

    @property
    def column_names(self) -> tuple[str, ...]:
        """Column names in DDL order."""
        return tuple(c.name for c in self.columns)

    @property
    def row_count_description(self) -> str:
        """One sentence for the UI: what the row count of a materialization means."""
        if self.row_count == "window":
            return "`dagster/row_count`: rows written in the run's partition window."
        return "`dagster/row_count`: rows in the whole table after the run."


def _col(spec: str, description: str) -> Column:
    """A column from DDL-like text: `name TYPE` or `name TYPE NOT NULL`."""
    name, type_, *rest = spec.split()
    if type_ not in TYPE_FAMILIES or rest not in ([], ["NOT", "NULL"]):
        raise ValueError(f"bad column spec {spec!r}")
    return Column(name, type_, description, nullable=not rest)


WORKSPACE = _col("workspace_id TEXT NOT NULL", "Workspace (tenant) the row belongs to.")
DAY = _col("day DATE NOT NULL", "Local day in the workspace's time zone.")
MONTH = _col("month TEXT NOT NULL", "Month `YYYY-MM` in the workspace's time zone.")
REPORTING = "in micro-units of the reporting currency"


def _stripe(
    name: str, obj: str, description: str, fields: str, notes: dict[str, str] | None = None
) -> Table:
    """A raw Stripe table: the common identity columns, the extracted `fields` (comma-separated
    DDL-like specs, described as the Stripe field unless `notes` says more), payload, sync time."""
    notes = notes or {}
    extracted = []
    for spec in (s.strip() for s in fields.split(",")):
        col = spec.split()[0]
        extracted.append(_col(spec, notes.get(col, f"Stripe `{obj}.{col}`.")))
    return Table(
        name=f"raw.{name}",
        description=description,
        columns=(
            WORKSPACE,
            _col("id TEXT NOT NULL", f"Stripe {obj} id."),
            _col("account_id TEXT NOT NULL", "Stripe account the object was read from."),
            _col("livemode BOOLEAN NOT NULL", "True for live-mode objects, false for test mode."),
            *extracted,
            _col("payload JSONB NOT NULL", "The object exactly as Stripe returned it."),
            _col("synced_at BIGINT NOT NULL", "When the sync last wrote the row (Unix seconds)."),
        ),
        primary_key=("workspace_id", "id"),
    )


_MINOR = "in Stripe minor units of `currency`"

STRIPE_TABLES = (
    _stripe(
        "stripe_events",
        "event",
        "Stripe events, the change log incremental syncs and subscription history read.",
        "created BIGINT NOT NULL, type TEXT NOT NULL, object_type TEXT, object_id TEXT, "
        "api_version TEXT",
        {
            "object_type": "Type of the object the event is about (`data.object.object`).",
            "object_id": "Id of the object the event is about (`data.object.id`).",
        },
    ),
    _stripe(
        "stripe_customers",
        "customer",
        "Stripe customers.",
        "created BIGINT, email TEXT, name TEXT, currency TEXT, deleted BOOLEAN NOT NULL",
        {"deleted": "True once Stripe reports the customer deleted."},
    ),
    _stripe(
        "stripe_products",
        "product",
        "Stripe products (plans group their prices).",
        "created BIGINT, name TEXT, active BOOLEAN",
    ),
    _stripe(
        "stripe_prices",
        "price",
        "Stripe prices: amount, interval and billing scheme that MRR normalizes.",
        "created BIGINT, product TEXT, currency TEXT, type TEXT, unit_amount BIGINT, "
        "unit_amount_decimal TEXT, billing_scheme TEXT, tiers_mode TEXT, recurring_interval TEXT, "
        "recurring_interval_count INTEGER, usage_type TEXT, tax_behavior TEXT, active BOOLEAN",
        {
            "unit_amount": f"Unit amount {_MINOR}.",
            "unit_amount_decimal": "Unit amount as Stripe's exact decimal string (minor units).",
            "recurring_interval": "Stripe `price.recurring.interval` (day, week, month, year).",
            "recurring_interval_count": "Stripe `price.recurring.interval_count`.",
            "usage_type": "Stripe `price.recurring.usage_type` (licensed or metered).",
        },
    ),
    _stripe(
        "stripe_coupons",
        "coupon",
        "Stripe coupons that discounts on subscriptions refer to.",
        "created BIGINT, percent_off TEXT, amount_off BIGINT, currency TEXT, duration TEXT, "
        "duration_in_months INTEGER, valid BOOLEAN",
        {
            "percent_off": "Percent off as an exact decimal string.",
            "amount_off": f"Amount off {_MINOR}.",
        },
    ),
    _stripe(
        "stripe_subscriptions",
        "subscription",
        "Stripe subscriptions as last synced.",
        "created BIGINT, customer TEXT, status TEXT, currency TEXT, start_date BIGINT, "
        "trial_start BIGINT, trial_end BIGINT, cancel_at BIGINT, cancel_at_period_end BOOLEAN, "
        "canceled_at BIGINT, ended_at BIGINT, pause_behavior TEXT, items_count INTEGER",
        {
            "pause_behavior": "Stripe `subscription.pause_collection.behavior` (NULL: not paused).",
            "items_count": "Number of items Stripe reports (`items.total_count`).",
        },
    ),
    _stripe(
        "stripe_subscription_items",
        "subscription_item",
        "Every item of every subscription, including those beyond the 10 Stripe embeds.",
        "created BIGINT, subscription TEXT NOT NULL, price TEXT, quantity BIGINT, "
        "current_period_start BIGINT, current_period_end BIGINT",
        {"price": "Id of the item's Stripe price."},
    ),
    _stripe(
        "stripe_invoices",
        "invoice",
        "Stripe invoices with their totals (minor units).",
        "created BIGINT, customer TEXT, subscription TEXT, status TEXT, currency TEXT, "
        "billing_reason TEXT, subtotal BIGINT, total BIGINT, total_excluding_tax BIGINT, "
        "amount_due BIGINT, amount_paid BIGINT, amount_remaining BIGINT, period_start BIGINT, "
        "period_end BIGINT, paid_at BIGINT, lines_count INTEGER",
        {
            "total": f"Invoice total {_MINOR}, tax included.",
            "total_excluding_tax": f"Invoice total without tax {_MINOR}.",
            "paid_at": "Stripe `invoice.status_transitions.paid_at` (Unix seconds).",
            "lines_count": "Number of lines Stripe reports (`lines.total_count`).",
        },
    ),
    _stripe(
        "stripe_invoice_lines",
        "invoice line",
        "Every line of every invoice, including those beyond the 10 Stripe embeds.",
        "invoice TEXT NOT NULL, subscription TEXT, subscription_item TEXT, price TEXT, "
        "quantity BIGINT, amount BIGINT, currency TEXT, period_start BIGINT, period_end BIGINT, "
        "proration BOOLEAN, parent_type TEXT",
        {
            "invoice": "Id of the invoice the line belongs to.",
            "amount": f"Line amount {_MINOR}, before discounts.",
            "period_start": "Start of the line's service period (Unix seconds).",
            "period_end": "End of the line's service period (Unix seconds).",
        },
    ),
    _stripe(
        "stripe_invoice_payments",
        "invoice_payment",
        "Stripe invoice payments: which charge paid which invoice.",
        "created BIGINT, invoice TEXT, charge TEXT, payment_intent TEXT, amount_paid BIGINT, "
        "amount_requested BIGINT, currency TEXT, status TEXT, is_default BOOLEAN, paid_at BIGINT",
        {"charge": "Id of the charge that paid the invoice (Stripe `payment.charge`)."},
    ),
    _stripe(
        "stripe_charges",
        "charge",
        "Stripe charges: the cash that core.ledger books as gross revenue.",
        "created BIGINT, customer TEXT, amount BIGINT, amount_captured BIGINT, "
        "amount_refunded BIGINT, currency TEXT, status TEXT, paid BOOLEAN, refunded BOOLEAN, "
        "balance_transaction TEXT, payment_intent TEXT, failure_code TEXT",
        {"amount": f"Charge amount {_MINOR}, tax included."},
    ),
    _stripe(
        "stripe_refunds",
        "refund",
        "Stripe refunds, booked on their own day in core.ledger.",
        "created BIGINT, charge TEXT, amount BIGINT, currency TEXT, status TEXT, reason TEXT, "
        "balance_transaction TEXT",
        {"amount": f"Refunded amount {_MINOR}, tax included."},
    ),
    _stripe(
        "stripe_credit_notes",
        "credit_note",
        "Stripe credit notes (post-payment ones adjust recognized revenue).",
        "created BIGINT, invoice TEXT, customer TEXT, type TEXT, status TEXT, currency TEXT, "
        "amount BIGINT, total BIGINT, total_excluding_tax BIGINT, refund_amount BIGINT, "
        "pre_payment_amount BIGINT, post_payment_amount BIGINT, effective_at BIGINT, "
        "lines_count INTEGER",
        {"lines_count": "Number of lines Stripe reports (`lines.total_count`)."},
    ),
    _stripe(
        "stripe_credit_note_lines",
        "credit_note_line",
        "Every line of every credit note.",
        "credit_note TEXT NOT NULL, invoice_line_item TEXT, type TEXT, amount BIGINT, "
        "quantity BIGINT",
        {"credit_note": "Id of the credit note the line belongs to."},
    ),
    _stripe(
        "stripe_balance_transactions",
        "balance_transaction",
        "Stripe balance transactions: the fees core.ledger books as expenses.",
        "created BIGINT, source TEXT, type TEXT, reporting_category TEXT, amount BIGINT, "
        "fee BIGINT, net BIGINT, currency TEXT, available_on BIGINT",
        {"fee": f"Stripe fees {_MINOR}."},
    ),
)

_INGESTED = (
    _col("source TEXT NOT NULL", "Where the row came from (API, CSV landing file, ...)."),
    _col("ingested_at BIGINT NOT NULL", "When the row was ingested (Unix seconds)."),
)
_EXTERNAL = _col("external_id TEXT NOT NULL", "Caller's id of the row; re-ingesting it is a no-op.")

LANDING_TABLES = (
    Table(
        "raw.cost_records",
        "Cost records (products API shape) by category, some tagged to a customer.",
        (
            WORKSPACE,
            _EXTERNAL,
            _col("name TEXT NOT NULL", "What the cost is for."),
            _col("amount_micros BIGINT NOT NULL", "Cost in micro-units of `currency`."),
            _col("currency TEXT NOT NULL", "ISO currency of the amount (lower case)."),
            _col("category TEXT NOT NULL", "Cost category."),
            _col("is_recurring BOOLEAN NOT NULL", "True for a recurring cost (counts in burn)."),
            _col("note TEXT", "Free-text note."),
            _col("date DATE NOT NULL", "Day the cost was incurred."),
            _col("customer_tag TEXT", "Tag attributing the cost to a customer (margins)."),
            *_INGESTED,
        ),
        ("workspace_id", "external_id"),
    ),
    Table(
        "raw.expense_events",
        "Expense events: recurring (runway) and one-time (burn only).",
        (
            WORKSPACE,
            _EXTERNAL,
            _col("subtype TEXT NOT NULL", "recurring_expense or one_time_expense."),
            _col("amount_micros BIGINT NOT NULL", "Expense in micro-units of `currency`."),
            _col("currency TEXT NOT NULL", "ISO currency of the amount (lower case)."),
            _col("occurred_on DATE NOT NULL", "Day the expense occurred."),
            _col("vendor TEXT", "Who was paid."),
            *_INGESTED,
        ),
        ("workspace_id", "external_id"),
    ),
    Table(
        "raw.usage_costs",
        "Per-customer usage costs (model, cost, request count) for margins.",
        (
            WORKSPACE,
            _EXTERNAL,
            _col("customer_tag TEXT NOT NULL", "Tag of the customer the usage belongs to."),
            _col("model TEXT NOT NULL", "Model or service that incurred the cost."),
            _col("cost_micros BIGINT NOT NULL", "Cost in micro-units of `currency`."),
            _col("currency TEXT NOT NULL", "ISO currency of the cost (lower case)."),
            _col("request_count BIGINT NOT NULL", "Requests the cost covers."),
            _col("occurred_on DATE NOT NULL", "Day of the usage."),
            _col("occurred_at BIGINT", "Instant of the usage when known (Unix seconds)."),
            *_INGESTED,
        ),
        ("workspace_id", "external_id"),
    ),
    Table(
        "raw.manual_revenue",
        "Manual revenue; type `subscription` counts in MRR, refunds are negative.",
        (
            WORKSPACE,
            _EXTERNAL,
            _col("type TEXT NOT NULL", "Revenue type in products API's vocabulary."),
            _col("subtype TEXT NOT NULL", "Revenue subtype in v1 API's vocabulary."),
            _col("amount_micros BIGINT NOT NULL", "Signed amount in micro-units of `currency`."),
            _col("currency TEXT NOT NULL", "ISO currency of the amount (lower case)."),
            _col("date DATE NOT NULL", "Day the revenue was earned."),
            _col("customer_id TEXT", "Customer the revenue belongs to, when known."),
            _col("source TEXT", "Where the revenue came from, as the caller said."),
            _col("note TEXT", "Free-text note."),
            _col("ingested_via TEXT NOT NULL", "Ingestion path: API or CSV landing file."),
            _col("ingested_at BIGINT NOT NULL", "When the row was ingested (Unix seconds)."),
        ),
        ("workspace_id", "external_id"),
    ),
    Table(
        "raw.fx_rates",
        "Daily FX rates to each reporting currency, kept as exact decimals.",
        (
            _col("base TEXT NOT NULL", "Reporting currency the rate converts into."),
            _col("currency TEXT NOT NULL", "Currency converted from."),
            _col("date DATE NOT NULL", "Day the rate applies to."),
            _col("rate TEXT NOT NULL", "1 unit of `currency` = rate units of `base` (decimal)."),
            *_INGESTED,
        ),
        ("base", "currency", "date"),
    ),
)

_EXACT = "Exact value as a `num/den` fraction of micro-units (rounded beside it)."

CORE_TABLES = (
    Table(
        "core.fx_rates",
        "Daily FX rates (1 unit of currency = rate units of the reporting currency), exact.",
        (
            _col("base TEXT NOT NULL", "Reporting currency the rate converts into."),
            _col("currency TEXT NOT NULL", "Currency converted from."),
            _col("date DATE NOT NULL", "Day the rate applies to."),
            _col("rate TEXT NOT NULL", "1 unit of `currency` = rate units of `base` (decimal)."),
            _col("ingested_at BIGINT", "When the rate reached raw (Unix seconds)."),
        ),
        ("base", "currency", "date"),
    ),
    Table(
        "core.ledger",
        "One row per money movement (docs/metrics.md §7), native and reporting currency.",
        (
            WORKSPACE,
            _col("entry_id TEXT NOT NULL", "Deterministic id from the source table and id."),
            _col("day DATE NOT NULL", "Local day of the movement (workspace time zone)."),
            _col("occurred_at BIGINT", "Instant of the movement when known (Unix seconds)."),
            _col("kind TEXT NOT NULL", "gross_revenue, manual_revenue, refund, fee or expense."),
            _col("subtype TEXT", "Finer kind (recurring_expense, one_time_expense, ...)."),
            _col("category TEXT", "Cost category of an expense."),
            _col("customer_id TEXT", "Customer the movement belongs to, when known."),
            _col("amount_micros BIGINT NOT NULL", "Signed amount in micro-units of `currency`."),
            _col("currency TEXT NOT NULL", "Native currency of the movement."),
            _col("amount_reporting_micros BIGINT", f"Signed amount {REPORTING}; NULL: no rate."),
            _col("reporting_currency TEXT NOT NULL", "The workspace's reporting currency."),
            _col("fx_rate TEXT", "Rate used for the conversion (exact decimal)."),
            _col("source_table TEXT NOT NULL", "Raw table the movement comes from."),
            _col("source_id TEXT NOT NULL", "Id of the source row."),
            _col("description TEXT", "Human-readable description."),
        ),
        ("workspace_id", "entry_id"),
    ),
    Table(
        "core.subscription_history",
        "Each subscription item's state over half-open intervals [valid_from, valid_to) (§4).",
        (
            WORKSPACE,
            _col("subscription_id TEXT NOT NULL", "Stripe subscription id."),
            _col("valid_from BIGINT NOT NULL", "Start of the interval (Unix seconds)."),
            _col(
                "item_id TEXT NOT NULL", "Subscription item id; '' for an interval without items."
            ),
            _col("valid_to BIGINT", "End of the interval (Unix seconds); NULL: still current."),
            _col("customer_id TEXT NOT NULL", "Stripe customer id."),
            _col("currency TEXT NOT NULL", "Subscription currency."),
            _col("status TEXT NOT NULL", "Subscription status during the interval."),
            _col("price_id TEXT", "Stripe price of the item."),
            _col("product_id TEXT", "Stripe product of the price."),
            _col("quantity BIGINT", "Item quantity."),
            _col("trial_end BIGINT", "End of the trial (Unix seconds)."),
            _col("pause_collection BOOLEAN NOT NULL", "True while collection is paused."),
            _col("cancel_scheduled BOOLEAN NOT NULL", "True while a cancellation is scheduled."),
            _col("past_due_since BIGINT", "Since when the subscription is past due."),
            _col("started_at BIGINT", "Subscription start (Unix seconds)."),
            _col("ended_at BIGINT", "Subscription end (Unix seconds)."),
            _col("cancellation_reason TEXT", "Why the subscription was canceled."),
            _col("price_json JSONB", "The price as Stripe described it during the interval."),
            _col("discounts_json JSONB NOT NULL", "Discounts in force during the interval."),
        ),
        ("workspace_id", "subscription_id", "valid_from", "item_id"),
    ),
    Table(
        "core.recognized_revenue_monthly",
        "Recognized revenue per customer, month and native currency (docs/metrics.md §8).",
        (
            WORKSPACE,
            _col("customer_id TEXT NOT NULL", "Stripe customer id."),
            MONTH,
            _col("currency TEXT NOT NULL", "Native currency."),
            _col(
                "amount_micros BIGINT NOT NULL", "Recognized revenue in micro-units of `currency`."
            ),
            _col(
                "amount_reporting_micros BIGINT", f"Recognized revenue {REPORTING}; NULL: no rate."
            ),
            _col("reporting_currency TEXT NOT NULL", "The workspace's reporting currency."),
            _col("skipped_lines INTEGER NOT NULL", "Contributing lines without an FX rate."),
        ),
        ("workspace_id", "customer_id", "month", "currency"),
    ),
)

MRR_TABLES = (
    Table(
        "mart.mrr_changes",
        "Per-customer MRR change rows (native currency).",
        (
            WORKSPACE,
            _col("customer_id TEXT NOT NULL", "Stripe customer id."),
            _col("currency TEXT NOT NULL", "Native currency of the customer's subscriptions."),
            DAY,
            _col("mrr_micros BIGINT NOT NULL", "End-of-day MRR in micro-units of `currency`."),
            _col("cmrr_micros BIGINT NOT NULL", "End-of-day committed MRR (micro-units)."),
            _col("active_subscriptions INTEGER NOT NULL", "Subscriptions counted in MRR."),
            _col("mrr_exact TEXT NOT NULL", _EXACT),
            _col("cmrr_exact TEXT NOT NULL", _EXACT),
            _col("by_plan_json JSONB NOT NULL", "MRR per plan (price) of the customer."),
            _col("churn_reason TEXT", "Why the customer churned, on a churn day."),
        ),
        ("workspace_id", "customer_id", "currency", "day"),
        row_count="window",
    ),
    Table(
        "mart.mrr_movements",
        "Daily MRR movements per customer in the reporting currency (§5).",
        (
            WORKSPACE,
            _col("customer_id TEXT NOT NULL", "Stripe customer id."),
            DAY,
            _col("kind TEXT NOT NULL", "new, expansion, reactivation, contraction or churn."),
            _col("amount_micros BIGINT NOT NULL", f"Movement {REPORTING}."),
            _col("amount_exact TEXT NOT NULL", _EXACT),
            _col("reason TEXT", "Churn reason (delinquent or voluntary) where it applies."),
        ),
        ("workspace_id", "customer_id", "day", "kind"),
        row_count="window",
    ),
    Table(
        "mart.mrr_daily",
        "Daily workspace MRR, ARR, counts and movements; the roll-forward identity holds.",
        (
            WORKSPACE,
            DAY,
            _col("currency TEXT NOT NULL", "Reporting currency."),
            _col("mrr_micros BIGINT NOT NULL", f"End-of-day MRR {REPORTING}."),
            _col("cmrr_micros BIGINT NOT NULL", f"End-of-day committed MRR {REPORTING}."),
            _col("arr_micros BIGINT NOT NULL", f"ARR (12 x MRR) {REPORTING}."),
            _col("active_subscriptions INTEGER NOT NULL", "Subscriptions counted in MRR."),
            _col("paying_customers INTEGER NOT NULL", "Customers with MRR above zero."),
            _col("new_micros BIGINT NOT NULL", "New MRR of the day."),
            _col("expansion_micros BIGINT NOT NULL", "Expansion MRR of the day."),
            _col("reactivation_micros BIGINT NOT NULL", "Reactivation MRR of the day."),
            _col("contraction_micros BIGINT NOT NULL", "Contraction MRR of the day."),
            _col("churn_micros BIGINT NOT NULL", "Churned MRR of the day."),
            _col("fx_micros BIGINT NOT NULL", "MRR change from FX rate moves."),
            _col("new_customers INTEGER NOT NULL", "Customers new that day."),
            _col("reactivated_customers INTEGER NOT NULL", "Customers reactivated that day."),
            _col("churned_customers INTEGER NOT NULL", "Customers churned that day."),
            _col("delinquent_churned_customers INTEGER NOT NULL", "Churned for non-payment."),
            _col("skipped_currencies_json JSONB NOT NULL", "Currencies left out for lack of FX."),
            _col("exact_json JSONB NOT NULL", "Exact values of every money column."),
            _col("fx_by_currency_json JSONB NOT NULL", "FX movement per native currency."),
        ),
        ("workspace_id", "day"),
        row_count="window",
    ),
    Table(
        "mart.mrr_plan_daily",
        "Daily MRR and subscriptions per plan (price).",
        (
            WORKSPACE,
            DAY,
            _col("plan_id TEXT NOT NULL", "Stripe price id."),
            _col("currency TEXT NOT NULL", "Reporting currency."),
            _col("mrr_micros BIGINT NOT NULL", f"End-of-day MRR of the plan {REPORTING}."),
            _col("subscriptions INTEGER NOT NULL", "Subscriptions on the plan."),
            _col("mrr_exact TEXT NOT NULL", _EXACT),
        ),
        ("workspace_id", "day", "plan_id"),
        row_count="window",
    ),
    Table(
        "mart.subscription_counting",
        "Days a subscription starts or stops counting as active (§3), for 30-day churn (§6).",
        (
            WORKSPACE,
            _col("subscription_id TEXT NOT NULL", "Stripe subscription id."),
            _col("customer_id TEXT NOT NULL", "Stripe customer id."),
            DAY,
            _col(
                "counts BOOLEAN NOT NULL",
                "True: counts from this day on; false: stops counting on this day.",
            ),
        ),
        ("workspace_id", "subscription_id", "day"),
        row_count="window",
    ),
)

_CENTS_30D = "in cents of the reporting currency over the 30 days ending `day`"

CFO_TABLES = (
    Table(
        "mart.cfo_metrics_daily",
        "v1 API CFO metrics per workspace and local day over the rolling 30 days (§9).",
        (
            WORKSPACE,
            DAY,
            _col("currency TEXT NOT NULL", "Reporting currency."),
            _col("gross_revenue_cents_30d BIGINT NOT NULL", f"Gross revenue {_CENTS_30D}."),
            _col("refunds_cents_30d BIGINT NOT NULL", f"Refunds (negative) {_CENTS_30D}."),
            _col("net_revenue_cents_30d BIGINT NOT NULL", f"Gross + refunds {_CENTS_30D}."),
            _col("mrr_cents BIGINT NOT NULL", "End-of-day MRR in cents."),
            _col("arr_cents BIGINT NOT NULL", "End-of-day ARR in cents."),
            _col("burn_cents_30d BIGINT NOT NULL", f"Burn {_CENTS_30D}."),
            _col("recurring_burn_cents_30d BIGINT NOT NULL", f"Recurring burn {_CENTS_30D}."),
            _col("one_time_expenses_cents_30d BIGINT NOT NULL", f"One-time costs {_CENTS_30D}."),
            _col("cash_on_hand_cents BIGINT", "Cash on hand in cents; NULL when not set."),
            _col("runway_months TEXT", "Runway in months (2-place decimal); NULL: no burn/cash."),
            _col("runway_days TEXT", "Runway in days (2-place decimal); NULL: no burn/cash."),
            _col("total_expenses_cents_30d BIGINT NOT NULL", f"All expenses {_CENTS_30D}."),
            _col("recurring_expenses_cents_30d BIGINT NOT NULL", f"Recurring costs {_CENTS_30D}."),
            _col("warnings_json JSONB NOT NULL", "Data-quality warnings of the day."),
            _col("skipped_currencies_json JSONB NOT NULL", "Currencies left out for lack of FX."),
        ),
        ("workspace_id", "day"),
        row_count="window",
    ),
    Table(
        "mart.revenue_daily",
        "Ledger totals per workspace and local day, zeros included (§10).",
        (
            WORKSPACE,
            DAY,
            _col("currency TEXT NOT NULL", "Reporting currency."),
            _col("gross_revenue_micros BIGINT NOT NULL", "Stripe gross + manual revenue."),
            _col("manual_revenue_micros BIGINT NOT NULL", "Manual revenue part of the gross."),
            _col("refunds_micros BIGINT NOT NULL", "Refunds (negative)."),
            _col("expenses_micros BIGINT NOT NULL", "Expenses, fees included."),
            _col("fees_micros BIGINT NOT NULL", "Stripe fees part of the expenses."),
            _col("one_time_expenses_micros BIGINT NOT NULL", "One-time expenses."),
            _col("net_micros BIGINT NOT NULL", "gross revenue - expenses."),
            _col("net_revenue_micros BIGINT NOT NULL", "gross revenue + refunds."),
            _col("skipped_currencies_json JSONB NOT NULL", "Entries left out for lack of FX."),
        ),
        ("workspace_id", "day"),
        row_count="window",
    ),
    Table(
        "mart.alerts",
        "Alerts active on a day (§14); a day's set is replaced on every evaluation.",
        (
            WORKSPACE,
            DAY,
            _col("alert_id TEXT NOT NULL", "Deterministic id from workspace, day, type, subject."),
            _col("type TEXT NOT NULL", "Alert rule."),
            _col("severity TEXT NOT NULL", "Alert severity."),
            _col("subject TEXT NOT NULL", "What the alert is about (customer, metric, ...)."),
            _col("message TEXT NOT NULL", "Human-readable message."),
            _col("payload_json JSONB NOT NULL", "The alert's numbers."),
            _col("created_at BIGINT NOT NULL", "When the alert was evaluated (Unix seconds)."),
            _col("episode_id TEXT", "The episode this day belongs to (NULL for rows before them)."),
            _col("opens_episode BOOLEAN NOT NULL", "True on the day that opened the episode."),
        ),
        ("workspace_id", "day", "alert_id"),
        row_count="window",
    ),
    Table(
        "mart.advisory_memos",
        "One v1 API advisory memo per workspace and local day.",
        (
            WORKSPACE,
            DAY,
            _col("summary TEXT NOT NULL", "The memo's summary."),
            _col("suggestions_json JSONB NOT NULL", "Suggestions."),
            _col("risks_json JSONB NOT NULL", "Risks."),
            _col("provider TEXT NOT NULL", "AI provider, or 'fallback' for the rule-based writer."),
            _col("model TEXT", "AI model; NULL for the fallback."),
            _col("ai_available BOOLEAN NOT NULL", "True when the AI wrote the memo."),
            _col("ai_error_json JSONB", "Why the AI was not used."),
            _col("inputs_json JSONB NOT NULL", "The grounding: that day's metrics and alerts."),
            _col("created_at BIGINT NOT NULL", "When the memo was written (Unix seconds)."),
        ),
        ("workspace_id", "day"),
        row_count="window",
    ),
)

MONTHLY_TABLES = (
    Table(
        "mart.customer_margins_monthly",
        "Customer margins per month (§11, margins API).",
        (
            WORKSPACE,
            MONTH,
            _col("customer_key TEXT NOT NULL", "Stripe customer id or unmatched cost tag."),
            _col("stripe_customer_id TEXT NOT NULL", "Stripe customer id ('' when unmatched)."),
            _col("customer_name TEXT", "Customer name."),
            _col("tag_value TEXT", "Cost tag mapped to the customer."),
            _col("revenue_micros BIGINT NOT NULL", f"Recognized revenue {REPORTING}."),
            _col("cost_micros BIGINT NOT NULL", f"Attributed cost {REPORTING}."),
            _col("margin_micros BIGINT NOT NULL", "Revenue - cost."),
            _col("margin_percent TEXT", "Margin percent (exact decimal); NULL: no revenue."),
            _col("health_tier TEXT NOT NULL", "Margin health tier."),
            _col("projected_margin_percent TEXT", "Projected margin percent (exact decimal)."),
            _col("projected_tier_worsening BOOLEAN NOT NULL", "True if the tier will worsen."),
            _col("budget_suggestion_micros BIGINT", "Suggested cost budget."),
            _col("sort_order INTEGER NOT NULL", "Position in the margins API list."),
            _col("sparkline_json JSONB NOT NULL", "Monthly margins with the projection."),
            _col("row_json JSONB NOT NULL", "The margins API `customers[]` item as served."),
        ),
        ("workspace_id", "month", "customer_key"),
        row_count="window",
    ),
    Table(
        "mart.forecasts",
        "Saved forecasts; the pipeline keeps one default per workspace and month-end.",
        (
            _col("id TEXT NOT NULL", "Forecast id (deterministic for the defaults)."),
            WORKSPACE,
            _col("name TEXT", "Forecast name."),
            _col("as_of DATE NOT NULL", "Day the forecast starts from."),
            _col("horizon_months INTEGER NOT NULL", "Months forecast."),
            _col("request_json JSONB NOT NULL", "The forecast request."),
            _col("response_json JSONB NOT NULL", "The v1 API forecast response."),
            _col("created_at BIGINT NOT NULL", "When it was computed (Unix seconds)."),
            _col("is_default BOOLEAN NOT NULL", "True for the pipeline's default forecast."),
        ),
        ("id",),
        row_count="window",
    ),
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        *STRIPE_TABLES,
        *LANDING_TABLES,
        *CORE_TABLES,
        *MRR_TABLES,
        *CFO_TABLES,
        *MONTHLY_TABLES,
    )
}


# Tables an asset writes beside the one its key mirrors (state, summaries, derived episodes): their
# schema is checked by that asset's schema check, and they are described here like the others.
_BUILD_STATE = Table(
    "core.build_state",
    "Per workspace and core asset: the source watermarks of its last build (incremental core).",
    (
        WORKSPACE,
        _col("asset TEXT NOT NULL", "The core asset (`ledger`, `subscription_history`)."),
        _col("watermark BIGINT", "Latest synced_at the build consumed (Unix seconds)."),
        _col("built_at BIGINT NOT NULL", "When the build ran (Unix seconds)."),
        _col("mode TEXT NOT NULL", "`full` or `incremental`."),
        _col("settings_hash TEXT NOT NULL", "Hash of the switches the build used."),
        _col("watermarks_json JSONB NOT NULL", "Watermark per source table."),
    ),
    ("workspace_id", "asset"),
)
COMPANIONS: dict[str, tuple[Table, ...]] = {
    "core.ledger": (_BUILD_STATE,),
    "core.subscription_history": (
        _BUILD_STATE,
        Table(
            "core.subscription_history_due",
            "Subscriptions whose history depends on the build time: rebuilt by any later run.",
            (
                WORKSPACE,
                _col("subscription_id TEXT NOT NULL", "Stripe subscription id."),
                _col("due_at BIGINT NOT NULL", "From when a rebuild is due (Unix seconds)."),
            ),
            ("workspace_id", "subscription_id"),
        ),
    ),
    "mart.alerts": (
        Table(
            "mart.alert_episodes",
            "Alert episodes (§14): consecutive evaluated days of one alert, opened to resolved.",
            (
                WORKSPACE,
                _col(
                    "episode_id TEXT NOT NULL",
                    "Deterministic id from workspace, type, subject, opened_on.",
                ),
                _col("type TEXT NOT NULL", "Alert rule."),
                _col("subject TEXT NOT NULL", "Customer for margin alerts, '' otherwise."),
                _col("opened_on DATE NOT NULL", "First active day."),
                _col("last_active_on DATE NOT NULL", "Latest active day."),
                _col("resolved_on DATE", "First evaluated day without the alert; NULL while open."),
                _col("status TEXT NOT NULL", "`opened`, `active` or `resolved`."),
                _col("peak_severity TEXT NOT NULL", "Worst severity of the episode."),
                _col("severity TEXT NOT NULL", "Severity on the latest active day."),
                _col("first_severity TEXT NOT NULL", "Severity on the opening day."),
                _col("first_alert_id TEXT NOT NULL", "Daily alert that opened the episode."),
                _col("last_alert_id TEXT NOT NULL", "Latest daily alert of the episode."),
                _col("first_message TEXT NOT NULL", "Message on the opening day."),
                _col("last_message TEXT NOT NULL", "Message on the latest active day."),
                _col("first_payload_json JSONB NOT NULL", "Numbers on the opening day."),
                _col("last_payload_json JSONB NOT NULL", "Numbers on the latest active day."),
            ),
            ("workspace_id", "episode_id"),
        ),
        Table(
            "mart.alert_evaluated_days",
            "Local days whose alerts were evaluated: only such a day can resolve an episode.",
            (WORKSPACE, DAY),
            ("workspace_id", "day"),
        ),
    ),
    "mart.customer_margins_monthly": (
        Table(
            "mart.customer_margins_summary_monthly",
            "Per workspace and month: the margins API `summary` and unmatched report (§11).",
            (
                WORKSPACE,
                MONTH,
                _col("revenue_micros BIGINT NOT NULL", f"Recognized revenue {REPORTING}."),
                _col("cost_micros BIGINT NOT NULL", f"Attributed cost {REPORTING}."),
                _col(
                    "blended_margin_percent TEXT",
                    "Blended margin % (2 decimals); NULL without revenue.",
                ),
                _col("critical_count INTEGER NOT NULL", "Customers in the critical tier."),
                _col("at_risk_count INTEGER NOT NULL", "Customers in the at-risk tier."),
                _col(
                    "untagged_cost_micros BIGINT NOT NULL",
                    f"Costs with no customer tag {REPORTING}.",
                ),
                _col(
                    "unmapped_cost_micros BIGINT NOT NULL",
                    f"Costs whose tag maps to no customer {REPORTING}.",
                ),
                _col("summary_json JSONB NOT NULL", "The margins API `summary` object."),
                _col("unmatched_json JSONB NOT NULL", "Unmatched customers and unmapped tags."),
                _col("computed_at BIGINT NOT NULL", "When the month was computed (Unix seconds)."),
                _col(
                    "write_id TEXT",
                    "New on every write of the month's margins (the API's cache key); NULL on "
                    "rows written before it existed.",
                ),
            ),
            ("workspace_id", "month"),
        ),
    ),
}


# App tables no asset writes (requests from the API and CLI): described here too, so their DDL is
# checked against the same metadata (finance_pipeline_tests/test_tables.py); no schema check.
APP_TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "app.pipeline_requests",
            "Refresh and Stripe sync requests the pipeline picks up (docs/requests.md).",
            (
                _col("id TEXT NOT NULL", "Request id (`refresh_...`, `sync_...`)."),
                _col("kind TEXT NOT NULL", "`refresh` or `stripe_sync`."),
                WORKSPACE,
                _col("first_day DATE", "First local day to refresh (refresh only)."),
                _col("last_day DATE", "Last local day to refresh, inclusive (refresh only)."),
                _col("reason TEXT NOT NULL", "Why it was requested (and any clamp of last_day)."),
                _col("requested_by TEXT", "Who asked (user, API key, `cli`)."),
                _col("status TEXT NOT NULL", "`queued`, `running`, `succeeded` or `failed`."),
                _col("run_id TEXT", "Dagster run serving the request, once it exists."),
                _col("error TEXT", "Why it failed."),
                _col("created_at BIGINT NOT NULL", "When it was requested (Unix seconds)."),
                _col("started_at BIGINT", "When a runner claimed it (Unix seconds)."),
                _col("finished_at BIGINT", "When it succeeded or failed (Unix seconds)."),
                _col("updated_at BIGINT NOT NULL", "Last change (Unix seconds)."),
                _col(
                    "result_json JSONB",
                    "What a succeeded Stripe sync did: the revenue-sync counters and the v1 "
                    "ingest's inserted/duplicates (docs/requests.md).",
                ),
                _col(
                    "stripe_objects_at_claim BIGINT",
                    "A Stripe sync's stored invoices, charges, refunds and subscriptions when "
                    "claimed (what `inserted` is measured from).",
                ),
            ),
            ("id",),
        ),
        Table(
            "app.stripe_webhook_events",
            "Stripe events delivered by webhook, one per event id (docs/api.md).",
            (
                WORKSPACE,
                _col("event_id TEXT NOT NULL", "Stripe event id (`evt_...`)."),
                _col("type TEXT NOT NULL", "Stripe event type (`invoice.paid`)."),
                _col("created BIGINT NOT NULL", "When Stripe created the event (Unix seconds)."),
                _col("received_at BIGINT NOT NULL", "When the webhook arrived (Unix seconds)."),
                _col("request_id TEXT", "The Stripe sync request it asked for (`sync_...`)."),
            ),
            ("workspace_id", "event_id"),
        ),
    )
}


def table_for(qualified: str) -> Table:
    """The description of `layer.table`."""
    try:
        return TABLES[qualified]
    except KeyError:
        raise KeyError(
            f"no table metadata for {qualified}: describe it in warehouse/tables.py"
        ) from None


def _family(type_: sa.types.TypeEngine) -> str:
    """The type family of a reflected column type."""
    if isinstance(type_, sa.JSON):
        return "json"
    if isinstance(type_, sa.Boolean):
        return "boolean"
    if isinstance(type_, sa.Integer):
        return "integer"
    if isinstance(type_, sa.Date) and not isinstance(type_, sa.DateTime):
        return "date"
    if isinstance(type_, sa.String):
        return "text"
    return type(type_).__name__.lower()


@dataclass(frozen=True)
class LiveColumn:
    """A column as the database reports it."""

    name: str
    family: str
    nullable: bool


def live_columns(wh: Warehouse, qualified: str) -> tuple[list[LiveColumn], list[str]] | None:
    """The table's columns and primary key as the database has them (None: no such table)."""
    layer, _, name = qualified.partition(".")
    insp = sa.inspect(wh.engine)
    physical, schema = (wh.name(qualified), None) if wh.is_sqlite else (name, layer)
    if not insp.has_table(physical, schema=schema):
        return None
    pk = list(insp.get_pk_constraint(physical, schema=schema)["constrained_columns"] or [])
    cols = [
        # SQLite lets a non-integer PRIMARY KEY column hold NULL unless it says NOT NULL;
        # PostgreSQL never does. Key columns count as NOT NULL on both.
        LiveColumn(c["name"], _family(c["type"]), bool(c["nullable"]) and c["name"] not in pk)
        for c in insp.get_columns(physical, schema=schema)
    ]
    return cols, pk


def schema_problems(wh: Warehouse, table: Table) -> list[str]:
    """How the live table differs from its description: missing or extra columns, type family,
    nullability, primary key. Empty when they agree."""
    live = live_columns(wh, table.name)
    if live is None:
        return [f"{table.name} does not exist"]
    cols, pk = live
    have = {c.name: c for c in cols}
    want = {c.name: c for c in table.columns}
    problems = [f"missing column {n}" for n in want if n not in have]
    problems += [f"unexpected column {n}" for n in have if n not in want]
    for name, col in want.items():
        got = have.get(name)
        if got is None:
            continue
        # JSON documents are TEXT on SQLite (the migrator maps JSONB to TEXT there).
        expected = "text" if col.family == "json" and wh.is_sqlite else col.family
        if got.family != expected:
            problems.append(f"{name}: type family {got.family}, expected {expected}")
        if got.nullable != col.nullable:
            problems.append(
                f"{name}: {'nullable' if got.nullable else 'NOT NULL'}, expected "
                f"{'nullable' if col.nullable else 'NOT NULL'}"
            )
    if tuple(pk) != table.primary_key:
        problems.append(f"primary key ({', '.join(pk)}), expected ({', '.join(table.primary_key)})")
    return problems
