"""Builders for Stripe objects of API version 2026-10-28.endive, plus a conformance checker.

Every builder returns a plain dict shaped exactly like the object Stripe returns for the pinned API
version (nullable fields present as ``None``), so fixtures, the simulator and tests share one source
of truth. Amounts are integers in the currency's minor unit (JPY: whole yen), as on the wire.
``conformance_errors(obj)`` checks any such dict against the installed SDK's resource classes.
"""

from __future__ import annotations

import ast
import copy
import decimal
import functools
import secrets
import string
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from finance_pipeline.stripe_sync.version import STRIPE_API_VERSION as API_VERSION

EMBEDDED_LIST_LIMIT = 10

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, rand: Any = None) -> str:
    """A Stripe-looking id (``cus_...``); pass a ``random.Random`` for reproducible ids."""
    if rand is None:
        body = "".join(secrets.choice(_ALPHABET) for _ in range(24))
    else:
        body = "".join(rand.choice(_ALPHABET) for _ in range(24))
    return f"{prefix}_{body}"


def _meta(metadata: Mapping[str, str] | None) -> dict[str, str]:
    return dict(metadata or {})


def _apply(obj: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    obj.update(overrides)
    return obj


def list_object(
    data: list[dict[str, Any]], url: str, *, total_count: bool = True
) -> dict[str, Any]:
    """An embedded Stripe list holding ALL items (the stand-in truncates it to 10 when serving)."""
    lst: dict[str, Any] = {"object": "list", "data": data, "has_more": False, "url": url}
    if total_count:
        lst["total_count"] = len(data)
    return lst


# --------------------------------------------------------------------------- catalogue objects


def make_customer(
    id: str,
    *,
    created: int,
    email: str | None = None,
    name: str | None = None,
    currency: str | None = None,
    livemode: bool = False,
    balance: int = 0,
    description: str | None = None,
    metadata: Mapping[str, str] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A customer (the billed party); ``currency`` is set once they have been invoiced."""
    obj: dict[str, Any] = {
        "id": id,
        "object": "customer",
        "address": None,
        "balance": balance,
        "created": created,
        "currency": currency,
        "default_source": None,
        "delinquent": False,
        "description": description,
        "discount": None,
        "email": email,
        "invoice_prefix": id.removeprefix("cus_")[:8].upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": livemode,
        "metadata": _meta(metadata),
        "name": name,
        "next_invoice_sequence": 1,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }
    return _apply(obj, overrides)


def make_product(
    id: str,
    *,
    created: int,
    name: str,
    livemode: bool = False,
    active: bool = True,
    default_price: str | None = None,
    description: str | None = None,
    metadata: Mapping[str, str] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A product (what is sold; prices hang off it)."""
    obj: dict[str, Any] = {
        "id": id,
        "object": "product",
        "active": active,
        "created": created,
        "default_price": default_price,
        "description": description,
        "images": [],
        "livemode": livemode,
        "marketing_features": [],
        "metadata": _meta(metadata),
        "name": name,
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": None,
        "type": "service",
        "unit_label": None,
        "updated": created,
        "url": None,
    }
    return _apply(obj, overrides)


def make_price(
    id: str,
    *,
    product: str,
    unit_amount: int,
    created: int,
    currency: str = "usd",
    interval: str | None = "month",
    interval_count: int = 1,
    nickname: str | None = None,
    lookup_key: str | None = None,
    livemode: bool = False,
    active: bool = True,
    metadata: Mapping[str, str] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A per-unit price; recurring when ``interval`` is set ("month"/"year"...), else one-time."""
    recurring = (
        None
        if interval is None
        else {
            "interval": interval,
            "interval_count": interval_count,
            "meter": None,
            "trial_period_days": None,
            "usage_type": "licensed",
        }
    )
    obj: dict[str, Any] = {
        "id": id,
        "object": "price",
        "active": active,
        "billing_scheme": "per_unit",
        "created": created,
        "currency": currency,
        "custom_unit_amount": None,
        "livemode": livemode,
        "lookup_key": lookup_key,
        "metadata": _meta(metadata),
        "nickname": nickname,
        "product": product,
        "recurring": recurring,
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "one_time" if interval is None else "recurring",
        "unit_amount": unit_amount,
        "unit_amount_decimal": str(unit_amount),
    }
    return _apply(obj, overrides)


def make_plan(price: Mapping[str, Any]) -> dict[str, Any]:
    """The legacy ``plan`` mirror of a recurring price (subscription items still carry both)."""
    rec = price.get("recurring") or {}
    return {
        "id": price["id"],
        "object": "plan",
        "active": price["active"],
        "amount": price["unit_amount"],
        "amount_decimal": price["unit_amount_decimal"],
        "billing_scheme": price["billing_scheme"],
        "created": price["created"],
        "currency": price["currency"],
        "interval": rec.get("interval", "month"),
        "interval_count": rec.get("interval_count", 1),
        "livemode": price["livemode"],
        "metadata": dict(price.get("metadata") or {}),
        "meter": None,
        "nickname": price.get("nickname"),
        "product": price["product"],
        "tiers_mode": None,
        "transform_usage": None,
        "trial_period_days": None,
        "usage_type": rec.get("usage_type", "licensed"),
    }


def make_coupon(
    id: str,
    *,
    created: int,
    percent_off: float | None = None,
    amount_off: int | None = None,
    currency: str | None = None,
    duration: str = "forever",
    duration_in_months: int | None = None,
    name: str | None = None,
    livemode: bool = False,
    times_redeemed: int = 0,
    valid: bool = True,
    metadata: Mapping[str, str] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A coupon: ``percent_off`` or ``amount_off`` (+ ``currency``), for a ``duration``."""
    if (percent_off is None) == (amount_off is None):
        raise ValueError("a coupon needs exactly one of percent_off / amount_off")
    if amount_off is not None and currency is None:
        raise ValueError("amount_off coupons need a currency")
    obj: dict[str, Any] = {
        "id": id,
        "object": "coupon",
        "amount_off": amount_off,
        "created": created,
        "currency": currency,
        "duration": duration,
        "duration_in_months": duration_in_months,
        "livemode": livemode,
        "max_redemptions": None,
        "metadata": _meta(metadata),
        "name": name,
        "percent_off": percent_off,
        "redeem_by": None,
        "times_redeemed": times_redeemed,
        "valid": valid,
    }
    return _apply(obj, overrides)


def make_discount(
    id: str,
    *,
    coupon: Mapping[str, Any],
    start: int,
    end: int | None = None,
    customer: str | None = None,
    subscription: str | None = None,
    subscription_item: str | None = None,
    invoice: str | None = None,
) -> dict[str, Any]:
    """A discount: a coupon applied to a customer/subscription/item from ``start`` until ``end``."""
    return {
        "id": id,
        "object": "discount",
        "checkout_session": None,
        "customer": customer,
        "end": end,
        "invoice": invoice,
        "invoice_item": None,
        "promotion_code": None,
        "source": {"coupon": copy.deepcopy(dict(coupon)), "type": "coupon"},
        "start": start,
        "subscription": subscription,
        "subscription_item": subscription_item,
    }


# --------------------------------------------------------------------------- subscriptions


def subscription_items_url(subscription_id: str) -> str:
    """The sub-list endpoint Stripe puts in ``subscription.items.url``."""
    return f"/v1/subscription_items?subscription={subscription_id}"


def make_subscription_item(
    id: str,
    *,
    subscription: str,
    price: Mapping[str, Any],
    created: int,
    current_period_start: int,
    current_period_end: int,
    quantity: int = 1,
    discounts: Iterable[str] = (),
    metadata: Mapping[str, str] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """One line of a subscription: a price x quantity with its own current billing period."""
    obj: dict[str, Any] = {
        "id": id,
        "object": "subscription_item",
        "billed_until": None,
        "billing_thresholds": None,
        "created": created,
        "current_period_end": current_period_end,
        "current_period_start": current_period_start,
        "discounts": list(discounts),
        "metadata": _meta(metadata),
        "plan": make_plan(price),
        "price": copy.deepcopy(dict(price)),
        "quantity": quantity,
        "subscription": subscription,
        "tax_rates": [],
    }
    return _apply(obj, overrides)


def make_subscription(
    id: str,
    *,
    customer: str,
    created: int,
    items: list[dict[str, Any]],
    status: str = "active",
    currency: str | None = None,
    start_date: int | None = None,
    billing_cycle_anchor: int | None = None,
    cancel_at_period_end: bool = False,
    cancel_at: int | None = None,
    canceled_at: int | None = None,
    ended_at: int | None = None,
    cancellation_reason: str | None = None,
    trial_start: int | None = None,
    trial_end: int | None = None,
    discounts: Iterable[str] = (),
    latest_invoice: str | None = None,
    collection_method: str = "charge_automatically",
    days_until_due: int | None = None,
    livemode: bool = False,
    metadata: Mapping[str, str] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A subscription; ``items`` are ``make_subscription_item`` dicts (all of them, any count)."""
    if currency is None:
        currency = items[0]["price"]["currency"] if items else "usd"
    obj: dict[str, Any] = {
        "id": id,
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": billing_cycle_anchor
        if billing_cycle_anchor is not None
        else created,
        "billing_cycle_anchor_config": None,
        "billing_mode": {
            "flexible": {"proration_discounts": "included"},
            "type": "flexible",
            "updated_at": created,
        },
        "billing_schedules": [],
        "billing_thresholds": None,
        "cancel_at": cancel_at,
        "cancel_at_period_end": cancel_at_period_end,
        "canceled_at": canceled_at,
        "cancellation_details": {
            "comment": None,
            "feedback": None,
            "reason": cancellation_reason,
        },
        "collection_method": collection_method,
        "created": created,
        "currency": currency,
        "customer": customer,
        "days_until_due": days_until_due,
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": list(discounts),
        "ended_at": ended_at,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "items": list_object(list(items), subscription_items_url(id)),
        "latest_invoice": latest_invoice,
        "livemode": livemode,
        "metadata": _meta(metadata),
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": "off",
        },
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": start_date if start_date is not None else created,
        "status": status,
        "test_clock": None,
        "transfer_data": None,
        "trial_end": trial_end,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": trial_start,
    }
    return _apply(obj, overrides)


# --------------------------------------------------------------------------- invoices


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


# --------------------------------------------------------------------------- money movements


def make_charge(
    id: str,
    *,
    amount: int,
    currency: str,
    created: int,
    customer: str | None = None,
    status: str = "succeeded",
    amount_refunded: int = 0,
    balance_transaction: str | None = None,
    payment_intent: str | None = None,
    failure_code: str | None = None,
    failure_message: str | None = None,
    description: str | None = None,
    livemode: bool = False,
    metadata: Mapping[str, str] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A card charge; failed ones carry ``failure_code``/``failure_message`` and no balance txn."""
    ok = status == "succeeded"
    outcome = (
        {
            "advice_code": None,
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": "normal",
            "seller_message": "Payment complete.",
            "type": "authorized",
        }
        if ok
        else {
            "advice_code": "try_again_later",
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "declined_by_network",
            "reason": failure_code,
            "risk_level": "normal",
            "seller_message": "The bank did not return any further details with this decline.",
            "type": "issuer_declined",
        }
    )
    obj: dict[str, Any] = {
        "id": id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount if ok else 0,
        "amount_refunded": amount_refunded,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": balance_transaction,
        "billing_details": {"address": None, "email": None, "name": None, "phone": None},
        "calculated_statement_descriptor": "STANDIN",
        "captured": ok,
        "created": created,
        "currency": currency,
        "customer": customer,
        "description": description,
        "disputed": False,
        "failure_balance_transaction": None,
        "failure_code": failure_code,
        "failure_message": failure_message,
        "fraud_details": {},
        "livemode": livemode,
        "metadata": _meta(metadata),
        "on_behalf_of": None,
        "outcome": outcome,
        "paid": ok,
        "payment_intent": payment_intent,
        "payment_method": None,
        "payment_method_details": None,
        "receipt_email": None,
        "receipt_number": None,
        "receipt_url": None,
        "refunded": amount_refunded >= amount and amount > 0,
        "review": None,
        "shipping": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": status,
        "transfer_data": None,
        "transfer_group": None,
    }
    return _apply(obj, overrides)


def make_refund(
    id: str,
    *,
    charge: str,
    amount: int,
    currency: str,
    created: int,
    status: str = "succeeded",
    reason: str | None = None,
    balance_transaction: str | None = None,
    payment_intent: str | None = None,
    metadata: Mapping[str, str] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A refund of (part of) a charge."""
    obj: dict[str, Any] = {
        "id": id,
        "object": "refund",
        "amount": amount,
        "balance_transaction": balance_transaction,
        "charge": charge,
        "created": created,
        "currency": currency,
        "destination_details": None,
        "metadata": _meta(metadata),
        "payment_intent": payment_intent,
        "reason": reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": status,
        "transfer_reversal": None,
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


_REPORTING_CATEGORY = {
    "charge": "charge",
    "payment": "charge",
    "refund": "refund",
    "payment_refund": "refund",
    "adjustment": "other_adjustment",
    "payout": "payout",
    "stripe_fee": "fee",
}


def make_balance_transaction(
    id: str,
    *,
    amount: int,
    currency: str,
    created: int,
    type: str = "charge",
    source: str | None = None,
    fee: int = 0,
    fee_details: Iterable[Mapping[str, Any]] | None = None,
    available_on: int | None = None,
    exchange_rate: float | None = None,
    status: str = "available",
    description: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A balance movement (charge, refund, fee...): net = amount - fee, all in ``currency``."""
    if fee_details is None:
        fee_details = (
            [
                {
                    "amount": fee,
                    "application": None,
                    "currency": currency,
                    "description": "Stripe processing fees",
                    "type": "stripe_fee",
                }
            ]
            if fee
            else []
        )
    obj: dict[str, Any] = {
        "id": id,
        "object": "balance_transaction",
        "amount": amount,
        "available_on": available_on if available_on is not None else created + 2 * 86400,
        "balance_type": "payments",
        "created": created,
        "currency": currency,
        "description": description,
        "exchange_rate": exchange_rate,
        "fee": fee,
        "fee_details": [dict(f) for f in fee_details],
        "net": amount - fee,
        "reporting_category": _REPORTING_CATEGORY.get(type, "other_adjustment"),
        "source": source,
        "status": status,
        "type": type,
    }
    return _apply(obj, overrides)


def make_event(
    id: str,
    *,
    type: str,
    created: int,
    data_object: Mapping[str, Any],
    previous_attributes: Mapping[str, Any] | None = None,
    livemode: bool = False,
    api_version: str = API_VERSION,
    request_id: str | None = None,
    idempotency_key: str | None = None,
    pending_webhooks: int = 0,
    account: str | None = None,
) -> dict[str, Any]:
    """An event; ``data.object`` is the full snapshot after the change (``account``: Connect)."""
    data: dict[str, Any] = {"object": copy.deepcopy(dict(data_object))}
    if previous_attributes is not None:
        data["previous_attributes"] = copy.deepcopy(dict(previous_attributes))
    obj: dict[str, Any] = {
        "id": id,
        "object": "event",
        "api_version": api_version,
        "created": created,
        "data": data,
        "livemode": livemode,
        "pending_webhooks": pending_webhooks,
        "request": {"id": request_id, "idempotency_key": idempotency_key},
        "type": type,
    }
    if account is not None:
        obj["account"] = account
    return obj


def make_account(
    id: str,
    *,
    created: int | None = None,
    business_name: str | None = None,
    email: str | None = None,
    country: str = "US",
    default_currency: str = "usd",
    type: str = "standard",
    **overrides: Any,
) -> dict[str, Any]:
    """The ``/v1/account`` object describing a Stripe account."""
    obj: dict[str, Any] = {
        "id": id,
        "object": "account",
        "business_profile": {
            "mcc": None,
            "name": business_name,
            "support_email": email,
            "support_phone": None,
            "support_url": None,
            "url": None,
        },
        "business_type": "company",
        "charges_enabled": True,
        "country": country,
        "created": created,
        "default_currency": default_currency,
        "details_submitted": True,
        "email": email,
        "metadata": {},
        "payouts_enabled": True,
        "settings": None,
        "type": type,
    }
    return _apply(obj, overrides)


# --------------------------------------------------------------------------- conformance checker

#: Stripe ``object`` value -> (SDK module, class) declaring its fields.
SDK_CLASSES: dict[str, tuple[str, str]] = {
    "account": ("_account", "Account"),
    "balance_transaction": ("_balance_transaction", "BalanceTransaction"),
    "charge": ("_charge", "Charge"),
    "coupon": ("_coupon", "Coupon"),
    "credit_note": ("_credit_note", "CreditNote"),
    "credit_note_line_item": ("_credit_note_line_item", "CreditNoteLineItem"),
    "customer": ("_customer", "Customer"),
    "discount": ("_discount", "Discount"),
    "event": ("_event", "Event"),
    "invoice": ("_invoice", "Invoice"),
    "invoice_payment": ("_invoice_payment", "InvoicePayment"),
    "line_item": ("_invoice_line_item", "InvoiceLineItem"),
    "plan": ("_plan", "Plan"),
    "price": ("_price", "Price"),
    "product": ("_product", "Product"),
    "refund": ("_refund", "Refund"),
    "subscription": ("_subscription", "Subscription"),
    "subscription_item": ("_subscription_item", "SubscriptionItem"),
}

_LIST_KEYS = {"object", "data", "has_more", "url", "total_count"}
_SCALARS = {"str": (str,), "int": (int,), "bool": (bool,), "float": (int, float)}


@functools.cache
def _sdk_module(module: str) -> tuple[ast.Module, dict[str, tuple[str, str]]]:
    import stripe  # local: the checker is only used by tests and tooling

    path = Path(stripe.__file__).parent / f"{module}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imports: dict[str, tuple[str, str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("stripe._"):
            mod = node.module.split(".", 1)[1]  # type: ignore[union-attr]
            for alias in node.names:
                imports[alias.asname or alias.name] = (mod, alias.name)
    return tree, imports


@functools.cache
def _sdk_class(module: str, path: tuple[str, ...]) -> ast.ClassDef:
    node: Any = _sdk_module(module)[0]
    for name in path:
        node = next(n for n in node.body if isinstance(n, ast.ClassDef) and n.name == name)
    return node


def sdk_fields(module: str, path: tuple[str, ...]) -> dict[str, ast.expr]:
    """The annotated (non-ClassVar) fields of an SDK resource class, read from its source."""
    fields: dict[str, ast.expr] = {}
    for n in _sdk_class(module, path).body:
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name):
            ann = n.annotation
            if isinstance(ann, ast.Subscript) and _name(ann.value) == "ClassVar":
                continue
            fields[n.target.id] = ann
    return fields


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _is_optional(ann: ast.expr) -> bool:
    return isinstance(ann, ast.Subscript) and _name(ann.value) == "Optional"


def _args(sub: ast.Subscript) -> list[ast.expr]:
    return list(sub.slice.elts) if isinstance(sub.slice, ast.Tuple) else [sub.slice]


def _resolve_class(
    name: str, module: str, path: tuple[str, ...]
) -> tuple[str, tuple[str, ...]] | None:
    for depth in range(len(path), 0, -1):
        scope = _sdk_class(module, path[:depth])
        if any(isinstance(n, ast.ClassDef) and n.name == name for n in scope.body):
            return module, (*path[:depth], name)
    imported = _sdk_module(module)[1].get(name)
    if imported is not None:
        try:
            _sdk_class(imported[0], (imported[1],))
        except (OSError, StopIteration):
            return None
        return imported[0], (imported[1],)
    return None


def _check_value(
    value: Any,
    ann: ast.expr,
    module: str,
    path: tuple[str, ...],
    where: str,
    errors: list[str],
) -> None:
    if isinstance(ann, ast.Constant) and isinstance(ann.value, str):
        ann = ast.parse(ann.value, mode="eval").body
    if isinstance(ann, ast.Subscript):
        head = _name(ann.value)
        args = _args(ann)
        if head == "Optional":
            if value is not None:
                _check_value(value, args[0], module, path, where, errors)
            return
        if value is None:
            errors.append(f"{where}: null but the SDK declares it non-optional")
            return
        if head == "Literal":
            allowed = [a.value for a in args if isinstance(a, ast.Constant)]
            if value not in allowed:
                errors.append(f"{where}: {value!r} not in {allowed}")
            return
        if head == "Union":
            trials: list[list[str]] = []
            for alt in args:
                sub: list[str] = []
                _check_value(value, alt, module, path, where, sub)
                if not sub:
                    return
                trials.append(sub)
            errors.append(f"{where}: matches no alternative ({trials[0][0]})")
            return
        if head == "ExpandableField":
            if not isinstance(value, str):
                _check_value(value, args[0], module, path, where, errors)
            return
        if head == "ListObject":
            if not isinstance(value, dict) or value.get("object") != "list":
                errors.append(f"{where}: expected a list object")
                return
            extra = set(value) - _LIST_KEYS
            if extra:
                errors.append(f"{where}: unexpected list keys {sorted(extra)}")
            for key in ("data", "has_more", "url"):
                if key not in value:
                    errors.append(f"{where}: list without {key!r}")
            for i, item in enumerate(value.get("data") or []):
                _check_value(item, args[0], module, path, f"{where}.data[{i}]", errors)
            return
        if head == "List":
            if not isinstance(value, list):
                errors.append(f"{where}: expected a JSON array")
                return
            for i, item in enumerate(value):
                _check_value(item, args[0], module, path, f"{where}[{i}]", errors)
            return
        if head in ("UntypedStripeObject", "Dict"):
            if not isinstance(value, dict):
                errors.append(f"{where}: expected a JSON object")
            return
        return
    if value is None:
        errors.append(f"{where}: null but the SDK declares it non-optional")
        return
    name = _name(ann)
    if name in _SCALARS:
        ok = isinstance(value, _SCALARS[name]) and (name == "bool" or not isinstance(value, bool))
        if not ok:
            errors.append(f"{where}: {value!r} is not {name}")
        return
    if name == "Decimal":
        # on the wire a decimal string; after SDK hydration (``to_dict()``) a Decimal
        if not isinstance(value, (str, int, decimal.Decimal)) or isinstance(value, bool):
            errors.append(f"{where}: {value!r} is not a decimal string")
        return
    if name in ("Any", "object"):
        return
    target = _resolve_class(name, module, path)
    if target is None:
        return  # a class the checker cannot locate: do not guess
    if not isinstance(value, dict):
        errors.append(f"{where}: expected an object ({name})")
        return
    _check_object(value, target[0], target[1], where, errors)


def _check_object(
    obj: Mapping[str, Any], module: str, path: tuple[str, ...], where: str, errors: list[str]
) -> None:
    fields = sdk_fields(module, path)
    cls = ".".join(path)
    for key in obj:
        if key not in fields:
            errors.append(f"{where}.{key}: not declared on stripe.{cls}")
    for key, ann in fields.items():
        if key not in obj:
            if not _is_optional(ann):
                errors.append(f"{where}.{key}: missing (non-optional on stripe.{cls})")
            continue
        _check_value(obj[key], ann, module, path, f"{where}.{key}", errors)


def conformance_errors(obj: Mapping[str, Any], where: str | None = None) -> list[str]:
    """Differences between a Stripe object dict and the SDK's declared fields, recursively.

    Every emitted key must be declared on the SDK class (or its nested classes) and every
    non-Optional field must be present and non-null. Returns [] for a conformant object.
    """
    kind = obj.get("object")
    if kind not in SDK_CLASSES:
        return [f"{where or '?'}: unknown object type {kind!r}"]
    module, cls = SDK_CLASSES[kind]
    errors: list[str] = []
    _check_object(obj, module, (cls,), where or f"{kind}[{obj.get('id')}]", errors)
    if kind == "event":
        inner = obj.get("data", {}).get("object")
        if isinstance(inner, dict) and inner.get("object") in SDK_CLASSES:
            errors.extend(conformance_errors(inner, f"{where or obj.get('id')}.data.object"))
    return errors
