"""Builders for what is billed: invoices and their lines, invoice payments, credit notes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .common import _apply, _meta, list_object


def invoice_lines_url(invoice_id: str) -> str:
    """The sub-list endpoint Stripe puts in ``invoice.lines.url``."""
    return f"/v1/invoices/{invoice_id}/lines"


def make_invoice_line(
    id: str,
    *,
    invoice: str,
    amount: int,
    currency: str,
    period_start: int,
    period_end: int,
    price: Mapping[str, Any] | None = None,
    quantity: int | None = 1,
    description: str | None = None,
    subscription: str | None = None,
    subscription_item: str | None = None,
    invoice_item: str | None = None,
    proration: bool = False,
    discount_amounts: Iterable[Mapping[str, Any]] = (),
    livemode: bool = False,
    metadata: Mapping[str, str] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """One invoice line: ``amount`` before discounts; ``discount_amounts`` = [{amount, discount}].

    Lines from a subscription item get ``parent.subscription_item_details`` (with ``proration``);
    others with ``invoice_item`` get ``parent.invoice_item_details``.
    """
    if subscription_item is not None:
        parent: dict[str, Any] | None = {
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": invoice_item,
                "proration": proration,
                "proration_details": {"credited_items": None},
                "subscription": subscription,
                "subscription_item": subscription_item,
            },
            "type": "subscription_item_details",
        }
    elif invoice_item is not None:
        parent = {
            "invoice_item_details": {
                "invoice_item": invoice_item,
                "proration": proration,
                "proration_details": {"credited_items": None},
                "subscription": subscription,
            },
            "subscription_item_details": None,
            "type": "invoice_item_details",
        }
    else:
        parent = None
    pricing = None
    if price is not None:
        unit = price.get("unit_amount_decimal")
        pricing = {
            "price_details": {"price": price["id"], "product": price["product"]},
            "type": "price_details",
            "unit_amount_decimal": unit,
        }
    discounts = [dict(d) for d in discount_amounts]
    obj: dict[str, Any] = {
        "id": id,
        "object": "line_item",
        "amount": amount,
        "currency": currency,
        "description": description,
        "discount_amounts": discounts,
        "discountable": True,
        "discounts": [d["discount"] for d in discounts if isinstance(d.get("discount"), str)],
        "invoice": invoice,
        "livemode": livemode,
        "metadata": _meta(metadata),
        "parent": parent,
        "period": {"end": period_end, "start": period_start},
        "pretax_credit_amounts": [
            {
                "amount": d["amount"],
                "credit_balance_transaction": None,
                "discount": d["discount"],
                "type": "discount",
            }
            for d in discounts
        ],
        "pricing": pricing,
        "quantity": quantity,
        "subscription": subscription,
        "subtotal": amount,
        "taxes": [],
    }
    return _apply(obj, overrides)


def make_invoice(
    id: str,
    *,
    customer: str,
    created: int,
    currency: str,
    lines: list[dict[str, Any]],
    status: str = "paid",
    subscription: str | None = None,
    billing_reason: str | None = None,
    period_start: int | None = None,
    period_end: int | None = None,
    number: str | None = None,
    starting_balance: int = 0,
    total_discount_amounts: Iterable[Mapping[str, Any]] | None = None,
    discounts: Iterable[str] = (),
    attempt_count: int | None = None,
    due_date: int | None = None,
    finalized_at: int | None = None,
    paid_at: int | None = None,
    voided_at: int | None = None,
    marked_uncollectible_at: int | None = None,
    customer_email: str | None = None,
    customer_name: str | None = None,
    collection_method: str = "charge_automatically",
    livemode: bool = False,
    metadata: Mapping[str, str] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """An invoice with ALL its ``lines`` (``make_invoice_line`` dicts); totals derive from lines.

    subtotal = sum(line amounts); total = subtotal - discounts (line-level discount_amounts unless
    ``total_discount_amounts`` is given); amount_due = max(total + starting_balance, 0); paid
    invoices have amount_paid = amount_due. ``subscription`` fills ``parent.subscription_details``.
    """
    subtotal = sum(int(line["amount"]) for line in lines)
    if total_discount_amounts is None:
        agg: dict[str, int] = {}
        for line in lines:
            for d in line.get("discount_amounts") or []:
                key = d["discount"] if isinstance(d["discount"], str) else d["discount"]["id"]
                agg[key] = agg.get(key, 0) + int(d["amount"])
        tda = [{"amount": a, "discount": k} for k, a in agg.items()]
    else:
        tda = [dict(d) for d in total_discount_amounts]
    discount_total = sum(int(d["amount"]) for d in tda)
    total = subtotal - discount_total
    amount_due = max(total + starting_balance, 0)
    finalized = status != "draft"
    if status == "paid":
        amount_paid, amount_remaining = amount_due, 0
    elif status == "void":
        amount_paid, amount_remaining = 0, 0
    else:
        amount_paid, amount_remaining = 0, amount_due
    if period_start is None:
        period_start = min((line["period"]["start"] for line in lines), default=created)
    if period_end is None:
        period_end = max((line["period"]["end"] for line in lines), default=created)
    if finalized and finalized_at is None:
        finalized_at = created
    if status == "paid" and paid_at is None:
        paid_at = finalized_at
    if attempt_count is None:
        attempt_count = 1 if finalized and collection_method == "charge_automatically" else 0
    parent = (
        {
            "quote_details": None,
            "subscription_details": {
                "metadata": {},
                "subscription": subscription,
                "subscription_proration_date": None,
            },
            "type": "subscription_details",
        }
        if subscription is not None
        else None
    )
    if billing_reason is None:
        billing_reason = "subscription_cycle" if subscription is not None else "manual"
    obj: dict[str, Any] = {
        "id": id,
        "object": "invoice",
        "account_country": "US",
        "account_name": None,
        "account_tax_ids": None,
        "amount_due": amount_due,
        "amount_overpaid": 0,
        "amount_paid": amount_paid,
        "amount_remaining": amount_remaining,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": attempt_count,
        "attempted": attempt_count > 0,
        "auto_advance": status in ("draft", "open"),
        "automatic_tax": {
            "disabled_reason": None,
            "enabled": False,
            "liability": None,
            "provider": None,
            "status": None,
        },
        "automatically_finalizes_at": None,
        "billing_reason": billing_reason,
        "collection_method": collection_method,
        "created": created,
        "currency": currency,
        "custom_fields": None,
        "customer": customer,
        "customer_address": None,
        "customer_email": customer_email,
        "customer_name": customer_name,
        "customer_phone": None,
        "customer_shipping": None,
        "customer_tax_exempt": "none",
        "customer_tax_ids": [],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": list(discounts),
        "due_date": due_date,
        "effective_at": finalized_at,
        "ending_balance": min(total + starting_balance, 0) if finalized else None,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": list_object(list(lines), invoice_lines_url(id)),
        "livemode": livemode,
        "metadata": _meta(metadata),
        "next_payment_attempt": None,
        "number": number if finalized else None,
        "on_behalf_of": None,
        "parent": parent,
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        "period_end": period_end,
        "period_start": period_start,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": starting_balance,
        "statement_descriptor": None,
        "status": status,
        "status_transitions": {
            "finalized_at": finalized_at,
            "marked_uncollectible_at": marked_uncollectible_at,
            "paid_at": paid_at if status == "paid" else None,
            "voided_at": voided_at,
        },
        "subtotal": subtotal,
        "subtotal_excluding_tax": subtotal,
        "test_clock": None,
        "threshold_reason": None,
        "total": total,
        "total_discount_amounts": tda,
        "total_excluding_tax": total,
        "total_pretax_credit_amounts": [
            {
                "amount": d["amount"],
                "credit_balance_transaction": None,
                "discount": d["discount"],
                "type": "discount",
            }
            for d in tda
        ],
        "total_taxes": [],
        "webhooks_delivered_at": created,
    }
    return _apply(obj, overrides)


def make_invoice_payment(
    id: str,
    *,
    invoice: str,
    amount: int,
    currency: str,
    created: int,
    charge: str | None = None,
    payment_intent: str | None = None,
    status: str = "paid",
    paid_at: int | None = None,
    canceled_at: int | None = None,
    is_default: bool = True,
    livemode: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """The link between an invoice and the payment (charge or payment intent) that settled it."""
    if payment_intent is not None:
        payment: dict[str, Any] = {"payment_intent": payment_intent, "type": "payment_intent"}
    else:
        payment = {"charge": charge, "type": "charge"}
    obj: dict[str, Any] = {
        "id": id,
        "object": "invoice_payment",
        "amount_paid": amount if status == "paid" else None,
        "amount_requested": amount,
        "created": created,
        "currency": currency,
        "invoice": invoice,
        "is_default": is_default,
        "livemode": livemode,
        "payment": payment,
        "status": status,
        "status_transitions": {
            "canceled_at": canceled_at,
            "paid_at": (paid_at if paid_at is not None else created) if status == "paid" else None,
        },
    }
    return _apply(obj, overrides)


def credit_note_lines_url(credit_note_id: str) -> str:
    """The sub-list endpoint Stripe puts in ``credit_note.lines.url``."""
    return f"/v1/credit_notes/{credit_note_id}/lines"


def make_credit_note_line(
    id: str,
    *,
    amount: int,
    description: str | None = None,
    invoice_line_item: str | None = None,
    quantity: int | None = 1,
    unit_amount: int | None = None,
    livemode: bool = False,
    **overrides: Any,
) -> dict[str, Any]:
    """One credit note line; referencing an invoice line when ``invoice_line_item`` is set."""
    unit = unit_amount if unit_amount is not None else amount
    obj: dict[str, Any] = {
        "id": id,
        "object": "credit_note_line_item",
        "amount": amount,
        "description": description,
        "discount_amount": 0,
        "discount_amounts": [],
        "invoice_line_item": invoice_line_item,
        "livemode": livemode,
        "metadata": {},
        "pretax_credit_amounts": [],
        "quantity": quantity,
        "tax_rates": [],
        "taxes": [],
        "type": "invoice_line_item" if invoice_line_item else "custom_line_item",
        "unit_amount": unit,
        "unit_amount_decimal": str(unit),
    }
    return _apply(obj, overrides)


def make_credit_note(
    id: str,
    *,
    invoice: str,
    customer: str,
    created: int,
    currency: str,
    lines: list[dict[str, Any]],
    number: str,
    reason: str | None = None,
    status: str = "issued",
    type: str = "post_payment",
    refunds: Iterable[Mapping[str, Any]] = (),
    out_of_band_amount: int | None = None,
    memo: str | None = None,
    voided_at: int | None = None,
    livemode: bool = False,
    metadata: Mapping[str, str] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A credit note against an invoice with ALL its ``lines``; amount = sum of line amounts.

    ``refunds`` = [{"refund": "re_...", "amount_refunded": n}] for the refunded part.
    """
    amount = sum(int(line["amount"]) for line in lines)
    refs = [
        {
            "amount_refunded": int(r["amount_refunded"]),
            "payment_record_refund": None,
            "refund": r["refund"],
            "type": "refund",
        }
        for r in refunds
    ]
    obj: dict[str, Any] = {
        "id": id,
        "object": "credit_note",
        "amount": amount,
        "amount_shipping": 0,
        "created": created,
        "currency": currency,
        "customer": customer,
        "customer_balance_transaction": None,
        "discount_amount": 0,
        "discount_amounts": [],
        "effective_at": created,
        "invoice": invoice,
        "lines": list_object(list(lines), credit_note_lines_url(id)),
        "livemode": livemode,
        "memo": memo,
        "metadata": _meta(metadata),
        "number": number,
        "out_of_band_amount": out_of_band_amount,
        "pdf": f"https://pay.stripe.com/credit_notes/{id}/pdf",
        "post_payment_amount": amount if type == "post_payment" else 0,
        "pre_payment_amount": amount if type == "pre_payment" else 0,
        "pretax_credit_amounts": [],
        "reason": reason,
        "refunds": refs,
        "shipping_cost": None,
        "status": status,
        "subtotal": amount,
        "subtotal_excluding_tax": amount,
        "total": amount,
        "total_excluding_tax": amount,
        "total_taxes": [],
        "type": type,
        "voided_at": voided_at,
    }
    return _apply(obj, overrides)
