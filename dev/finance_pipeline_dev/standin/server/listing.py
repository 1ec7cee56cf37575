"""List semantics: the listable resources with their filters (and default filters), the list
JSON envelope, and pagination of embedded sub-lists (invoice lines, subscription items)."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from finance_pipeline_dev.standin.store import UnknownCursor

from .params import ApiError, _scalar, _string_list

Predicate = Callable[[dict[str, Any]], bool]

_COMMON_LIST_PARAMS = frozenset({"ending_before", "expand", "limit", "starting_after"})
_SUBSCRIPTION_STATUSES = frozenset(
    [
        "active",
        "canceled",
        "ended",
        "incomplete",
        "incomplete_expired",
        "past_due",
        "paused",
        "trialing",
        "unpaid",
        "all",
    ]
)
_INVOICE_STATUSES = frozenset(["draft", "open", "paid", "uncollectible", "void"])


def _ref(value: Any) -> Any:
    return value.get("id") if isinstance(value, Mapping) else value


def _eq(field_name: str) -> Callable[[Any], Predicate]:
    def make(value: Any) -> Predicate:
        want = _scalar(value, field_name)
        return lambda obj: _ref(obj.get(field_name)) == want

    return make


def _bool_eq(field_name: str) -> Callable[[Any], Predicate]:
    def make(value: Any) -> Predicate:
        if value not in ("true", "false"):
            raise ApiError(
                400, f"Invalid boolean: {value}", code="parameter_invalid_boolean", param=field_name
            )
        want = value == "true"
        return lambda obj: bool(obj.get(field_name)) == want

    return make


def _in(field_name: str, param: str) -> Callable[[Any], Predicate]:
    def make(value: Any) -> Predicate:
        values = set(_string_list(value, param))
        return lambda obj: obj.get(field_name) in values

    return make


def _ignored(value: Any) -> Predicate | None:
    return None


def _enum_eq(field_name: str, allowed: frozenset[str]) -> Callable[[Any], Predicate]:
    def make(value: Any) -> Predicate:
        want = _scalar(value, field_name)
        if want not in allowed:
            raise ApiError(
                400,
                f"Invalid {field_name}: must be one of {', '.join(sorted(allowed))}",
                code="parameter_invalid_string",
                param=field_name,
            )
        return lambda obj: obj.get(field_name) == want

    return make


def _subscription_status(value: Any) -> Predicate | None:
    want = _scalar(value, "status")
    if want not in _SUBSCRIPTION_STATUSES:
        raise ApiError(
            400,
            f"Invalid status: must be one of {', '.join(sorted(_SUBSCRIPTION_STATUSES))}",
            code="parameter_invalid_string",
            param="status",
        )
    if want == "all":
        return None
    if want == "ended":
        return lambda obj: obj.get("status") in ("canceled", "incomplete_expired")
    return lambda obj: obj.get("status") == want


def _subscription_default(obj: dict[str, Any]) -> bool:
    return obj.get("status") not in ("canceled", "incomplete_expired")


def _subscription_price(value: Any) -> Predicate:
    want = _scalar(value, "price")
    return lambda obj: any(
        _ref(item.get("price")) == want or _ref(item.get("plan")) == want
        for item in (obj.get("items") or {}).get("data") or []
    )


def _invoice_subscription(value: Any) -> Predicate:
    want = _scalar(value, "subscription")

    def pred(obj: dict[str, Any]) -> bool:
        details = (obj.get("parent") or {}).get("subscription_details") or {}
        return _ref(details.get("subscription")) == want

    return pred


def _event_type(value: Any) -> Predicate:
    pattern = _scalar(value, "type")
    if "*" in pattern:
        return lambda obj: fnmatch.fnmatchcase(str(obj.get("type")), pattern)
    return lambda obj: obj.get("type") == pattern


def _event_types(value: Any) -> Predicate:
    wanted = set(_string_list(value, "types"))
    return lambda obj: obj.get("type") in wanted


def _price_recurring(value: Any) -> Predicate:
    if not isinstance(value, Mapping):
        raise ApiError(400, "Invalid hash", code="parameter_invalid_string", param="recurring")
    wanted = {k: v for k, v in value.items() if k in ("interval", "usage_type", "meter")}
    return lambda obj: all((obj.get("recurring") or {}).get(k) == v for k, v in wanted.items())


def _invoice_payment_payment(value: Any) -> Predicate:
    if not isinstance(value, Mapping):
        raise ApiError(400, "Invalid hash", code="parameter_invalid_string", param="payment")
    return lambda obj: all(_ref((obj.get("payment") or {}).get(k)) == v for k, v in value.items())


@dataclass(frozen=True)
class Resource:
    """A listable Stripe collection: its object type, permission name and list filters."""

    path: str
    object_type: str
    filters: Mapping[str, Callable[[Any], Predicate | None]] = field(default_factory=dict)
    default_filter: Predicate | None = None
    default_filter_off: str | None = None  # the filter param that replaces the default filter

    @property
    def permission(self) -> str:
        return self.path

    @property
    def list_params(self) -> frozenset[str]:
        return _COMMON_LIST_PARAMS | {"created"} | set(self.filters)

    @property
    def noun(self) -> str:
        return self.object_type.replace("_", " ")


RESOURCES: dict[str, Resource] = {
    r.path: r
    for r in [
        Resource("customers", "customer", {"email": _eq("email"), "test_clock": _ignored}),
        Resource(
            "products",
            "product",
            {
                "active": _bool_eq("active"),
                "ids": _in("id", "ids"),
                "shippable": _bool_eq("shippable"),
                "type": _eq("type"),
                "url": _eq("url"),
            },
        ),
        Resource(
            "prices",
            "price",
            {
                "active": _bool_eq("active"),
                "currency": _eq("currency"),
                "lookup_keys": _in("lookup_key", "lookup_keys"),
                "product": _eq("product"),
                "recurring": _price_recurring,
                "type": _eq("type"),
            },
        ),
        Resource("coupons", "coupon"),
        Resource(
            "subscriptions",
            "subscription",
            {
                "automatic_tax": _ignored,
                "collection_method": _eq("collection_method"),
                "current_period_end": _ignored,
                "current_period_start": _ignored,
                "customer": _eq("customer"),
                "customer_account": _eq("customer_account"),
                "plan": _subscription_price,
                "price": _subscription_price,
                "status": _subscription_status,
                "test_clock": _ignored,
            },
            default_filter=_subscription_default,
            default_filter_off="status",
        ),
        Resource(
            "invoices",
            "invoice",
            {
                "collection_method": _eq("collection_method"),
                "customer": _eq("customer"),
                "customer_account": _eq("customer_account"),
                "due_date": _ignored,
                "status": _enum_eq("status", _INVOICE_STATUSES),
                "subscription": _invoice_subscription,
            },
        ),
        Resource(
            "invoice_payments",
            "invoice_payment",
            {
                "invoice": _eq("invoice"),
                "payment": _invoice_payment_payment,
                "status": _eq("status"),
            },
        ),
        Resource(
            "charges",
            "charge",
            {
                "customer": _eq("customer"),
                "payment_intent": _eq("payment_intent"),
                "transfer_group": _eq("transfer_group"),
            },
        ),
        Resource(
            "refunds", "refund", {"charge": _eq("charge"), "payment_intent": _eq("payment_intent")}
        ),
        Resource(
            "credit_notes",
            "credit_note",
            {
                "customer": _eq("customer"),
                "customer_account": _eq("customer_account"),
                "invoice": _eq("invoice"),
            },
        ),
        Resource(
            "events",
            "event",
            {"delivery_success": _ignored, "type": _event_type, "types": _event_types},
        ),
        Resource(
            "balance_transactions",
            "balance_transaction",
            {
                "currency": _eq("currency"),
                "payout": _ignored,
                "source": _eq("source"),
                "type": _eq("type"),
            },
        ),
    ]
}


# (parent object type, permission, item noun) of each embedded sub-list endpoint.
_SUBLIST_ROUTES = {
    "invoices": ("invoice", "invoices", "line item"),
    "credit_notes": ("credit_note", "credit_notes", "credit note line item"),
}


def _list_json(data: list[bytes], has_more: bool, url: str) -> bytes:
    return b"".join(
        [
            b'{"object":"list","data":[',
            b",".join(data),
            b'],"has_more":',
            b"true" if has_more else b"false",
            b',"url":',
            json.dumps(url).encode(),
            b"}",
        ]
    )


def _paginate_items(
    items: list[dict[str, Any]], limit: int, after: str | None, before: str | None
) -> tuple[list[dict[str, Any]], bool]:
    """Pagination over an embedded list in its stored order; UnknownCursor for a bad cursor."""
    if after is not None or before is not None:
        cursor = after if after is not None else before
        pos = next((i for i, it in enumerate(items) if it.get("id") == cursor), None)
        if pos is None:
            raise UnknownCursor(cursor)
        if after is not None:
            rest = items[pos + 1 :]
            return rest[:limit], len(rest) > limit
        head = items[:pos]
        return head[max(0, len(head) - limit) :], len(head) > limit
    return items[:limit], len(items) > limit
