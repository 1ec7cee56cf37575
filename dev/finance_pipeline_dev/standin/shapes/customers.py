"""Builders for the billed parties: customers and the ``/v1/account`` object."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .common import _apply, _meta


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
