"""Every API operation that takes a body, fed bad bodies over HTTP: larger than the limit, not
JSON, not UTF-8, malformed, numbers beyond int64, and ingest items with invalid currencies, dates
and amounts. Each gets a 4xx in its family's error envelope (with the request id), never a 5xx,
and nothing is stored; a valid ingest batch is stored exactly, every item once."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from finance_pipeline.api.families import dialect_for
from finance_pipeline_tests.api.conftest import ApiServer
from finance_pipeline_tests.fuzz.api_server import generated_traffic_server, pro_owner
from finance_pipeline_tests.fuzz.badfiles import bad_currencies, bad_dates
from finance_pipeline_tests.fuzz.cases import fuzz_settings, tally
from finance_pipeline_tests.fuzz.stored import stored_counts

LIMIT = 16 * 1024
INT64 = 2**63
JSON = "application/json"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A server for generated traffic with a small body limit."""
    with generated_traffic_server(
        tmp_path_factory.mktemp("fuzz_api"), api_max_body_bytes=LIMIT
    ) as server:
        yield server


@pytest.fixture(scope="module")
def owner(server: ApiServer) -> tuple[dict[str, str], str]:
    """An owner's headers (pro tier, naming their workspace) and the workspace id."""
    return pro_owner(server, "Fuzz", 10_000_00)


@pytest.fixture(scope="module")
def spec(server: ApiServer) -> dict[str, Any]:
    """The server's OpenAPI document."""
    return server.app.openapi()


def body_operations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """(method, path template) of every operation with a request body."""
    return sorted(
        (m.upper(), p)
        for p, ops in spec["paths"].items()
        for m, op in ops.items()
        if "requestBody" in op
    )


def fill(template: str, ws: str) -> str:
    """A path of the template: workspace parameters name the owner's workspace."""
    path = template
    for name in ("{id}", "{workspace_id}", "{id_or_slug}"):
        path = path.replace(name, ws)
    return path.replace("{user_id}", "usr_nobody")


def refused(server: ApiServer, path: str, r: httpx.Response, statuses: Collection[int]) -> str:
    """The response is one of these 4xx statuses in the family's envelope; its label."""
    assert r.status_code in statuses, (path, r.status_code, r.text[:300])
    body = r.json()
    dialect_for(server.app, path).model.model_validate(body)
    assert body["error"]["request_id"] == r.headers["x-request-id"]
    assert body["error"]["message"]
    return f"{r.status_code} {body['error']['code']}"


def send(
    server: ApiServer,
    headers: dict[str, str],
    method: str,
    path: str,
    content: bytes | Iterator[bytes],
    content_type: str | None = JSON,
) -> httpx.Response:
    h = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    if content_type is not None:
        h["Content-Type"] = content_type
    return server.client.request(method, path, content=content, headers=h)


@pytest.fixture(scope="module")
def ops(spec: dict[str, Any]) -> list[tuple[str, str]]:
    found = body_operations(spec)
    assert len(found) >= 20
    return found


def _nothing_stored(server: ApiServer, before: dict[str, int]) -> None:
    after = stored_counts(server.wh)
    assert after == before, {t: (before.get(t), n) for t, n in after.items() if before.get(t) != n}


def refused_storing_nothing(
    server: ApiServer,
    headers: dict[str, str],
    method: str,
    path: str,
    content: bytes | Iterator[bytes],
    statuses: Collection[int],
    content_type: str | None = JSON,
) -> tuple[httpx.Response, str]:
    """Send the body: it is refused with one of `statuses` in the family's envelope and nothing
    is stored. The response and its label."""
    before = stored_counts(server.wh)
    r = send(server, headers, method, path, content, content_type)
    label = refused(server, path, r, statuses)
    _nothing_stored(server, before)
    return r, label


# --------------------------------------------------------------------------------------------------
# Bad bodies sent to every operation with a body
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadBody:
    """One way a body is bad: drawn for any operation, refused with one of `statuses`, counted
    under `target`. `draw` gives the content, its Content-Type and a note added to the label."""

    target: str
    statuses: frozenset[int]
    draw: Callable[[st.DataObject], tuple[bytes | Iterator[bytes], str | None, str]]


def _over_the_limit(data: st.DataObject) -> tuple[bytes | Iterator[bytes], str | None, str]:
    size = data.draw(st.integers(LIMIT + 1, 4 * LIMIT), label="size")
    chunked = data.draw(st.booleans(), label="chunked")
    body = b'{"name": "' + b"x" * (size - 12) + b'"}'
    if chunked:
        return iter([body[i : i + 4096] for i in range(0, len(body), 4096)]), JSON, " (chunked)"
    return body, JSON, ""


CONTENT_TYPES = st.sampled_from(
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/csv",
        "application/xml",
        "application/octet-stream",
        "application/json; charset=latin-1",
        "application/json; charset=utf-16",
    ]
)


def _wrong_content_type(data: st.DataObject) -> tuple[bytes, str | None, str]:
    return b'{"name": "x"}', data.draw(CONTENT_TYPES, label="content type"), ""


def _not_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


malformed = st.one_of(
    st.sampled_from(['{"name": ', "{", "[", '{"a":1,}', "{'a': 1}", '{"a": tru}', "}", "nul"]),
    st.text(min_size=1, max_size=60).filter(lambda t: t.strip() != "" and _not_json(t)),
)


def _malformed_json(data: st.DataObject) -> tuple[bytes, str | None, str]:
    return data.draw(malformed, label="body").encode(), JSON, ""


def _not_utf8(data: st.DataObject) -> tuple[bytes, str | None, str]:
    text = json.dumps({"name": data.draw(st.text(min_size=1, max_size=20), label="name") + "é"})
    text = text if data.draw(st.booleans(), label="raw") else text.replace("\\u00e9", "é")
    codec = data.draw(
        st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "utf-32", "latin-1", "cp1252"]),
        label="encoding",
    )
    raw = text.encode(codec, errors="replace")
    if codec in ("latin-1", "cp1252"):
        raw += b"\xe9"  # at least one byte that is not UTF-8
    return raw, JSON, f" ({codec})"


BAD_BODIES = [
    BadBody("API: body over the limit", frozenset({413}), _over_the_limit),
    BadBody("API: wrong Content-Type", frozenset({415}), _wrong_content_type),
    # 400 invalid_json (validation_error in the margins API); the webhook checks its signature
    # first (400 invalid_signature); an unknown member is 404 before the body is read.
    BadBody("API: malformed JSON", frozenset({400, 404}), _malformed_json),
    BadBody("API: body not UTF-8", frozenset({400}), _not_utf8),
]


@pytest.mark.parametrize("bad", BAD_BODIES, ids=lambda b: b.target.removeprefix("API: "))
@fuzz_settings(60, shrink=False)
@given(data=st.data())
def test_bad_bodies_are_refused_storing_nothing(
    server: ApiServer,
    owner: tuple[dict[str, str], str],
    ops: list,
    bad: BadBody,
    data: st.DataObject,
) -> None:
    """Over the limit 413, not JSON 415, malformed or not UTF-8 400, on any operation."""
    headers, ws = owner
    method, template = data.draw(st.sampled_from(ops), label="operation")
    content, content_type, note = bad.draw(data)
    path = fill(template, ws)
    _, label = refused_storing_nothing(
        server, headers, method, path, content, bad.statuses, content_type
    )
    tally(bad.target, label + note)


# --------------------------------------------------------------------------------------------------
# Numbers beyond int64 in every numeric field of every body
# --------------------------------------------------------------------------------------------------


def _numeric_fields(spec: dict[str, Any], schema: dict[str, Any], depth: int = 0) -> list[list]:
    """Paths ([key], [key, 0, key]) of integer/number properties of a body schema."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    for variant in schema.get("anyOf", []) + schema.get("allOf", []):
        if variant.get("type") in ("object", "array") or "$ref" in variant:
            return _numeric_fields(spec, variant, depth)
    found: list[list] = []
    if depth > 3:
        return found
    for key, prop in schema.get("properties", {}).items():
        types = {prop.get("type")} | {v.get("type") for v in prop.get("anyOf", [])}
        if types & {"integer", "number"}:
            found.append([key])
        items = prop.get("items")
        if prop.get("type") == "array" and isinstance(items, dict):
            found += [[key, 0, *sub] for sub in _numeric_fields(spec, items, depth + 1)]
        elif "$ref" in prop or prop.get("type") == "object":
            found += [[key, *sub] for sub in _numeric_fields(spec, prop, depth + 1)]
        else:
            for variant in prop.get("anyOf", []):
                if "$ref" in variant:
                    found += [[key, *sub] for sub in _numeric_fields(spec, variant, depth + 1)]
    return found


def _put(base: Any, path: list, value: object) -> Any:
    """`base` (a valid body, or None) with the value at `path`, creating what is missing."""
    if not path:
        return value
    head, *rest = path
    if isinstance(head, int):
        items = list(base) if isinstance(base, list) and base else [None]
        items[0] = _put(items[0], rest, value)
        return items
    out = dict(base) if isinstance(base, dict) else {}
    out[head] = _put(out.get(head), rest, value)
    return out


FORECAST = {
    "horizon_months": 12,
    "assumptions": {"mrr_growth_pct": 5, "monthly_logo_churn_pct": 2, "gross_margin_pct": 80},
}


def valid_bodies(ws: str, forecast_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    """A body each numeric operation accepts, so that the huge number is what gets judged."""
    item = {"amount_cents": 1000, "currency": "USD", "occurred_at": "2026-01-15"}
    return {
        ("POST", "/v1/workspaces"): {"name": "Fuzz"},
        ("PATCH", "/v1/workspaces/{id}"): {"name": "Fuzz"},
        ("POST", "/v1/workspaces/{id}/ingest/expenses"): {
            "expenses": [{**item, "subtype": "one_time_expense"}]
        },
        ("POST", "/v1/workspaces/{id}/ingest/revenue"): {
            "revenue": [{**item, "subtype": "one_time"}]
        },
        ("POST", "/v1/workspaces/{id}/forecasts"): FORECAST,
        ("POST", "/v1/workspaces/{id}/scenarios"): {
            "baseline_forecast_id": forecast_id,
            "delta": {"type": "hire", "monthly_cost_cents": 100, "start_month": "2026-06"},
        },
        ("POST", "/api/v1/products/{id_or_slug}/revenue"): {
            "amount": 10,
            "type": "other",
            "date": "2026-01-15",
        },
        ("POST", "/api/v1/products/{id_or_slug}/costs"): {
            "name": "Fuzz",
            "amount": 10,
            "category": "TOOLS",
            "date": "2026-01-15",
        },
    }


@pytest.fixture(scope="module")
def forecast_id(server: ApiServer, owner: tuple[dict[str, str], str]) -> str:
    """A saved forecast of the owner's workspace, for scenario bodies."""
    headers, ws = owner
    r = server.client.post(f"/v1/workspaces/{ws}/forecasts", json=FORECAST, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.fixture(scope="module")
def numeric_targets(spec: dict[str, Any], ops: list) -> list[tuple[str, str, list]]:
    targets = []
    for method, template in ops:
        content = spec["paths"][template][method.lower()]["requestBody"]["content"]
        schema = content["application/json"]["schema"]
        targets += [(method, template, p) for p in _numeric_fields(spec, schema)]
    assert len(targets) >= 8, targets
    return targets


huge = st.one_of(
    st.integers(min_value=INT64, max_value=10**40),
    st.integers(max_value=-INT64 - 1, min_value=-(10**40)),
    st.sampled_from([INT64, INT64 - 1, -INT64, 2**64, 10**400]),
)


@fuzz_settings(60, shrink=False)
@given(data=st.data())
def test_numbers_beyond_int64_are_a_4xx(
    server: ApiServer,
    owner: tuple[dict[str, str], str],
    numeric_targets: list,
    forecast_id: str,
    data: st.DataObject,
) -> None:
    headers, ws = owner
    method, template, field = data.draw(st.sampled_from(numeric_targets), label="field")
    value = data.draw(huge, label="value")
    path = fill(template, ws)
    base = valid_bodies(ws, forecast_id).get((method, template))
    if template.endswith("/scenarios"):
        # the delta type that reads this field (a hire ignores pct)
        kinds = {"pct": "price_change", "delta_pp": "churn_change", "monthly_cost_cents": "hire"}
        base = {**base, "delta": {"type": kinds[field[-1]]}}  # type: ignore[dict-item]
        if field[-1] == "monthly_cost_cents":
            base["delta"]["start_month"] = "2026-06"
    body = json.dumps(_put(base, field, value)).encode()
    r, label = refused_storing_nothing(server, headers, method, path, body, {400, 422})
    # the body is otherwise valid: the error is about the huge number
    err = r.json()["error"]
    assert str(field[-1]) in f"{err['param']} {err['message']}", (field, err)
    tally("API: numbers beyond int64 (every numeric body field)", label)


# --------------------------------------------------------------------------------------------------
# Ingest batches: valid items stored exactly; one bad item refuses the whole batch
# --------------------------------------------------------------------------------------------------

INGESTS = {
    # path suffix -> (kind, table, list key or None for one record per request)
    "v1 expenses": ("/v1/workspaces/{ws}/ingest/expenses", "raw.expense_events", "expenses"),
    "v1 revenue": ("/v1/workspaces/{ws}/ingest/revenue", "raw.manual_revenue", "revenue"),
    "products costs": ("/api/v1/products/{ws}/costs", "raw.cost_records", None),
    "products revenue": ("/api/v1/products/{ws}/revenue", "raw.manual_revenue", None),
}
days = st.dates(min_value=dt.date(2020, 1, 1), max_value=dt.date(2026, 6, 30)).map(
    lambda d: d.isoformat()
)
cents = st.integers(min_value=1, max_value=10**11)


def _item(target: str, draw: st.DrawFn) -> dict[str, Any]:
    currency = draw(st.sampled_from(["USD", "eur", "GBP", "chf"]))
    uid = uuid.uuid4().hex
    if target == "v1 expenses":
        return {
            "subtype": draw(st.sampled_from(["recurring_expense", "one_time_expense"])),
            "amount_cents": draw(cents),
            "currency": currency,
            "occurred_at": draw(days),
            "external_id": f"e-{uid}",
        }
    if target == "v1 revenue":
        return {
            "subtype": draw(st.sampled_from(["recurring", "one_time"])),
            "amount_cents": draw(cents),
            "currency": currency,
            "occurred_at": draw(days),
            "external_id": f"r-{uid}",
        }
    amount = draw(cents) // 100 + 1  # the products API takes JSON numbers of whole units
    if target == "products costs":
        return {
            "id": f"c-{uid}",
            "name": "Fuzz",
            "amount": amount,
            "currency": currency,
            "category": draw(st.sampled_from(["TOOLS", "OTHER", "INFRASTRUCTURE"])),
            "date": draw(days),
        }
    return {
        "id": f"p-{uid}",
        "amount": amount,
        "currency": currency,
        "type": draw(st.sampled_from(["one_time", "other", "enterprise"])),
        "date": draw(days),
    }


def _amount_key(target: str) -> str:
    return "amount_cents" if target.startswith("v1") else "amount"


def _date_key(target: str) -> str:
    return "occurred_at" if target.startswith("v1") else "date"


BAD_ITEM = (
    "currency",
    "date",
    "amount beyond int64",
    "amount float",
    "amount NaN",
    "amount 1e400",
    "amount zero or negative",
    "unknown field",
)


def _spoil(target: str, item: dict[str, Any], how: str, draw: st.DrawFn) -> tuple[dict, str]:
    """The item with one bad value, and the raw JSON token to splice in (for NaN, 1e400)."""
    item = dict(item)
    if how == "currency":
        item["currency"] = draw(bad_currencies.filter(lambda c: c.strip() != ""))
    elif how == "date":
        item[_date_key(target)] = draw(bad_dates)
    elif how == "amount beyond int64":
        item[_amount_key(target)] = draw(huge)
    elif how == "amount float":
        item[_amount_key(target)] = draw(
            st.floats(allow_nan=False, allow_infinity=False).filter(
                lambda f: not f.is_integer() and f > 0
            )
            if target.startswith("v1")
            # finer than the minor unit of every drawn currency (2 decimals: 0.1 is 10 cents,
            # accepted), or too large
            else st.sampled_from([0.001, 12.345, 1e-9, 1e300])
        )
    elif how in ("amount NaN", "amount 1e400"):
        item[_amount_key(target)] = "__RAW__"
    elif how == "amount zero or negative":
        item[_amount_key(target)] = draw(st.integers(max_value=0))
    else:
        item["colour"] = "blue"
    return item, {"amount NaN": "NaN", "amount 1e400": "1e400"}.get(how, "")


@fuzz_settings(80, shrink=False)
@given(data=st.data())
def test_ingest_batches_are_stored_exactly_or_refused_whole(
    server: ApiServer, owner: tuple[dict[str, str], str], data: st.DataObject
) -> None:
    headers, ws = owner
    target = data.draw(st.sampled_from(sorted(INGESTS)), label="target")
    template, table, key = INGESTS[target]
    path = template.format(ws=ws)
    size = data.draw(st.integers(1, 6), label="items") if key else 1
    items = [_item(target, data.draw) for _ in range(size)]
    how = data.draw(st.none() | st.sampled_from(BAD_ITEM), label="bad")
    raw = ""
    if how is not None:
        at = data.draw(st.integers(0, size - 1), label="bad index")
        items[at], raw = _spoil(target, items[at], how, data.draw)
    body = json.dumps({key: items} if key else items[0])
    if raw:
        body = body.replace('"__RAW__"', raw)
    if how is not None:
        _, label = refused_storing_nothing(server, headers, "POST", path, body.encode(), {400, 422})
        tally(f"API ingest batch: {target}", f"{label} ({how})")
        return
    before = stored_counts(server.wh)
    r = send(server, headers, "POST", path, body.encode())
    assert r.status_code in (201, 202), r.text
    after = stored_counts(server.wh)
    assert after[table] - before[table] == size  # every item once
    tally(f"API ingest batch: {target}", f"{r.status_code} stored")


def test_a_refused_body_takes_no_idempotency_key(
    server: ApiServer, owner: tuple[dict[str, str], str]
) -> None:
    """A 413 or 415 reaches neither idempotency nor a route: the same key then works once."""
    headers, ws = owner
    key = {**headers, "Idempotency-Key": f"fuzz-{uuid.uuid4().hex}"}
    path = f"/v1/workspaces/{ws}/ingest/expenses"
    item = {"subtype": "one_time_expense", "amount_cents": 500, "occurred_at": "2026-01-15"}
    big = json.dumps({"expenses": [{**item, "vendor": "v" * 200}] * 200}).encode()
    assert len(big) > LIMIT
    refused_storing_nothing(server, key, "POST", path, big, {413})
    refused_storing_nothing(server, key, "POST", path, b"{}", {415}, "text/plain")
    r = server.client.post(path, json={"expenses": [item]}, headers=key)
    assert r.status_code == 202 and r.json()["inserted"] == 1, r.text


def test_the_default_body_limit_holds_a_full_ingest() -> None:
    from finance_pipeline.lib.ingest_validation import MAX_ROWS
    from finance_pipeline.settings import Settings

    item = {
        "subtype": "recurring_expense",
        "amount_cents": 123456789,
        "currency": "USD",
        "occurred_at": "2026-01-15",
        "vendor": "Vercel",
        "external_id": "exp_0123456789abcdef",
    }
    full = len(json.dumps({"expenses": [item] * MAX_ROWS}))
    assert full < Settings().api_max_body_bytes < 2 * full
