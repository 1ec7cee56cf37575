"""Columns extracted from Stripe objects (shapes of the pinned API version) for the raw tables.

The payload is stored whole; these columns exist so joins and filters need no JSON parsing.
Current shapes: billing periods live on subscription items, invoices link their subscription via
`parent.subscription_details`, and payments link invoices to charges through invoice payments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Obj = Mapping[str, Any]


def _id(value: Any) -> str | None:
    """An expandable field's id whether it came expanded (object) or not (string)."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return value.get("id")
    return str(value)


def _dig(obj: Obj, *path: str) -> Any:
    cur: Any = obj
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def _list_count(obj: Obj, key: str) -> int | None:
    sub = obj.get(key)
    if not isinstance(sub, Mapping):
        return None
    total = sub.get("total_count")
    return int(total) if total is not None else None


def customer(o: Obj) -> dict[str, Any]:
    """A customer, including deleted ones (Stripe returns `deleted: true` stubs)."""
    return {
        "email": o.get("email"),
        "name": o.get("name"),
        "currency": o.get("currency"),
        "deleted": bool(o.get("deleted", False)),
    }


def product(o: Obj) -> dict[str, Any]:
    """A product (plan family) with its name."""
    return {"name": o.get("name"), "active": o.get("active")}


def price(o: Obj) -> dict[str, Any]:
    """A price: amount, billing scheme and recurrence that drive item MRR (docs/metrics.md §3)."""
    rec = o.get("recurring") or {}
    return {
        "product": _id(o.get("product")),
        "currency": o.get("currency"),
        "type": o.get("type"),
        "unit_amount": o.get("unit_amount"),
        "unit_amount_decimal": None
        if o.get("unit_amount_decimal") is None
        else str(o.get("unit_amount_decimal")),
        "billing_scheme": o.get("billing_scheme"),
        "tiers_mode": o.get("tiers_mode"),
        "recurring_interval": rec.get("interval"),
        "recurring_interval_count": rec.get("interval_count"),
        "usage_type": rec.get("usage_type"),
        "tax_behavior": o.get("tax_behavior"),
        "active": o.get("active"),
    }


def coupon(o: Obj) -> dict[str, Any]:
    """A coupon: percent or amount off, and how long it lasts."""
    pct = o.get("percent_off")
    return {
        "percent_off": None if pct is None else str(pct),
        "amount_off": o.get("amount_off"),
        "currency": o.get("currency"),
        "duration": o.get("duration"),
        "duration_in_months": o.get("duration_in_months"),
        "valid": o.get("valid"),
    }


def subscription(o: Obj) -> dict[str, Any]:
    """A subscription's lifecycle fields (status, trial, cancellation, pause)."""
    pause = o.get("pause_collection")
    return {
        "customer": _id(o.get("customer")),
        "status": o.get("status"),
        "currency": o.get("currency"),
        "start_date": o.get("start_date"),
        "trial_start": o.get("trial_start"),
        "trial_end": o.get("trial_end"),
        "cancel_at": o.get("cancel_at"),
        "cancel_at_period_end": o.get("cancel_at_period_end"),
        "canceled_at": o.get("canceled_at"),
        "ended_at": o.get("ended_at"),
        "pause_behavior": pause.get("behavior") if isinstance(pause, Mapping) else None,
        "items_count": _list_count(o, "items"),
    }


def subscription_item(o: Obj) -> dict[str, Any]:
    """One item of a subscription: price, quantity and its current billing period."""
    return {
        "subscription": o.get("subscription"),
        "price": _id(o.get("price")),
        "quantity": o.get("quantity"),
        "current_period_start": o.get("current_period_start"),
        "current_period_end": o.get("current_period_end"),
    }


def invoice(o: Obj) -> dict[str, Any]:
    """An invoice with its totals (tax-inclusive and exclusive) and payment state."""
    return {
        "customer": _id(o.get("customer")),
        "subscription": _id(_dig(o, "parent", "subscription_details", "subscription")),
        "status": o.get("status"),
        "currency": o.get("currency"),
        "billing_reason": o.get("billing_reason"),
        "subtotal": o.get("subtotal"),
        "total": o.get("total"),
        "total_excluding_tax": o.get("total_excluding_tax"),
        "amount_due": o.get("amount_due"),
        "amount_paid": o.get("amount_paid"),
        "amount_remaining": o.get("amount_remaining"),
        "period_start": o.get("period_start"),
        "period_end": o.get("period_end"),
        "paid_at": _dig(o, "status_transitions", "paid_at"),
        "lines_count": _list_count(o, "lines"),
    }


def invoice_line(o: Obj) -> dict[str, Any]:
    """One invoice line: its price, quantity, amount, service period and proration flag."""
    parent = o.get("parent") or {}
    sub_details = parent.get("subscription_item_details") or {}
    item_details = parent.get("invoice_item_details") or {}
    proration = sub_details.get("proration")
    if proration is None:
        proration = item_details.get("proration")
    return {
        "invoice": o.get("invoice"),
        "subscription": _id(sub_details.get("subscription") or item_details.get("subscription")),
        "subscription_item": sub_details.get("subscription_item"),
        "price": _id(_dig(o, "pricing", "price_details", "price")),
        "quantity": o.get("quantity"),
        "amount": o.get("amount"),
        "currency": o.get("currency"),
        "period_start": _dig(o, "period", "start"),
        "period_end": _dig(o, "period", "end"),
        "proration": bool(proration) if proration is not None else False,
        "parent_type": parent.get("type"),
    }


def invoice_payment(o: Obj) -> dict[str, Any]:
    """The link between an invoice and the charge or payment intent that paid it."""
    pay = o.get("payment") or {}
    return {
        "invoice": _id(o.get("invoice")),
        "charge": _id(pay.get("charge")),
        "payment_intent": _id(pay.get("payment_intent")),
        "amount_paid": o.get("amount_paid"),
        "amount_requested": o.get("amount_requested"),
        "currency": o.get("currency"),
        "status": o.get("status"),
        "is_default": o.get("is_default"),
        "paid_at": _dig(o, "status_transitions", "paid_at"),
    }


def charge(o: Obj) -> dict[str, Any]:
    """A charge: cash in when succeeded; failed ones feed failed-payment counts."""
    return {
        "customer": _id(o.get("customer")),
        "amount": o.get("amount"),
        "amount_captured": o.get("amount_captured"),
        "amount_refunded": o.get("amount_refunded"),
        "currency": o.get("currency"),
        "status": o.get("status"),
        "paid": o.get("paid"),
        "refunded": o.get("refunded"),
        "balance_transaction": _id(o.get("balance_transaction")),
        "payment_intent": _id(o.get("payment_intent")),
        "failure_code": o.get("failure_code"),
    }


def refund(o: Obj) -> dict[str, Any]:
    """A refund, which lands on its own creation day (docs/metrics.md §7)."""
    return {
        "charge": _id(o.get("charge")),
        "amount": o.get("amount"),
        "currency": o.get("currency"),
        "status": o.get("status"),
        "reason": o.get("reason"),
        "balance_transaction": _id(o.get("balance_transaction")),
    }


def credit_note(o: Obj) -> dict[str, Any]:
    """A credit note; post-payment ones may carry a refund, pre-payment ones are not cash."""
    return {
        "invoice": _id(o.get("invoice")),
        "customer": _id(o.get("customer")),
        "type": o.get("type"),
        "status": o.get("status"),
        "currency": o.get("currency"),
        "amount": o.get("amount"),
        "total": o.get("total"),
        "total_excluding_tax": o.get("total_excluding_tax"),
        "refund_amount": o.get("refund_amount"),
        "pre_payment_amount": o.get("pre_payment_amount"),
        "post_payment_amount": o.get("post_payment_amount"),
        "effective_at": o.get("effective_at"),
        "lines_count": _list_count(o, "lines"),
    }


def credit_note_line(o: Obj) -> dict[str, Any]:
    """One credit note line and the invoice line it credits."""
    return {
        "invoice_line_item": o.get("invoice_line_item"),
        "type": o.get("type"),
        "amount": o.get("amount"),
        "quantity": o.get("quantity"),
    }


def balance_transaction(o: Obj) -> dict[str, Any]:
    """A balance transaction: its `fee` is the processing cost of a charge."""
    return {
        "source": _id(o.get("source")),
        "type": o.get("type"),
        "reporting_category": o.get("reporting_category"),
        "amount": o.get("amount"),
        "fee": o.get("fee"),
        "net": o.get("net"),
        "currency": o.get("currency"),
        "available_on": o.get("available_on"),
    }


def event(o: Obj) -> dict[str, Any]:
    """An event: which object changed, and how."""
    data_obj = _dig(o, "data", "object") or {}
    return {
        "type": o.get("type"),
        "object_type": data_obj.get("object"),
        "object_id": data_obj.get("id"),
        "api_version": o.get("api_version"),
    }


EXTRACTORS: dict[str, Callable[[Obj], dict[str, Any]]] = {
    "customer": customer,
    "product": product,
    "price": price,
    "coupon": coupon,
    "subscription": subscription,
    "subscription_item": subscription_item,
    "invoice": invoice,
    "line_item": invoice_line,
    "invoice_payment": invoice_payment,
    "charge": charge,
    "refund": refund,
    "credit_note": credit_note,
    "credit_note_line_item": credit_note_line,
    "balance_transaction": balance_transaction,
    "event": event,
}
