"""The stand-in's HTTP server: Stripe's read API (v1 GETs) plus a ``/_standin/`` control plane.

A threaded HTTP/1.1 keep-alive server from the standard library. Requests are authenticated with
the store's API keys, may be failed by the fault injector, and are recorded in a request log that
never holds a full API key. ``StandIn`` is the in-process handle; ``RemoteStandIn`` drives a
stand-in served by another process through the control plane.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import re
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from finance_pipeline_dev.standin import shapes
from finance_pipeline_dev.standin.faults import (
    Decision,
    FaultInjector,
    error_body,
    fault_response,
)
from finance_pipeline_dev.standin.store import (
    EVENT_RETENTION_SECONDS,
    Store,
    StoreError,
    UnknownCursor,
    redact_key,
)

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


class ApiError(Exception):
    """A Stripe-shaped error response."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type_: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type_


# ---------------------------------------------------------------------------- filters


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

#: Restricted-key permission names Stripe shows in 403 messages, per resource.
PERMISSION_NAMES: dict[str, str] = {
    "customers": "rak_customer_read",
    "products": "rak_product_read",
    "prices": "rak_price_read",
    "coupons": "rak_coupon_read",
    "subscriptions": "rak_subscription_read",
    "subscription_items": "rak_subscription_read",
    "invoices": "rak_invoice_read",
    "invoice_payments": "rak_invoice_read",
    "charges": "rak_charge_read",
    "refunds": "rak_refund_read",
    "credit_notes": "rak_credit_note_read",
    "events": "rak_event_read",
    "balance_transactions": "rak_balance_transaction_source_read",
    "account": "rak_account_read",
}

# (parent object type, permission, item noun) of each embedded sub-list endpoint.
_SUBLIST_ROUTES = {
    "invoices": ("invoice", "invoices", "line item"),
    "credit_notes": ("credit_note", "credit_notes", "credit note line item"),
}


def _scalar(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise ApiError(
            400, f"Invalid string: {value!r}", code="parameter_invalid_string", param=param
        )
    return value


def _string_list(value: Any, param: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ApiError(400, f"Invalid array: {param}", code="parameter_invalid_string", param=param)


_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SUB_RE = re.compile(r"\[([^\[\]]*)\]")


def parse_query(query: str) -> dict[str, Any]:
    """Decode Stripe's bracket encoding (``created[gte]=1``, ``expand[0]=x``) into dicts/lists."""
    params: dict[str, Any] = {}
    for raw_key, value in parse_qsl(query, keep_blank_values=True):
        m = _KEY_RE.match(raw_key)
        if m is None:
            params[raw_key] = value
            continue
        name, rest = m.groups()
        node: dict[str, Any] = params
        key = name
        for sub in _SUB_RE.findall(rest):
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
            key = sub if sub != "" else str(len(node))
        node[key] = value
    return {k: _listify(v) for k, v in params.items()}


def _listify(value: Any) -> Any:
    if isinstance(value, dict):
        conv = {k: _listify(v) for k, v in value.items()}
        if conv and all(k.isdigit() for k in conv):
            return [conv[k] for k in sorted(conv, key=int)]
        return conv
    return value


def _parse_limit(params: Mapping[str, Any]) -> int:
    raw = params.get("limit")
    if raw is None:
        return 10
    if not isinstance(raw, str) or not re.fullmatch(r"-?\d+", raw):
        raise ApiError(
            400, f"Invalid integer: {raw}", code="parameter_invalid_integer", param="limit"
        )
    limit = int(raw)
    if not 1 <= limit <= 100:
        raise ApiError(
            400,
            f"Invalid limit: must be between 1 and 100 (got {limit})",
            code="parameter_invalid_integer",
            param="limit",
        )
    return limit


def _parse_created(params: Mapping[str, Any]) -> dict[str, int] | None:
    raw = params.get("created")
    if raw is None:
        return None

    def ts(value: Any, name: str) -> int:
        if not isinstance(value, str) or not re.fullmatch(r"\d+", value):
            raise ApiError(
                400, f"Invalid timestamp: {value!r}", code="parameter_invalid_integer", param=name
            )
        return int(value)

    if isinstance(raw, str):
        value = ts(raw, "created")
        return {"gte": value, "lte": value}
    if isinstance(raw, Mapping):
        out: dict[str, int] = {}
        for op, value in raw.items():
            if op not in ("gt", "gte", "lt", "lte"):
                raise ApiError(
                    400,
                    f"Received unknown parameter: created[{op}]",
                    code="parameter_unknown",
                    param=f"created[{op}]",
                )
            out[op] = ts(value, f"created[{op}]")
        return out
    raise ApiError(400, "Invalid timestamp", code="parameter_invalid_integer", param="created")


def _parse_cursors(params: Mapping[str, Any]) -> tuple[str | None, str | None]:
    after, before = params.get("starting_after"), params.get("ending_before")
    if after is not None and before is not None:
        raise ApiError(
            400,
            "You may only specify one of these parameters: ending_before, starting_after.",
            code="parameter_invalid_string",
            param="ending_before",
        )
    if after is not None:
        after = _scalar(after, "starting_after")
    if before is not None:
        before = _scalar(before, "ending_before")
    return after or None, before or None


def _parse_expand(params: Mapping[str, Any]) -> list[str]:
    raw = params.get("expand")
    if raw is None:
        return []
    return _string_list(raw, "expand")


def _check_params(params: Mapping[str, Any], allowed: frozenset[str] | set[str]) -> None:
    for name in params:
        if name not in allowed:
            raise ApiError(
                400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name
            )


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


# ---------------------------------------------------------------------------- request handling


@dataclass
class _Auth:
    key: str
    key_account: str
    account: str
    permissions: frozenset[str] | None


class _Engine:
    """Everything a request needs: store, faults, request log. Shared by all handler threads."""

    def __init__(self, store: Store, faults: FaultInjector, log_limit: int) -> None:
        self.store = store
        self.faults = faults
        self.log: deque[dict[str, Any]] = deque(maxlen=log_limit)
        self.log_lock = threading.Lock()
        self.seq = 0

    def record(self, entry: dict[str, Any]) -> None:
        with self.log_lock:
            self.seq += 1
            entry["seq"] = self.seq
            self.log.append(entry)

    # ---------------------------------------------------------------- auth

    def authenticate(self, headers: Mapping[str, str]) -> _Auth:
        header = headers.get("Authorization") or ""
        key = ""
        if header.startswith("Bearer "):
            key = header[len("Bearer ") :].strip()
        elif header.startswith("Basic "):
            import base64

            with contextlib.suppress(ValueError):
                key = base64.b64decode(header[6:]).decode().split(":", 1)[0]
        if not key:
            raise ApiError(
                401,
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY'). See https://docs.stripe.com/api#authentication for details.",
            )
        info = self.store.authenticate(key)
        if info is None:
            raise ApiError(
                401, f"Invalid API Key provided: {redact_key(key)}", code="api_key_invalid"
            )
        account = info.account_id
        target = (headers.get("Stripe-Account") or "").strip()
        if target and target != account:
            acct = self.store.account_info(account)
            if (
                acct is None
                or target not in acct.connected_accounts
                or self.store.account_info(target) is None
            ):
                raise ApiError(
                    403,
                    f"The provided key '{redact_key(key)}' does not have access to account "
                    f"'{target}' (or that account does not exist). Application access may have "
                    "been revoked.",
                    code="account_invalid",
                )
            account = target
        return _Auth(key, info.account_id, account, info.permissions)

    def authorize(self, auth: _Auth, resource: str) -> None:
        if auth.permissions is None:
            return
        rak = PERMISSION_NAMES[resource]
        granted = auth.permissions
        if resource in granted or rak in granted or rak.replace("_read", "_write") in granted:
            return
        raise ApiError(
            403,
            f"The provided key '{redact_key(auth.key)}' does not have the required permissions "
            f"for this endpoint on account '{auth.account}'. Having the '{rak}' permission would "
            "allow this request to continue.",
        )

    # ---------------------------------------------------------------- routing

    def handle_api(self, method: str, path: str, params: dict[str, Any], auth: _Auth) -> bytes:
        parts = [unquote(p) for p in path.split("/")[2:]]
        if not path.startswith("/v1/") or not parts or "" in parts:
            raise self._unrecognized(method, path)
        head = parts[0]
        known = (
            (head == "account" and len(parts) == 1)
            or (head in RESOURCES and len(parts) <= 2)
            or (head == "subscription_items" and len(parts) <= 2)
            or (head in _SUBLIST_ROUTES and len(parts) == 3 and parts[2] == "lines")
        )
        if not known:
            raise self._unrecognized(method, path)
        if method != "GET":
            raise ApiError(
                405,
                f"The local Stripe stand-in is read-only: {method} {path} is not supported.",
                code="method_not_allowed",
            )
        if head == "account":
            self.authorize(auth, "account")
            _check_params(params, {"expand"})
            return self._json(self.store.account_object(auth.account))
        if head == "subscription_items":
            self.authorize(auth, "subscription_items")
            if len(parts) == 2:
                return self._retrieve_item(auth, parts[1], params)
            return self._list_subscription_items(auth, params)
        if head in _SUBLIST_ROUTES and len(parts) == 3:
            return self._list_lines(auth, head, parts[1], params)
        resource = RESOURCES[head]
        self.authorize(auth, resource.permission)
        if len(parts) == 2:
            return self._retrieve(auth, resource, parts[1], params)
        return self._list(auth, resource, params)

    @staticmethod
    def _unrecognized(method: str, path: str) -> ApiError:
        return ApiError(
            404,
            f"Unrecognized request URL ({method}: {path}). Please see https://docs.stripe.com "
            "or we can help at https://support.stripe.com/.",
        )

    # ---------------------------------------------------------------- endpoints

    def _event_cutoff(self) -> int:
        return self.store.now() - EVENT_RETENTION_SECONDS

    def _visible(self, obj: Mapping[str, Any] | None, object_type: str) -> bool:
        if obj is None or obj.get("object") != object_type:
            return False
        return not (object_type == "event" and int(obj.get("created") or 0) < self._event_cutoff())

    def _retrieve(
        self, auth: _Auth, resource: Resource, obj_id: str, params: dict[str, Any]
    ) -> bytes:
        _check_params(params, {"expand"})
        expand = _parse_expand(params)
        obj = self.store.lookup(auth.account, obj_id)
        if not self._visible(obj, resource.object_type):
            raise ApiError(
                404, f"No such {resource.noun}: '{obj_id}'", code="resource_missing", param="id"
            )
        assert obj is not None
        if expand and not obj.get("deleted"):
            return self._json(self._expand(auth.account, self.store.render(obj), expand))
        return self.store.rendered_json(auth.account, obj)

    def _list(self, auth: _Auth, resource: Resource, params: dict[str, Any]) -> bytes:
        _check_params(params, resource.list_params)
        limit = _parse_limit(params)
        after, before = _parse_cursors(params)
        created = _parse_created(params)
        expand = _parse_expand(params)
        preds: list[Predicate] = []
        for name, make in resource.filters.items():
            if name in params:
                pred = make(params[name])
                if pred is not None:
                    preds.append(pred)
        if resource.default_filter is not None and resource.default_filter_off not in params:
            preds.append(resource.default_filter)
        if resource.object_type == "event":
            created = dict(created or {})
            created["gte"] = max(created.get("gte", 0), self._event_cutoff())
        for cursor, param in ((after, "starting_after"), (before, "ending_before")):
            if cursor is not None and not self._visible(
                self.store.lookup(auth.account, cursor), resource.object_type
            ):
                raise ApiError(
                    404,
                    f"No such {resource.noun}: '{cursor}'",
                    code="resource_missing",
                    param=param,
                )
        predicate: Predicate | None
        if not preds:
            predicate = None
        elif len(preds) == 1:
            predicate = preds[0]
        else:
            predicate = lambda obj: all(p(obj) for p in preds)  # noqa: E731
        try:
            page, has_more = self.store.page(
                auth.account,
                resource.object_type,
                limit=limit,
                starting_after=after,
                ending_before=before,
                created=created,
                predicate=predicate,
            )
        except UnknownCursor as exc:
            param = "starting_after" if after is not None else "ending_before"
            raise ApiError(
                404,
                f"No such {resource.noun}: '{exc.args[0]}'",
                code="resource_missing",
                param=param,
            ) from None
        return self._render_list(auth, page, has_more, f"/v1/{resource.path}", expand)

    def _render_list(
        self,
        auth: _Auth,
        page: list[dict[str, Any]],
        has_more: bool,
        url: str,
        expand: list[str],
    ) -> bytes:
        item_expand = [e[len("data.") :] for e in expand if e.startswith("data.")]
        if item_expand:
            data = [
                self._dumps(self._expand(auth.account, self.store.render(o), item_expand))
                for o in page
            ]
        else:
            data = [self.store.rendered_json(auth.account, o) for o in page]
        return _list_json(data, has_more, url)

    def _retrieve_item(self, auth: _Auth, item_id: str, params: dict[str, Any]) -> bytes:
        _check_params(params, {"expand"})
        item = self.store.lookup(auth.account, item_id)
        if item is None or item.get("object") != "subscription_item":
            raise ApiError(
                404, f"No such subscription item: '{item_id}'", code="resource_missing", param="id"
            )
        expand = _parse_expand(params)
        return self._json(self._expand(auth.account, dict(item), expand) if expand else item)

    def _list_subscription_items(self, auth: _Auth, params: dict[str, Any]) -> bytes:
        _check_params(params, _COMMON_LIST_PARAMS | {"subscription"})
        sub_id = params.get("subscription")
        if sub_id is None:
            raise ApiError(
                400,
                "Missing required param: subscription.",
                code="parameter_missing",
                param="subscription",
            )
        sub_id = _scalar(sub_id, "subscription")
        items = self.store.sublist(auth.account, sub_id, "subscription")
        if items is None:
            raise ApiError(
                404,
                f"No such subscription: '{sub_id}'",
                code="resource_missing",
                param="subscription",
            )
        return self._sublist_page(
            auth, items, params, "/v1/subscription_items", "subscription item"
        )

    def _list_lines(self, auth: _Auth, head: str, parent_id: str, params: dict[str, Any]) -> bytes:
        parent_type, permission, noun = _SUBLIST_ROUTES[head]
        self.authorize(auth, permission)
        _check_params(params, _COMMON_LIST_PARAMS)
        items = self.store.sublist(auth.account, parent_id, parent_type)
        if items is None:
            raise ApiError(
                404,
                f"No such {parent_type.replace('_', ' ')}: '{parent_id}'",
                code="resource_missing",
                param="id",
            )
        return self._sublist_page(auth, items, params, f"/v1/{head}/{parent_id}/lines", noun)

    def _sublist_page(
        self,
        auth: _Auth,
        items: list[dict[str, Any]],
        params: dict[str, Any],
        url: str,
        noun: str,
    ) -> bytes:
        limit = _parse_limit(params)
        after, before = _parse_cursors(params)
        expand = _parse_expand(params)
        try:
            page, has_more = _paginate_items(items, limit, after, before)
        except UnknownCursor as exc:
            param = "starting_after" if after is not None else "ending_before"
            raise ApiError(
                404, f"No such {noun}: '{exc.args[0]}'", code="resource_missing", param=param
            ) from None
        item_expand = [e[len("data.") :] for e in expand if e.startswith("data.")]
        data = [
            self._dumps(self._expand(auth.account, it, item_expand) if item_expand else it)
            for it in page
        ]
        return _list_json(data, has_more, url)

    # ---------------------------------------------------------------- expansion

    def _expand(self, account: str, node: Any, paths: list[str]) -> Any:
        for path in paths:
            node = self._expand_path(account, node, path.split("."), 0)
        return node

    def _expand_path(self, account: str, node: Any, parts: list[str], depth: int) -> Any:
        if not parts or depth > 8:
            return node
        if isinstance(node, list):
            return [self._expand_path(account, x, parts, depth + 1) for x in node]
        if not isinstance(node, dict):
            return node
        if node.get("object") == "list" and parts[0] == "data" and "data" in node:
            return {
                **node,
                "data": [self._expand_path(account, x, parts[1:], depth + 1) for x in node["data"]],
            }
        key = parts[0]
        if key not in node:
            return node
        return {**node, key: self._expand_value(account, node[key], parts[1:], depth + 1)}

    def _expand_value(self, account: str, value: Any, rest: list[str], depth: int) -> Any:
        if isinstance(value, list):
            return [self._expand_value(account, v, rest, depth + 1) for v in value]
        if isinstance(value, str):
            target = self.store.lookup(account, value)
            if target is None or (
                target.get("object") == "event"
                and int(target.get("created") or 0) < self._event_cutoff()
            ):
                return value
            value = self.store.render(target)
        return self._expand_path(account, value, rest, depth) if rest else value

    # ---------------------------------------------------------------- helpers

    @staticmethod
    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode("ascii")

    def _json(self, obj: Any) -> bytes:
        return self._dumps(obj)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 120
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return  # the request log replaces stderr access logs

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.track(self.connection, False)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        path = split.path
        body = self._read_body()
        if path.startswith("/_standin/") or path == "/_standin":
            self._control(method, path, split.query, body)
            return
        self._api(method, path, split.query)

    # ---------------------------------------------------------------- Stripe API

    def _api(self, method: str, path: str, query: str) -> None:
        engine = self.server.engine
        started = time.perf_counter()
        request_id = "req_" + secrets.token_hex(7)
        entry: dict[str, Any] = {
            "time": time.time(),
            "clock": engine.store.now(),
            "method": method,
            "path": path,
            "query": unquote(query),
            "account": None,
            "key_prefix": None,
            "status": None,
            "fault": None,
            "request_id": request_id,
            "stripe_version": self.headers.get("Stripe-Version"),
            "stripe_account": self.headers.get("Stripe-Account"),
            "idempotency_key": self.headers.get("Idempotency-Key"),
        }
        key = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        if key:
            entry["key_prefix"] = redact_key(key)
        headers = {
            "Request-Id": request_id,
            "Stripe-Version": self.headers.get("Stripe-Version") or shapes.API_VERSION,
        }
        decision = engine.faults.decide(path) if path.startswith("/v1") else Decision()
        entry["fault"] = decision.kind
        if decision.delay_ms:
            time.sleep(decision.delay_ms / 1000.0)
        if decision.kind == "drop":
            self._log(entry, started)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if decision.kind not in (None, "slow"):
            status, extra, payload = fault_response(decision, request_id)
            headers.update(extra)
        else:
            status, payload = self._serve_api(method, path, query, request_id, entry)
        entry["status"] = status
        # logged before the response goes out, so a client that got it also finds it logged
        self._log(entry, started)
        try:
            self._send(status, payload, headers)
        except OSError:  # the client gave up (e.g. its timeout hit during a slow fault)
            with engine.log_lock:
                entry["client_gone"] = True
            self.close_connection = True

    def _log(self, entry: dict[str, Any], started: float) -> None:
        entry["duration_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
        self.server.engine.record(entry)

    def _serve_api(
        self, method: str, path: str, query: str, request_id: str, entry: dict[str, Any]
    ) -> tuple[int, bytes]:
        engine = self.server.engine
        try:
            auth = engine.authenticate(self.headers)
            entry["account"] = auth.account
            return 200, engine.handle_api(method, path, parse_query(query), auth)
        except ApiError as err:
            return err.status, error_body(
                err.status,
                err.type,
                err.message,
                code=err.code,
                param=err.param,
                request_id=request_id,
            )
        except StoreError as err:
            return 400, error_body(400, "invalid_request_error", str(err), request_id=request_id)
        except Exception as err:  # a stand-in bug must look like Stripe's 500, not a hang
            return 500, error_body(
                500,
                "api_error",
                f"stand-in internal error: {type(err).__name__}: {err}",
                request_id=request_id,
            )

    # ---------------------------------------------------------------- control plane

    def _control(self, method: str, path: str, query: str, body: bytes) -> None:
        standin = self.server.standin
        try:
            payload = json.loads(body) if body else {}
            result = _control_dispatch(standin, method, path, parse_query(query), payload)
            self._send(200, json.dumps(result, separators=(",", ":")).encode())
        except LookupError as err:
            self._send(404, _control_error(str(err)))
        except (ValueError, TypeError, StoreError) as err:
            self._send(400, _control_error(str(err)))


def _control_error(message: str) -> bytes:
    return json.dumps({"error": {"type": "standin_error", "message": message}}).encode()


def _control_dispatch(
    standin: StandIn, method: str, path: str, query: dict[str, Any], body: Any
) -> Any:
    route = path.rstrip("/").removeprefix("/_standin")
    if route == "/health":
        return {"ok": True, "now": standin.now()}
    if route == "/clock":
        if method == "POST":
            if "advance" in body:
                standin.advance_clock(int(body["advance"]))
            elif "now" in body:
                standin.set_clock(None if body["now"] is None else int(body["now"]))
            else:
                raise ValueError("POST /_standin/clock needs 'now' or 'advance'")
        return {"now": standin.now(), "frozen": standin.store.clock.frozen}
    if route == "/time_travel":
        if method == "POST":
            if "enabled" not in body:
                raise ValueError("POST /_standin/time_travel needs 'enabled'")
            standin.set_time_travel(bool(body["enabled"]))
        return {"enabled": standin.store.time_travel, "now": standin.now()}
    if route == "/faults":
        if method == "POST":
            standin.configure_faults(**body)
        return standin.faults.snapshot()
    if route == "/faults/fail_next" and method == "POST":
        standin.fail_next(
            int(body.get("n", 1)),
            str(body["kind"]),
            delay_ms=int(body.get("delay_ms", 0)),
            path_prefix=body.get("path_prefix"),
        )
        return standin.faults.snapshot()
    if route == "/faults/reset" and method == "POST":
        standin.reset_faults()
        return standin.faults.snapshot()
    if route == "/requests":
        if method == "DELETE":
            standin.clear_requests()
            return {"requests": []}
        return {"requests": standin.requests()}
    if route == "/requests/clear" and method == "POST":
        standin.clear_requests()
        return {"requests": []}
    if route == "/load" and method == "POST":
        standin.load(body)
        return {"ok": True}
    if route == "/dump":
        return standin.dump()
    if route == "/objects" and method == "POST":
        return standin.create(str(body["account"]), body["object"], body.get("event_type"))
    if route.startswith("/objects/") and method == "POST":
        return standin.update(
            str(body["account"]), route[len("/objects/") :], body["changes"], body.get("event_type")
        )
    if route.startswith("/objects/") and method == "DELETE":
        return standin.delete(
            str(query.get("account") or body.get("account")),
            route[len("/objects/") :],
            query.get("event_type") or body.get("event_type"),
        )
    raise LookupError(f"unknown control endpoint {method} {path}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], engine: _Engine, standin: StandIn) -> None:
        self.engine = engine
        self.standin = standin
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # broken client connections are normal under fault injection; stay quiet

    def track(self, conn: socket.socket, alive: bool) -> None:
        with self._conns_lock:
            if alive:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def close_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
            self._conns.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


# ---------------------------------------------------------------------------- handles


class StandIn:
    """An in-process stand-in: ``StandIn(store).start() -> url``; also a context manager.

    ``store`` may be a Store, a fixture dict or a path to a fixture JSON file (None: empty).
    Every control-plane operation is a method here (clock, faults, request log, load/dump,
    create/update objects with events).
    """

    def __init__(
        self,
        store: Store | Mapping[str, Any] | str | Path | None = None,
        *,
        seed: int = 0,
        log_limit: int = 100_000,
    ) -> None:
        if isinstance(store, Store):
            self.store = store
        elif store is None:
            self.store = Store(seed=seed)
        else:
            self.store = Store.load(store, seed=seed)
        self.faults = FaultInjector(seed)
        self._engine = _Engine(self.store, self.faults, log_limit)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve in a background thread; returns the base URL (``http://127.0.0.1:PORT``)."""
        if self._server is not None:
            return self.url
        self._server = _Server((host, port), self._engine, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"stripe-standin:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving and close open keep-alive connections."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> StandIn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound TCP port (after ``start``)."""
        if self._server is None:
            raise RuntimeError("stand-in is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL to pass as ``base_addresses={"api": url}``."""
        if self._server is None:
            raise RuntimeError("stand-in is not running")
        host = self._server.server_address[0]
        return f"http://{host}:{self.port}"

    def client(
        self,
        api_key: str,
        *,
        stripe_account: str | None = None,
        max_network_retries: int = 0,
        timeout: float = 30.0,
    ) -> Any:
        """A real ``stripe.StripeClient`` pointed at this stand-in (pinned API version)."""
        import stripe

        return stripe.StripeClient(
            api_key,
            stripe_account=stripe_account,
            stripe_version=shapes.API_VERSION,
            base_addresses={"api": self.url},
            max_network_retries=max_network_retries,
            http_client=stripe.RequestsClient(timeout=timeout),
        )

    # ---------------------------------------------------------------- control plane

    def now(self) -> int:
        """The stand-in clock (unix seconds)."""
        return self.store.now()

    def set_clock(self, now: int | None) -> None:
        """Freeze the clock at ``now`` (None: follow real time)."""
        self.store.clock.set(now)

    def advance_clock(self, seconds: int) -> int:
        """Move the clock forward; returns the new now."""
        return self.store.clock.advance(seconds)

    def set_time_travel(self, enabled: bool) -> None:
        """Serve the account as of the clock (True) or its stored final state (False)."""
        self.store.set_time_travel(enabled)

    def configure_faults(self, **settings: Any) -> dict[str, Any]:
        """Update fault settings (see ``faults.FaultConfig``); returns the full snapshot."""
        self.faults.configure(**settings)
        return self.faults.snapshot()

    def fail_next(
        self, n: int, kind: str, *, delay_ms: int = 0, path_prefix: str | None = None
    ) -> None:
        """Fail the next ``n`` API requests (optionally under ``path_prefix``) with ``kind``."""
        self.faults.fail_next(n, kind, delay_ms=delay_ms, path_prefix=path_prefix)

    def reset_faults(self) -> None:
        """Turn all faults and the rate limit off."""
        self.faults.reset()

    def requests(self) -> list[dict[str, Any]]:
        """The request log, oldest first (copies; keys appear only redacted)."""
        with self._engine.log_lock:
            return [dict(e) for e in self._engine.log]

    def clear_requests(self) -> None:
        """Empty the request log."""
        with self._engine.log_lock:
            self._engine.log.clear()

    def load(self, doc_or_path: Mapping[str, Any] | str | Path) -> None:
        """Replace the whole state with a fixture document."""
        self.store.restore(doc_or_path)

    def dump(self) -> dict[str, Any]:
        """The whole state as a fixture document."""
        return self.store.dump()

    def create(
        self, account: str, obj: Mapping[str, Any], event_type: str | None = None
    ) -> dict[str, Any]:
        """Add an object (optionally emitting ``event_type``); see ``Store.create``."""
        return self.store.create(account, obj, event_type)

    def update(
        self, account: str, object_id: str, changes: Mapping[str, Any], event_type: str | None
    ) -> dict[str, Any] | None:
        """Change an object and emit ``event_type`` (with previous_attributes); see Store.update."""
        return self.store.update(account, object_id, changes, event_type)

    def delete(
        self, account: str, object_id: str, event_type: str | None = None
    ) -> dict[str, Any] | None:
        """Delete an object (retrieve then shows ``deleted: true``); see ``Store.delete``."""
        return self.store.delete(account, object_id, event_type)


class RemoteStandIn:
    """Drives a stand-in served elsewhere (e.g. by ``serve.py``) through ``/_standin/``."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, route: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.url}/_standin{route}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")
            raise RuntimeError(f"stand-in control call {method} {route} failed: {detail}") from err

    def now(self) -> int:
        """The remote clock."""
        return int(self._call("GET", "/clock")["now"])

    def set_clock(self, now: int | None) -> None:
        """Freeze the remote clock at ``now`` (None: real time)."""
        self._call("POST", "/clock", {"now": now})

    def advance_clock(self, seconds: int) -> int:
        """Advance the remote clock; returns the new now."""
        return int(self._call("POST", "/clock", {"advance": seconds})["now"])

    def set_time_travel(self, enabled: bool) -> None:
        """Serve the remote account as of its clock (True) or its final state (False)."""
        self._call("POST", "/time_travel", {"enabled": enabled})

    def time_travel(self) -> bool:
        """Whether the remote stand-in serves the account as of its clock."""
        return bool(self._call("GET", "/time_travel")["enabled"])

    def configure_faults(self, **settings: Any) -> dict[str, Any]:
        """Update remote fault settings."""
        return dict(self._call("POST", "/faults", settings))

    def fail_next(
        self, n: int, kind: str, *, delay_ms: int = 0, path_prefix: str | None = None
    ) -> None:
        """Fail the next ``n`` remote API requests with ``kind``."""
        self._call(
            "POST",
            "/faults/fail_next",
            {"n": n, "kind": kind, "delay_ms": delay_ms, "path_prefix": path_prefix},
        )

    def reset_faults(self) -> None:
        """Turn all remote faults off."""
        self._call("POST", "/faults/reset", {})

    def requests(self) -> list[dict[str, Any]]:
        """The remote request log."""
        return list(self._call("GET", "/requests")["requests"])

    def clear_requests(self) -> None:
        """Empty the remote request log."""
        self._call("DELETE", "/requests")

    def load(self, doc: Mapping[str, Any]) -> None:
        """Replace the remote state with a fixture document."""
        self._call("POST", "/load", dict(doc))

    def dump(self) -> dict[str, Any]:
        """The remote state as a fixture document."""
        return dict(self._call("GET", "/dump"))

    def create(
        self, account: str, obj: Mapping[str, Any], event_type: str | None = None
    ) -> dict[str, Any]:
        """Add an object remotely (optionally with an event)."""
        return dict(
            self._call(
                "POST", "/objects", {"account": account, "object": obj, "event_type": event_type}
            )
        )

    def update(
        self, account: str, object_id: str, changes: Mapping[str, Any], event_type: str | None
    ) -> dict[str, Any] | None:
        """Change a remote object and emit ``event_type``; returns the event."""
        return self._call(
            "POST",
            f"/objects/{object_id}",
            {"account": account, "changes": dict(changes), "event_type": event_type},
        )
