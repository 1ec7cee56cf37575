"""What the pipeline reads from Stripe: one stream per object type, and how each is kept fresh."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SubList:
    """An embedded list Stripe truncates at 10 items, with the endpoint that pages the rest."""

    key: str  # field on the parent object ("lines", "items")
    resource: str  # gateway resource that lists it
    table: str  # raw table for its rows
    object_type: str  # the child's Stripe `object` value
    parent_column: str  # column on the child row naming the parent
    by_param: str | None = None  # list filter instead of a path parameter (subscription_items)


@dataclass(frozen=True)
class Stream:
    """A Stripe list endpoint synced into one raw table."""

    name: str
    object_type: str
    table: str
    resource: str
    mutable: bool
    list_params: dict[str, Any] = field(default_factory=dict)
    # Expansions on retrieve (the list ones carry a `data.` prefix in list_params).
    retrieve_params: dict[str, Any] = field(default_factory=dict)
    sublists: tuple[SubList, ...] = ()
    # Statuses that are not final: such objects are re-fetched on every sync until they settle.
    refresh_statuses: tuple[str, ...] = ()
    description: str = ""


INVOICE_LINES = SubList(
    "lines", "invoice_lines", "raw.stripe_invoice_lines", "line_item", "invoice"
)
SUBSCRIPTION_ITEMS = SubList(
    "items",
    "subscription_items",
    "raw.stripe_subscription_items",
    "subscription_item",
    "subscription",
    by_param="subscription",
)
CREDIT_NOTE_LINES = SubList(
    "lines",
    "credit_note_lines",
    "raw.stripe_credit_note_lines",
    "credit_note_line_item",
    "credit_note",
)

STREAMS: dict[str, Stream] = {
    s.name: s
    for s in [
        Stream(
            "events",
            "event",
            "raw.stripe_events",
            "events",
            mutable=False,
            description="Stripe events (30-day retention): which mutable objects changed.",
        ),
        Stream(
            "customers",
            "customer",
            "raw.stripe_customers",
            "customers",
            mutable=True,
            description="Stripe customers.",
        ),
        Stream(
            "products",
            "product",
            "raw.stripe_products",
            "products",
            mutable=True,
            description="Stripe products (plan families).",
        ),
        Stream(
            "prices",
            "price",
            "raw.stripe_prices",
            "prices",
            mutable=True,
            description="Stripe prices: amounts, tiers and billing intervals.",
        ),
        Stream(
            "coupons",
            "coupon",
            "raw.stripe_coupons",
            "coupons",
            mutable=True,
            description="Stripe coupons referenced by subscription discounts.",
        ),
        Stream(
            "subscriptions",
            "subscription",
            "raw.stripe_subscriptions",
            "subscriptions",
            mutable=True,
            # Discount objects (coupon, start, end) are needed for MRR history; Stripe returns ids.
            list_params={"status": "all", "expand": ["data.discounts"]},
            retrieve_params={"expand": ["discounts"]},
            sublists=(SUBSCRIPTION_ITEMS,),
            refresh_statuses=("incomplete", "trialing", "past_due"),
            description="Stripe subscriptions of every status, with all their items.",
        ),
        Stream(
            "invoices",
            "invoice",
            "raw.stripe_invoices",
            "invoices",
            mutable=True,
            sublists=(INVOICE_LINES,),
            refresh_statuses=("draft", "open"),
            list_params={"expand": ["data.discounts"]},
            retrieve_params={"expand": ["discounts"]},
            description="Stripe invoices with every line (beyond the 10 embedded).",
        ),
        Stream(
            "invoice_payments",
            "invoice_payment",
            "raw.stripe_invoice_payments",
            "invoice_payments",
            mutable=True,
            refresh_statuses=("open",),
            description="Links between invoices and the charges that paid them.",
        ),
        Stream(
            "charges",
            "charge",
            "raw.stripe_charges",
            "charges",
            mutable=True,
            refresh_statuses=("pending",),
            description="Charges: succeeded ones are cash revenue; failed ones are failed payments.",
        ),
        Stream(
            "refunds",
            "refund",
            "raw.stripe_refunds",
            "refunds",
            mutable=True,
            refresh_statuses=("pending", "requires_action"),
            description="Refunds, counted on their own day.",
        ),
        Stream(
            "credit_notes",
            "credit_note",
            "raw.stripe_credit_notes",
            "credit_notes",
            mutable=True,
            sublists=(CREDIT_NOTE_LINES,),
            description="Credit notes with all their lines.",
        ),
        Stream(
            "balance_transactions",
            "balance_transaction",
            "raw.stripe_balance_transactions",
            "balance_transactions",
            mutable=False,
            description="Balance transactions: processing fees of charges and refunds.",
        ),
    ]
}

# Stripe object type -> stream that owns it, for routing events to refreshes.
STREAM_BY_OBJECT_TYPE: dict[str, str] = {s.object_type: s.name for s in STREAMS.values()}
