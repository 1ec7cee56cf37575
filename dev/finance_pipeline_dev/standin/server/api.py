"""Stripe API request handling, shared by all handler threads: authentication and restricted-key
permissions, routing, the retrieve/list endpoints, expansion, and the request log."""

from __future__ import annotations

import contextlib
import json
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from finance_pipeline_dev.standin.faults import FaultInjector
from finance_pipeline_dev.standin.store import (
    EVENT_RETENTION_SECONDS,
    Store,
    UnknownCursor,
    redact_key,
)

from .listing import (
    _COMMON_LIST_PARAMS,
    _SUBLIST_ROUTES,
    RESOURCES,
    Predicate,
    Resource,
    _list_json,
    _paginate_items,
)
from .params import (
    ApiError,
    _check_params,
    _parse_created,
    _parse_cursors,
    _parse_expand,
    _parse_limit,
    _scalar,
)

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
