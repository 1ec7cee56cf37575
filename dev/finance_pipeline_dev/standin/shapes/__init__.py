"""Builders for Stripe objects of API version 2026-10-28.endive, plus a conformance checker.

Every builder returns a plain dict shaped exactly like the object Stripe returns for the pinned API
version (nullable fields present as ``None``), so fixtures, the simulator and tests share one source
of truth. Amounts are integers in the currency's minor unit (JPY: whole yen), as on the wire.
``conformance_errors(obj)`` checks any such dict against the installed SDK's resource classes.

One module per object family (``customers``, ``catalog``, ``subscriptions``, ``invoices``,
``payments``, ``events``), ``common`` for ids and embedded lists, ``conformance`` for the checker;
use them through this package (``shapes.make_customer(...)``).
"""

from __future__ import annotations

from .catalog import make_coupon, make_discount, make_plan, make_price, make_product
from .common import API_VERSION, EMBEDDED_LIST_LIMIT, list_object, new_id
from .conformance import SDK_CLASSES, conformance_errors, sdk_fields
from .customers import make_account, make_customer
from .events import make_event
from .invoices import (
    credit_note_lines_url,
    invoice_lines_url,
    make_credit_note,
    make_credit_note_line,
    make_invoice,
    make_invoice_line,
    make_invoice_payment,
)
from .payments import make_balance_transaction, make_charge, make_refund
from .subscriptions import make_subscription, make_subscription_item, subscription_items_url

__all__ = [
    "API_VERSION",
    "EMBEDDED_LIST_LIMIT",
    "SDK_CLASSES",
    "conformance_errors",
    "credit_note_lines_url",
    "invoice_lines_url",
    "list_object",
    "make_account",
    "make_balance_transaction",
    "make_charge",
    "make_coupon",
    "make_credit_note",
    "make_credit_note_line",
    "make_customer",
    "make_discount",
    "make_event",
    "make_invoice",
    "make_invoice_line",
    "make_invoice_payment",
    "make_plan",
    "make_price",
    "make_product",
    "make_refund",
    "make_subscription",
    "make_subscription_item",
    "new_id",
    "sdk_fields",
    "subscription_items_url",
]
