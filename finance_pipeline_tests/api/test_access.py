"""Roles (owner / finance / member), members and API keys: the role matrix answers 403, keys are
shown once, stored hashed, revocable, optionally scoped to one workspace, and other orgs' are 404."""

from __future__ import annotations

import hashlib

import pytest

from finance_pipeline.lib.access import ROLE_PERMISSIONS, Permission, Role
from finance_pipeline_tests.api.conftest import (
    PASSWORD,
    Account,
    ApiServer,
    add_member,
    assert_error,
    bearer,
    register,
    unique_email,
)


def _workspace(api: ApiServer, acct: Account, name: str = "Acme Corp") -> str:
    r = api.client.post("/v1/workspaces", json={"name": name}, headers=acct.headers)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_the_role_matrix() -> None:
    assert ROLE_PERMISSIONS[Role.OWNER] == frozenset(Permission)
    assert ROLE_PERMISSIONS[Role.FINANCE] == {
        Permission.READ,
        Permission.INGEST,
        Permission.EXPORTS,
        Permission.FORECASTS,
        Permission.SETTINGS,
    }
    assert ROLE_PERMISSIONS[Role.MEMBER] == {Permission.READ}


def test_roles_are_enforced_with_403(api: ApiServer) -> None:
    owner = register(api.client)
    wid = _workspace(api, owner)
    member, finance = (
        add_member(api, owner.headers, "member", owner.org_id),
        add_member(api, owner.headers, "finance", owner.org_id),
    )
    url = f"/v1/workspaces/{wid}"

    # member: reads only.
    assert api.client.get(url, headers=member).status_code == 200
    assert api.client.get("/v1/workspaces", headers=member).status_code == 200
    assert api.client.get("/v1/members", headers=member).status_code == 200
    err = assert_error(
        api.client.patch(url, json={"name": "x"}, headers=member), 403, "insufficient_role"
    )
    assert err["type"] == "permission_denied"
    assert_error(
        api.client.post("/v1/workspaces", json={"name": "x"}, headers=member),
        403,
        "insufficient_role",
    )
    assert_error(api.client.get("/v1/api_keys", headers=member), 403, "insufficient_role")

    # finance: settings such as cash on hand, but no workspace deletion, members or keys.
    r = api.client.patch(url, json={"cash_on_hand_cents": 100}, headers=finance)
    assert r.status_code == 200 and r.json()["cash_on_hand_cents"] == 100
    assert_error(api.client.delete(url, headers=finance), 403, "insufficient_role")
    assert_error(
        api.client.post("/v1/workspaces", json={"name": "x"}, headers=finance),
        403,
        "insufficient_role",
    )
    assert_error(
        api.client.post(
            "/v1/members",
            json={"email": unique_email(), "role": "owner", "password": PASSWORD},
            headers=finance,
        ),
        403,
        "insufficient_role",
    )
    assert_error(
        api.client.post("/v1/api_keys", json={"role": "owner"}, headers=finance),
        403,
        "insufficient_role",
    )

    # owner: everything.
    assert api.client.delete(url, headers=owner.headers).status_code == 204


def test_role_changes_apply_to_live_tokens_and_the_last_owner_stays(api: ApiServer) -> None:
    owner = register(api.client)
    wid = _workspace(api, owner)
    finance = add_member(api, owner.headers, "finance", owner.org_id)
    members = api.client.get("/v1/members", headers=owner.headers).json()["data"]
    fin_id = next(m["user_id"] for m in members if m["role"] == "finance")
    owner_id = next(m["user_id"] for m in members if m["role"] == "owner")
    r = api.client.patch(f"/v1/members/{fin_id}", json={"role": "member"}, headers=owner.headers)
    assert r.json()["role"] == "member"
    # The token was issued while finance: the role is read per request, so it is member now.
    assert_error(
        api.client.patch(f"/v1/workspaces/{wid}", json={"name": "x"}, headers=finance),
        403,
        "insufficient_role",
    )
    assert_error(
        api.client.patch(f"/v1/members/{owner_id}", json={"role": "member"}, headers=owner.headers),
        409,
        "last_owner",
    )
    assert_error(
        api.client.delete(f"/v1/members/{owner_id}", headers=owner.headers), 409, "last_owner"
    )
    assert api.client.delete(f"/v1/members/{fin_id}", headers=owner.headers).status_code == 204
    assert_error(api.client.get("/v1/workspaces", headers=finance), 401, "invalid_token")
    assert_error(
        api.client.delete(f"/v1/members/{fin_id}", headers=owner.headers), 404, "resource_missing"
    )


def test_api_key_is_shown_once_stored_hashed_and_revocable(api: ApiServer) -> None:
    owner = register(api.client)
    _workspace(api, owner)
    r = api.client.post(
        "/v1/api_keys", json={"name": "etl", "role": "finance"}, headers=owner.headers
    )
    assert r.status_code == 201
    created = r.json()
    secret = created["key"]
    assert secret.startswith(created["prefix"] + "_") and created["prefix"].startswith("fpk_")
    assert (created["role"], created["name"], created["revoked_at"]) == ("finance", "etl", None)
    stored = api.wh.rows("SELECT key_sha256 FROM app.api_keys WHERE id = :k", k=created["id"])
    assert stored == [{"key_sha256": hashlib.sha256(secret.encode()).hexdigest()}]
    assert (
        secret
        not in api.wh.rows("SELECT * FROM app.api_keys WHERE id = :k", k=created["id"]).__repr__()
    )

    # The key authenticates with its role.
    assert api.client.get("/v1/workspaces", headers=bearer(secret)).status_code == 200
    assert_error(
        api.client.post("/v1/workspaces", json={"name": "x"}, headers=bearer(secret)),
        403,
        "insufficient_role",
    )
    listed = api.client.get("/v1/api_keys", headers=owner.headers).json()
    assert [k["id"] for k in listed["data"]] == [created["id"]]
    assert "key" not in listed["data"][0] and secret not in str(listed)
    assert (
        api.client.get(f"/v1/api_keys/{created['id']}", headers=owner.headers).json()["name"]
        == "etl"
    )

    assert (
        api.client.delete(f"/v1/api_keys/{created['id']}", headers=owner.headers).status_code == 204
    )
    assert_error(api.client.get("/v1/workspaces", headers=bearer(secret)), 401, "invalid_token")
    again = api.client.get(f"/v1/api_keys/{created['id']}", headers=owner.headers).json()
    assert again["revoked_at"] is not None
    assert (
        api.client.delete(f"/v1/api_keys/{created['id']}", headers=owner.headers).status_code == 204
    )
    # A wrong secret with a real prefix does not authenticate either.
    assert_error(
        api.client.get("/v1/workspaces", headers=bearer(created["prefix"] + "_nope")),
        401,
        "invalid_token",
    )


def test_a_workspace_scoped_key_sees_only_its_workspace(api: ApiServer) -> None:
    owner = register(api.client)
    a, b = _workspace(api, owner, "A"), _workspace(api, owner, "B")
    r = api.client.post(
        "/v1/api_keys", json={"role": "owner", "workspace_id": a}, headers=owner.headers
    )
    key = bearer(r.json()["key"])
    assert r.json()["workspace_id"] == a
    assert [w["id"] for w in api.client.get("/v1/workspaces", headers=key).json()["data"]] == [a]
    assert api.client.get(f"/v1/workspaces/{a}", headers=key).status_code == 200
    assert_error(api.client.get(f"/v1/workspaces/{b}", headers=key), 404, "resource_missing")
    r = api.client.patch(f"/v1/workspaces/{b}", json={"name": "x"}, headers=key)
    assert_error(r, 404, "resource_missing")
    assert_error(
        api.client.post("/v1/workspaces", json={"name": "C"}, headers=key),
        403,
        "workspace_scoped_key",
    )
    # No rights over the whole organization: else it could mint an org-wide key or member.
    assert_error(
        api.client.post("/v1/api_keys", json={"role": "owner"}, headers=key),
        403,
        "workspace_scoped_key",
    )
    assert_error(api.client.get("/v1/api_keys", headers=key), 403, "workspace_scoped_key")
    r = api.client.post(
        "/v1/members",
        json={"email": unique_email(), "role": "owner", "password": PASSWORD},
        headers=key,
    )
    assert_error(r, 403, "workspace_scoped_key")
    assert_error(api.client.delete(f"/v1/workspaces/{a}", headers=key), 403, "workspace_scoped_key")
    # Within its workspace, its role applies.
    r = api.client.patch(f"/v1/workspaces/{a}", json={"cash_on_hand_cents": 5}, headers=key)
    assert r.json()["cash_on_hand_cents"] == 5


@pytest.mark.parametrize("method", ["get", "delete"])
def test_another_orgs_keys_and_members_are_404_and_never_listed(
    api: ApiServer, method: str
) -> None:
    mine, theirs = register(api.client), register(api.client)
    their_key = api.client.post(
        "/v1/api_keys", json={"role": "member"}, headers=theirs.headers
    ).json()
    r = getattr(api.client, method)(f"/v1/api_keys/{their_key['id']}", headers=mine.headers)
    assert_error(r, 404, "resource_missing")
    assert api.client.get("/v1/api_keys", headers=mine.headers).json()["data"] == []
    their_ws = _workspace(api, theirs)
    r = api.client.post(
        "/v1/api_keys", json={"role": "member", "workspace_id": their_ws}, headers=mine.headers
    )
    assert_error(r, 404, "resource_missing", "workspace_id")
    their_members = api.client.get("/v1/members", headers=theirs.headers).json()["data"]
    their_user = their_members[0]["user_id"]
    r = api.client.patch(f"/v1/members/{their_user}", json={"role": "member"}, headers=mine.headers)
    assert_error(r, 404, "resource_missing")
    assert_error(
        api.client.delete(f"/v1/members/{their_user}", headers=mine.headers),
        404,
        "resource_missing",
    )
    emails = [
        m["email"] for m in api.client.get("/v1/members", headers=mine.headers).json()["data"]
    ]
    assert emails == [mine.email]
    # Their key sees their workspace only, never ours.
    mine_ws = _workspace(api, mine)
    seen = api.client.get("/v1/workspaces", headers=bearer(their_key["key"])).json()["data"]
    assert [w["id"] for w in seen] == [their_ws]
    r = api.client.get(f"/v1/workspaces/{mine_ws}", headers=bearer(their_key["key"]))
    assert_error(r, 404, "resource_missing")


def test_an_existing_user_joins_another_org_and_picks_it_at_login(api: ApiServer) -> None:
    first, second = register(api.client), register(api.client)
    r = api.client.post(
        "/v1/members", json={"email": first.email, "role": "member"}, headers=second.headers
    )
    assert r.status_code == 201
    default = api.client.post("/v1/auth/login", json={"email": first.email, "password": PASSWORD})
    assert default.json()["org"]["id"] == first.org_id
    chosen = api.client.post(
        "/v1/auth/login", json={"email": first.email, "password": PASSWORD, "org_id": second.org_id}
    )
    assert chosen.json()["org"]["id"] == second.org_id
    again = api.client.post(
        "/v1/members", json={"email": first.email, "role": "member"}, headers=second.headers
    )
    assert_error(again, 409, "already_member")
    new_without_password = api.client.post(
        "/v1/members", json={"email": unique_email(), "role": "member"}, headers=second.headers
    )
    assert_error(new_without_password, 409, "password_required", "password")
