"""Builders for what is sold and its price rules: products, prices (and their legacy plan
mirror), coupons and the discounts that apply them."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .common import _apply, _meta


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
