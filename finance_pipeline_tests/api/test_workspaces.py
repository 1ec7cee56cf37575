"""`/v1/workspaces` per the 004 seed: shapes, pagination, PATCH semantics, cascade delete, and
another organization's workspaces answering 404 and never listed."""

from __future__ import annotations

import time

from finance_pipeline_tests.api.conftest import Account, ApiServer, assert_error, register


def _create(api: ApiServer, acct: Account, **body: object) -> dict:
    r = api.client.post("/v1/workspaces", json=body, headers=acct.headers)
    assert r.status_code == 201, r.text
    return r.json()


def test_create_get_and_list_in_the_seed_shape(api: ApiServer) -> None:
    acct = register(api.client)
    ws = _create(api, acct, name="Acme Corp", cash_on_hand_cents=5000000)
    assert set(ws) == {"id", "org_id", "name", "cash_on_hand_cents", "created_at"}
    assert ws["id"].startswith("ws_")
    assert (ws["org_id"], ws["name"], ws["cash_on_hand_cents"]) == (
        acct.org_id,
        "Acme Corp",
        5000000,
    )
    assert ws["created_at"].endswith("+00:00")
    # Stored as exact micro-units (docs/metrics.md §2): 1 cent = 10,000 micros.
    stored = api.wh.scalar(
        "SELECT cash_on_hand_micros FROM app.workspaces WHERE id = :w", w=ws["id"]
    )
    assert stored == 5000000 * 10_000
    assert api.client.get(f"/v1/workspaces/{ws['id']}", headers=acct.headers).json() == ws
    assert api.client.get("/v1/workspaces", headers=acct.headers).json() == {
        "data": [ws],
        "has_more": False,
    }
    without_cash = _create(api, acct, name="No cash")
    assert without_cash["cash_on_hand_cents"] is None


def test_money_must_be_integer_cents(api: ApiServer) -> None:
    acct = register(api.client)
    # 100.0 is an integer in JSON Schema's sense; fractions, strings and booleans are not cents.
    r = api.client.post(
        "/v1/workspaces", json={"name": "X", "cash_on_hand_cents": 100.0}, headers=acct.headers
    )
    assert r.json()["cash_on_hand_cents"] == 100
    for bad in (12.5, "100", True, 10**15):
        r = api.client.post(
            "/v1/workspaces", json={"name": "X", "cash_on_hand_cents": bad}, headers=acct.headers
        )
        assert_error(r, 422, "invalid_field", "cash_on_hand_cents")
    r = api.client.post("/v1/workspaces", json={"name": "X", "color": "red"}, headers=acct.headers)
    assert_error(r, 422, "invalid_field", "color")


def test_patch_changes_only_the_fields_sent_and_null_clears_cash(api: ApiServer) -> None:
    acct = register(api.client)
    ws = _create(api, acct, name="Acme Corp", cash_on_hand_cents=5000000)
    url = f"/v1/workspaces/{ws['id']}"
    r = api.client.patch(url, json={"cash_on_hand_cents": 7500000}, headers=acct.headers)
    assert r.json() == {**ws, "cash_on_hand_cents": 7500000}
    r = api.client.patch(url, json={"name": "Renamed"}, headers=acct.headers)
    assert r.json() == {**ws, "name": "Renamed", "cash_on_hand_cents": 7500000}
    r = api.client.patch(url, json={"cash_on_hand_cents": None}, headers=acct.headers)
    assert r.json()["cash_on_hand_cents"] is None
    assert (
        api.wh.scalar("SELECT cash_on_hand_micros FROM app.workspaces WHERE id = :w", w=ws["id"])
        is None
    )
    assert api.client.patch(url, json={}, headers=acct.headers).json()["name"] == "Renamed"
    assert_error(
        api.client.patch(url, json={"name": None}, headers=acct.headers),
        422,
        "invalid_field",
        "name",
    )


def test_delete_cascades_to_the_workspace_rows_of_every_layer(api: ApiServer) -> None:
    acct = register(api.client)
    ws = _create(api, acct, name="Doomed")
    keep = _create(api, acct, name="Kept")
    now = int(time.time())
    with api.wh.begin() as db:
        for wid in (ws["id"], keep["id"]):
            db.execute(
                api.wh.text(
                    "INSERT INTO raw.stripe_customers (workspace_id, id, account_id, livemode,"
                    " payload, synced_at) VALUES (:w, 'cus_1', 'acct_1', FALSE, '{}', :t)"
                ),
                {"w": wid, "t": now},
            )
    r = api.client.delete(f"/v1/workspaces/{ws['id']}", headers=acct.headers)
    assert r.status_code == 204 and r.content == b""
    left = api.wh.rows(
        "SELECT workspace_id FROM raw.stripe_customers WHERE workspace_id IN (:a, :b)",
        a=ws["id"],
        b=keep["id"],
    )
    assert left == [{"workspace_id": keep["id"]}]
    assert_error(
        api.client.get(f"/v1/workspaces/{ws['id']}", headers=acct.headers), 404, "resource_missing"
    )
    assert_error(
        api.client.delete(f"/v1/workspaces/{ws['id']}", headers=acct.headers),
        404,
        "resource_missing",
    )


def test_pagination_by_id_with_has_more(api: ApiServer) -> None:
    acct = register(api.client)
    ids = sorted(_create(api, acct, name=f"W{i}")["id"] for i in range(5))
    seen: list[str] = []
    after = None
    while True:
        params = {"limit": 2, **({"starting_after": after} if after else {})}
        page = api.client.get("/v1/workspaces", params=params, headers=acct.headers).json()
        seen += [w["id"] for w in page["data"]]
        if not page["has_more"]:
            break
        after = page["data"][-1]["id"]
    assert seen == ids
    default = api.client.get("/v1/workspaces", headers=acct.headers).json()
    assert [w["id"] for w in default["data"]] == ids and default["has_more"] is False
    # limit is 1-100: beyond is a 422 naming the parameter, never a silent clamp.
    for bad in (101, 0, "x"):
        r = api.client.get("/v1/workspaces", params={"limit": bad}, headers=acct.headers)
        assert_error(r, 422, "invalid_field", "limit")
    assert api.client.get("/v1/workspaces", params={"limit": 100}, headers=acct.headers).is_success


def test_another_orgs_workspace_is_404_and_never_listed(api: ApiServer) -> None:
    mine, theirs = register(api.client), register(api.client)
    own = _create(api, mine, name="Mine")
    other = _create(api, theirs, name="Theirs")
    url = f"/v1/workspaces/{other['id']}"
    assert_error(api.client.get(url, headers=mine.headers), 404, "resource_missing", "id")
    assert_error(
        api.client.patch(url, json={"name": "Hijack"}, headers=mine.headers),
        404,
        "resource_missing",
    )
    assert_error(api.client.delete(url, headers=mine.headers), 404, "resource_missing")
    listed = api.client.get("/v1/workspaces", params={"limit": 100}, headers=mine.headers).json()
    assert [w["id"] for w in listed["data"]] == [own["id"]]
    # A cursor naming the other org's workspace reveals nothing either.
    after = api.client.get(
        "/v1/workspaces", params={"starting_after": other["id"]}, headers=mine.headers
    )
    assert other["id"] not in after.text
    assert api.client.get(url, headers=theirs.headers).json()["name"] == "Theirs"
