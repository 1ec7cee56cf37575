"""The 001 products API over real HTTP: revenue and cost records of a product (a workspace named by
id or slug) listed, retrieved and created in the seed's shapes and units, through the landing
files' validation (422 naming the field, nothing written), idempotent by id, a refresh queued for
the record's day; other organizations' products 404 and never listed; members cannot create."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from finance_pipeline_tests.api.conftest import (
    Account,
    ApiServer,
    _factory,
    add_member,
    assert_error,
    bearer,
    register,
)

SEED_REVENUE = {
    "amount": 99.00,
    "currency": "USD",
    "type": "subscription",
    "source": "stripe",
    "date": "2024-01-15",
}
SEED_COST = {
    "name": "Vercel Pro",
    "amount": 20.00,
    "currency": "USD",
    "category": "INFRASTRUCTURE",
    "isRecurring": True,
    "date": "2024-01-15",
}
REVENUE_KEYS = {"id", "amount", "currency", "type", "source", "note", "date", "createdAt"}
COST_KEYS = {"id", "name", "amount", "currency", "category", "isRecurring", "note", "date"} | {
    "createdAt"
}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A server that queues refresh requests without running them (no Dagster in these tests)."""
    make, started = _factory(tmp_path_factory.mktemp("products"))
    yield make(requests_inline=False)
    for server in started:
        server.stop()


def _workspace(api: ApiServer, acct: Account, name: str = "My SaaS App") -> str:
    r = api.client.post("/v1/workspaces", json={"name": name}, headers=acct.headers)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _slug(api: ApiServer, ws: str) -> str:
    return api.wh.scalar("SELECT slug FROM app.workspaces WHERE id = :w", w=ws)


def _refreshes(api: ApiServer, ws: str) -> list[dict]:
    return api.wh.rows(
        "SELECT * FROM app.pipeline_requests WHERE workspace_id = :w ORDER BY created_at", w=ws
    )


def test_revenue_seed_examples_create_retrieve_list(api: ApiServer) -> None:
    acct = register(api.client)
    ws = _workspace(api, acct)
    assert _slug(api, ws) == "my-saas-app"
    r = api.client.post(
        "/api/v1/products/my-saas-app/revenue", json=SEED_REVENUE, headers=acct.headers
    )
    assert r.status_code == 201, r.text
    # Exact decimal in the seed's unit (whole dollars, 2 places), never a float artifact.
    assert '"amount":99.00,' in r.text
    created = r.json()["data"]
    assert set(r.json()) == {"data"} and set(created) == REVENUE_KEYS
    assert (created["currency"], created["type"], created["source"], created["note"]) == (
        "USD",
        "subscription",
        "stripe",
        None,
    )
    assert created["date"] == "2024-01-15" and created["createdAt"].endswith("Z")
    stored = api.wh.rows("SELECT * FROM raw.manual_revenue WHERE workspace_id = :w", w=ws)
    assert len(stored) == 1
    assert stored[0]["external_id"] == created["id"]
    assert (stored[0]["amount_micros"], stored[0]["currency"], stored[0]["subtype"]) == (
        99_000_000,
        "usd",
        "recurring",
    )
    # The marts include it once the queued refresh of its day has run.
    [req] = _refreshes(api, ws)
    assert r.headers["x-refresh-request-id"] == req["id"]
    assert (req["kind"], str(req["first_day"])[:10], str(req["last_day"])[:10]) == (
        "refresh",
        "2024-01-15",
        "2024-01-15",
    )
    assert req["status"] == "queued"
    one = api.client.get(f"/api/v1/products/{ws}/revenue/{created['id']}", headers=acct.headers)
    assert one.status_code == 200 and one.json() == {"data": created}
    assert '"amount":99.00,' in one.text
    for ref in (ws, "my-saas-app"):
        listed = api.client.get(f"/api/v1/products/{ref}/revenue", headers=acct.headers)
        assert listed.json() == {"data": [created], "has_more": False}


def test_cost_seed_examples_create_retrieve_list(api: ApiServer) -> None:
    acct = register(api.client)
    ws = _workspace(api, acct)
    r = api.client.post("/api/v1/products/my-saas-app/costs", json=SEED_COST, headers=acct.headers)
    assert r.status_code == 201, r.text
    assert '"amount":20.00,' in r.text
    created = r.json()["data"]
    assert set(created) == COST_KEYS
    assert {k: created[k] for k in ("name", "currency", "category", "isRecurring", "note")} == {
        "name": "Vercel Pro",
        "currency": "USD",
        "category": "INFRASTRUCTURE",
        "isRecurring": True,
        "note": None,
    }
    row = api.wh.rows("SELECT * FROM raw.cost_records WHERE workspace_id = :w", w=ws)[0]
    assert (row["amount_micros"], row["category"], bool(row["is_recurring"])) == (
        20_000_000,
        "INFRASTRUCTURE",
        True,
    )
    assert len(_refreshes(api, ws)) == 1
    one = api.client.get(
        f"/api/v1/products/my-saas-app/costs/{created['id']}", headers=acct.headers
    )
    assert one.json() == {"data": created}
    listed = api.client.get(f"/api/v1/products/{ws}/costs", headers=acct.headers)
    assert listed.json() == {"data": [created], "has_more": False}
    # isRecurring defaults to false, currency to USD.
    body = {k: v for k, v in SEED_COST.items() if k not in ("isRecurring", "currency")}
    r = api.client.post(
        f"/api/v1/products/{ws}/costs", json={**body, "name": "Domain"}, headers=acct.headers
    )
    assert (r.json()["data"]["isRecurring"], r.json()["data"]["currency"]) == (False, "USD")


def test_units_refunds_and_zero_decimal_currencies(api: ApiServer) -> None:
    acct = register(api.client)
    ws = _workspace(api, acct)
    url = f"/api/v1/products/{ws}/revenue"
    body = {"amount": 10.5, "type": "refund", "date": "2024-02-01", "note": "partial"}
    r = api.client.post(url, json=body, headers=acct.headers)
    # A refund is entered and shown positive, stored negative (docs/metrics.md §7).
    assert '"amount":10.50,' in r.text and r.json()["data"]["type"] == "refund"
    micros = api.wh.scalar(
        "SELECT amount_micros FROM raw.manual_revenue WHERE external_id = :i",
        i=r.json()["data"]["id"],
    )
    assert micros == -10_500_000
    r = api.client.post(
        url,
        json={"amount": 1500, "currency": "jpy", "type": "one_time", "date": "2024-02-01"},
        headers=acct.headers,
    )
    assert r.status_code == 201 and '"amount":1500,' in r.text
    assert r.json()["data"]["currency"] == "JPY"
    # Digit for digit: more digits than a float keeps are read exactly (and refused, since
    # they are finer than the cent), never rounded to 0.10.
    r = api.client.post(
        url,
        content=b'{"amount": 0.1000000000000000001, "type": "other", "date": "2024-02-01"}',
        headers={**acct.headers, "Content-Type": "application/json"},
    )
    assert_error(r, 422, "invalid_field", "amount")


def test_create_is_idempotent_by_id(api: ApiServer) -> None:
    acct = register(api.client)
    ws = _workspace(api, acct)
    url = f"/api/v1/products/{ws}/revenue"
    first = api.client.post(url, json=SEED_REVENUE, headers=acct.headers)
    again = api.client.post(url, json=SEED_REVENUE, headers=acct.headers)
    # Without an id, the id derives from the content: the same record again is the stored one.
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json() and "x-refresh-request-id" not in again.headers
    mine = {**SEED_REVENUE, "id": "clxabc123"}
    r = api.client.post(url, json=mine, headers=acct.headers)
    assert r.status_code == 201 and r.json()["data"]["id"] == "clxabc123"
    assert api.client.post(url, json=mine, headers=acct.headers).status_code == 200
    r = api.client.post(url, json={**mine, "amount": 100}, headers=acct.headers)
    assert_error(r, 409, "record_exists", "id")
    assert (
        api.wh.scalar("SELECT COUNT(*) FROM raw.manual_revenue WHERE workspace_id = :w", w=ws) == 2
    )
    got = api.client.get(f"{url}/clxabc123", headers=acct.headers).json()["data"]
    assert got["amount"] == 99.0
    assert len(_refreshes(api, ws)) == 2


BAD_REVENUE = [
    ({"amount": None}, "missing_field", "amount"),
    ({"amount": "99.00"}, "invalid_field", "amount"),
    ({"amount": -5}, "invalid_field", "amount"),
    ({"amount": 0.001}, "invalid_field", "amount"),
    ({"amount": 10**13}, "invalid_field", "amount"),
    ({"type": "donation"}, "invalid_field", "type"),
    ({"type": None}, "missing_field", "type"),
    ({"date": "2024-13-01"}, "invalid_field", "date"),
    ({"date": "15/01/2024"}, "invalid_field", "date"),
    ({"date": "1999-12-31"}, "invalid_field", "date"),
    ({"currency": "dollars"}, "invalid_field", "currency"),
    ({"source": 7}, "invalid_field", "source"),
    ({"color": "red"}, "invalid_field", "color"),
]


@pytest.mark.parametrize(("change", "code", "param"), BAD_REVENUE)
def test_bad_revenue_is_a_422_naming_the_field_and_writes_nothing(
    api: ApiServer, change: dict, code: str, param: str
) -> None:
    acct = register(api.client)
    ws = _workspace(api, acct)
    body = {k: v for k, v in {**SEED_REVENUE, **change}.items() if v is not None}
    r = api.client.post(f"/api/v1/products/{ws}/revenue", json=body, headers=acct.headers)
    assert_error(r, 422, code, param)
    assert (
        api.wh.scalar("SELECT COUNT(*) FROM raw.manual_revenue WHERE workspace_id = :w", w=ws) == 0
    )
    assert _refreshes(api, ws) == []


@pytest.mark.parametrize(
    ("change", "code", "param"),
    [
        ({"name": None}, "missing_field", "name"),
        ({"name": "  "}, "missing_field", "name"),
        ({"category": "FOOD"}, "invalid_field", "category"),
        ({"isRecurring": "yes"}, "invalid_field", "isRecurring"),
        ({"amount": 20.001}, "invalid_field", "amount"),
    ],
)
def test_bad_cost_is_a_422_naming_the_field_and_writes_nothing(
    api: ApiServer, change: dict, code: str, param: str
) -> None:
    acct = register(api.client)
    ws = _workspace(api, acct)
    body = {k: v for k, v in {**SEED_COST, **change}.items() if v is not None}
    r = api.client.post(f"/api/v1/products/{ws}/costs", json=body, headers=acct.headers)
    assert_error(r, 422, code, param)
    assert api.wh.scalar("SELECT COUNT(*) FROM raw.cost_records WHERE workspace_id = :w", w=ws) == 0
    assert _refreshes(api, ws) == []


def test_lists_are_paginated_by_id(api: ApiServer) -> None:
    acct = register(api.client)
    ws = _workspace(api, acct)
    url = f"/api/v1/products/{ws}/costs"
    for rid in ("c", "a", "b"):
        body = {**SEED_COST, "id": rid}
        assert api.client.post(url, json=body, headers=acct.headers).status_code == 201
    page = api.client.get(url, params={"limit": 2}, headers=acct.headers).json()
    assert [c["id"] for c in page["data"]] == ["a", "b"] and page["has_more"] is True
    rest = api.client.get(url, params={"starting_after": "b"}, headers=acct.headers).json()
    assert [c["id"] for c in rest["data"]] == ["c"] and rest["has_more"] is False
    assert_error(
        api.client.get(url, params={"limit": 0}, headers=acct.headers),
        422,
        "invalid_field",
        "limit",
    )
    assert_error(
        api.client.get(url, params={"limt": 2}, headers=acct.headers),
        400,
        "parameter_unknown",
        "limt",
    )


def test_slugs_are_unique_per_org_and_address_only_your_product(api: ApiServer) -> None:
    mine, theirs = register(api.client), register(api.client)
    a = _workspace(api, mine, "Acme!")
    b = _workspace(api, mine, "acme")
    other = _workspace(api, theirs, "Acme")
    assert (_slug(api, a), _slug(api, b), _slug(api, other)) == ("acme", "acme-2", "acme")
    api.client.post(f"/api/v1/products/{a}/revenue", json=SEED_REVENUE, headers=mine.headers)
    # The same slug in another org is that org's product: it never sees mine.
    r = api.client.get("/api/v1/products/acme/revenue", headers=theirs.headers)
    assert r.json() == {"data": [], "has_more": False}
    mine_list = api.client.get("/api/v1/products/acme/revenue", headers=mine.headers).json()
    [rec] = mine_list["data"]
    for path in (
        f"/api/v1/products/{a}/revenue",
        f"/api/v1/products/{a}/revenue/{rec['id']}",
        f"/api/v1/products/{a}/costs",
        "/api/v1/products/acme-2/costs",
    ):
        assert_error(api.client.get(path, headers=theirs.headers), 404, "resource_missing")
    r = api.client.post(f"/api/v1/products/{a}/revenue", json=SEED_COST, headers=theirs.headers)
    assert r.status_code in (404, 422)
    r = api.client.post(f"/api/v1/products/{a}/costs", json=SEED_COST, headers=theirs.headers)
    assert_error(r, 404, "resource_missing", "id_or_slug")
    assert api.wh.scalar("SELECT COUNT(*) FROM raw.cost_records WHERE workspace_id = :w", w=a) == 0
    # A record id of my other product is not found under this one.
    assert_error(
        api.client.get(f"/api/v1/products/{b}/revenue/{rec['id']}", headers=mine.headers),
        404,
        "resource_missing",
        "revenue_id",
    )
    assert_error(
        api.client.get("/api/v1/products/nope/costs", headers=mine.headers), 404, "resource_missing"
    )


def test_roles_and_scoped_keys(api: ApiServer) -> None:
    owner = register(api.client)
    a, b = _workspace(api, owner, "A"), _workspace(api, owner, "B")
    member, finance = (
        add_member(api, owner.headers, "member"),
        add_member(api, owner.headers, "finance"),
    )
    url = f"/api/v1/products/{a}/revenue"
    assert_error(api.client.post(url, json=SEED_REVENUE, headers=member), 403, "insufficient_role")
    assert_error(
        api.client.post(f"/api/v1/products/{a}/costs", json=SEED_COST, headers=member),
        403,
        "insufficient_role",
    )
    assert api.client.get(url, headers=member).json()["data"] == []
    assert api.client.post(url, json=SEED_REVENUE, headers=finance).status_code == 201
    assert len(api.client.get(url, headers=member).json()["data"]) == 1
    r = api.client.post(
        "/v1/api_keys", json={"role": "finance", "workspace_id": a}, headers=owner.headers
    )
    key = bearer(r.json()["key"])
    assert api.client.get(url, headers=key).status_code == 200
    assert_error(
        api.client.get(f"/api/v1/products/{b}/revenue", headers=key), 404, "resource_missing"
    )
    assert_error(api.client.get(url), 401, "missing_token")
