"""Builders for subscriptions and their items (each item a price x quantity)."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from .catalog import make_plan
from .common import _apply, _meta, list_object


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
