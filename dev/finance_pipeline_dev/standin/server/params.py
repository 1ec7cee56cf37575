"""Request parameters: Stripe's bracket-encoded query strings decoded, and the list/retrieve
parameters (limit, cursors, ``created``, expand) validated, failing with Stripe-shaped
``ApiError``s."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl


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
