"""Builders for money movements: charges, refunds and balance transactions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .common import _apply, _meta


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
