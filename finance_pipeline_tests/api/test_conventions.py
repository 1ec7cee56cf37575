"""Conventions shared by every family: request ids, error envelopes (by family dialect),
Idempotency-Key, the rate limit, workspace resolution for org-scoped routes, OpenAPI."""

from __future__ import annotations

import re
import threading
import time
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends

from finance_pipeline.api.auth import Principal, current_principal
from finance_pipeline.api.errors import ApiError, ErrorDialect
from finance_pipeline.api.families import V1, Family, dialect_for
from finance_pipeline.api.ratelimit import WINDOW_SECONDS
from finance_pipeline.api.scoping import request_workspace
from finance_pipeline.tenancy import Workspace
from finance_pipeline_tests.api.conftest import (
    PASSWORD,
    ApiServer,
    assert_error,
    bearer,
    register,
    unique_email,
)


def test_every_response_has_a_request_id_and_errors_repeat_it(api: ApiServer) -> None:
    ok = api.client.post(
        "/v1/auth/login", json={"email": "nobody@acme.com", "password": "x"}
    ).headers["x-request-id"]
    assert ok.startswith("req_")
    r = api.client.get("/v1/workspaces", headers={"X-Request-Id": "client-abc.123"})
    assert r.headers["x-request-id"] == "client-abc.123"
    assert r.json()["error"]["request_id"] == "client-abc.123"
    # An id that is not plain (spaces, too long) is replaced by a generated one.
    for bad in ("has space", "x" * 200, "<script>"):
        r = api.client.get("/v1/workspaces", headers={"X-Request-Id": bad})
        assert r.headers["x-request-id"].startswith("req_")
        assert r.json()["error"]["request_id"] == r.headers["x-request-id"]
    assert api.client.get("/openapi.json").headers["x-request-id"].startswith("req_")


def test_malformed_json_is_400_and_unknown_routes_are_404_in_the_envelope(api: ApiServer) -> None:
    acct = register(api.client)
    r = api.client.post(
        "/v1/workspaces",
        content=b'{"name": ',
        headers={**acct.headers, "Content-Type": "application/json"},
    )
    assert_error(r, 400, "invalid_json")
    assert_error(api.client.get("/v1/nothing-here", headers=acct.headers), 404, "route_not_found")
    assert_error(api.client.put("/v1/workspaces", headers=acct.headers), 405, "method_not_allowed")
    r = api.client.post("/v1/workspaces", json={}, headers=acct.headers)
    assert r.json()["error"]["message"] == "name is required."
    # Not an object, or no body at all: still the envelope, without a field to name.
    r = api.client.post("/v1/workspaces", json=[1], headers=acct.headers)
    assert assert_error(r, 422, "invalid_field")["param"] is None
    r = api.client.post("/v1/workspaces", headers=acct.headers)
    assert assert_error(r, 422, "missing_field")["message"] == "A request body is required."


class _LegacyDialect(ErrorDialect):
    """A family whose seed shows `{"success": false, "error": {...}}`."""

    def body(self, err: ApiError, request_id: str) -> dict[str, Any]:
        return {
            "success": False,
            "error": {"code": err.code, "message": err.message, "request_id": request_id},
        }


def _test_routes() -> tuple[tuple[Family, APIRouter], ...]:
    boom = V1.router()

    @boom.get("/_test/boom")
    def explode() -> dict[str, str]:
        raise RuntimeError("secret internals")

    @boom.get("/_test/workspace")
    def which(ws: Annotated[Workspace, Depends(request_workspace)]) -> dict[str, str]:
        return {"id": ws.id}

    legacy = Family("legacy test API", "/api/v1/legacy", _LegacyDialect())
    lr = legacy.router()

    @lr.get("/me")
    def me(p: Annotated[Principal, Depends(current_principal)]) -> dict[str, str]:
        return {"org": p.org_id}

    @lr.get("/boom")
    def legacy_boom() -> dict[str, str]:
        raise RuntimeError("secret internals")

    return ((V1, boom), (legacy, lr))


def test_unhandled_errors_are_500_in_the_familys_envelope(api_server_factory) -> None:
    server = api_server_factory(routers=_test_routes())
    r = server.client.get("/v1/_test/boom")
    err = assert_error(r, 500, "internal_error")
    assert err["type"] == "api_error"
    assert "secret" not in r.text and "Traceback" not in r.text
    # A family declaring another dialect gets its own envelope for every error.
    r = server.client.get("/api/v1/legacy/boom")
    assert r.status_code == 500
    assert r.json() == {
        "success": False,
        "error": {
            "code": "internal_error",
            "message": "An unexpected error occurred.",
            "request_id": r.headers["x-request-id"],
        },
    }
    assert server.client.get("/api/v1/legacy/me").json()["error"]["code"] == "missing_token"
    assert server.client.get("/api/v1/legacy/nope").json()["success"] is False


def test_org_scoped_routes_resolve_the_workspace_by_the_documented_rule(
    api_server_factory,
) -> None:
    server = api_server_factory(routers=_test_routes())
    c = server.client
    acct = register(c)
    url = "/v1/_test/workspace"
    assert_error(c.get(url, headers=acct.headers), 404, "resource_missing", "X-Workspace-Id")
    a = c.post("/v1/workspaces", json={"name": "A"}, headers=acct.headers).json()["id"]
    assert c.get(url, headers=acct.headers).json() == {"id": a}  # the only workspace
    b = c.post("/v1/workspaces", json={"name": "B"}, headers=acct.headers).json()["id"]
    assert_error(c.get(url, headers=acct.headers), 400, "workspace_required", "X-Workspace-Id")
    assert c.get(url, headers={**acct.headers, "X-Workspace-Id": b}).json() == {"id": b}
    other = register(c)
    theirs = c.post("/v1/workspaces", json={"name": "T"}, headers=other.headers).json()["id"]
    r = c.get(url, headers={**acct.headers, "X-Workspace-Id": theirs})
    assert_error(r, 404, "resource_missing")
    scoped = c.post(
        "/v1/api_keys", json={"role": "member", "workspace_id": a}, headers=acct.headers
    ).json()["key"]
    assert c.get(url, headers=bearer(scoped)).json() == {"id": a}
    r = c.get(url, headers={**bearer(scoped), "X-Workspace-Id": b})
    assert_error(r, 404, "resource_missing")


def test_idempotency_replays_the_original_and_refuses_another_body(api: ApiServer) -> None:
    acct = register(api.client)
    h = {**acct.headers, "Idempotency-Key": "create-acme-1"}
    first = api.client.post("/v1/workspaces", json={"name": "Acme"}, headers=h)
    again = api.client.post("/v1/workspaces", json={"name": "Acme"}, headers=h)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    # Same JSON, other spacing and key order: the same body.
    same = api.client.post(
        "/v1/workspaces",
        content=b'{ "name" :  "Acme" }',
        headers={**h, "Content-Type": "application/json"},
    )
    assert same.json() == first.json()
    listed = api.client.get("/v1/workspaces", headers=acct.headers).json()["data"]
    assert [w["id"] for w in listed] == [first.json()["id"]]
    err = assert_error(
        api.client.post("/v1/workspaces", json={"name": "Other"}, headers=h),
        409,
        "idempotency_key_reused",
        "Idempotency-Key",
    )
    assert err["type"] == "conflict"
    # PATCH too; and another caller's same key is theirs alone.
    url = f"/v1/workspaces/{first.json()['id']}"
    ph = {**acct.headers, "Idempotency-Key": "patch-1"}
    p1 = api.client.patch(url, json={"cash_on_hand_cents": 1}, headers=ph)
    api.client.patch(url, json={"cash_on_hand_cents": 2}, headers=acct.headers)
    p2 = api.client.patch(url, json={"cash_on_hand_cents": 1}, headers=ph)
    assert p2.json() == p1.json() and p2.json()["cash_on_hand_cents"] == 1
    other = register(api.client)
    mine = api.client.post(
        "/v1/workspaces",
        json={"name": "Acme"},
        headers={**other.headers, "Idempotency-Key": "create-acme-1"},
    )
    assert mine.status_code == 201 and mine.json()["org_id"] == other.org_id
    # Errors that a retry could fix are not stored: a 422 replays, a 401 does not.
    bad = {**acct.headers, "Idempotency-Key": "bad-body"}
    assert api.client.post("/v1/workspaces", json={}, headers=bad).status_code == 422
    replay = api.client.post("/v1/workspaces", json={}, headers=bad)
    assert replay.headers.get("idempotent-replayed") == "true"
    assert_error(
        api.client.post(
            "/v1/workspaces", json={"name": "x"}, headers={"Idempotency-Key": "k" * 256}
        ),
        400,
        "invalid_idempotency_key",
    )


def test_stored_responses_hold_no_credential_in_the_clear(api: ApiServer) -> None:
    body = {"org_name": "Acme", "email": unique_email(), "password": PASSWORD}
    h = {"Idempotency-Key": "register-1"}
    first = api.client.post("/v1/auth/register", json=body, headers=h)
    again = api.client.post("/v1/auth/register", json=body, headers=h)
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    token = first.json()["access_token"]
    stored = api.wh.rows("SELECT * FROM app.idempotency_keys WHERE idempotency_key = 'register-1'")
    assert len(stored) == 1 and stored[0]["status_code"] == 201
    assert token not in repr(stored) and "Acme" not in repr(stored)


def test_concurrent_requests_with_one_key_run_once(api: ApiServer) -> None:
    acct = register(api.client)
    h = {**acct.headers, "Idempotency-Key": "race-1"}
    results: list[httpx.Response] = []

    def send() -> None:
        with httpx.Client(base_url=api.base_url, timeout=30) as c:
            results.append(c.post("/v1/workspaces", json={"name": "Race"}, headers=h))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status_code for r in results)
    assert set(statuses) <= {201, 409} and 201 in statuses
    for r in results:
        if r.status_code == 409:
            assert r.json()["error"]["code"] == "idempotency_key_in_use"
    assert len(api.client.get("/v1/workspaces", headers=acct.headers).json()["data"]) == 1


def _start_of_a_window(needed: float = 30.0) -> None:
    """Wait for the next fixed one-minute window when fewer than `needed` seconds are left, so a
    burst of requests is counted in one window (a slow machine would else cross into the next,
    whose count starts again, and the 429 would never come)."""
    left = WINDOW_SECONDS - time.time() % WINDOW_SECONDS
    if left < needed:
        time.sleep(left + 0.2)


def test_rate_limit_answers_429_with_retry_after(api_server_factory) -> None:
    server = api_server_factory(api_rate_limit_per_minute=3)
    _start_of_a_window()
    acct = register(server.client)
    codes = [server.client.get("/v1/workspaces", headers=acct.headers) for _ in range(4)]
    assert [r.status_code for r in codes[:3]] == [200, 200, 200]
    err = assert_error(codes[3], 429, "rate_limited")
    assert err["type"] == "rate_limited"
    assert 1 <= int(codes[3].headers["retry-after"]) <= 60
    # Per credential: another organization's token has its own budget.
    other = register(server.client)
    assert server.client.get("/v1/workspaces", headers=other.headers).status_code == 200
    # Register and login are limited per client address.
    logins = [
        server.client.post("/v1/auth/login", json={"email": acct.email, "password": "x"})
        for _ in range(3)
    ]
    assert logins[-1].status_code == 429 and "retry-after" in logins[-1].headers


def test_failed_sign_ins_of_an_email_are_limited_whatever_the_address(
    api_server_factory,
) -> None:
    """Password guessing spread over many client addresses still meets a per-email limit:
    after N failures in the window even the right password gets 429 until the window ends."""
    server = api_server_factory(api_login_failures_per_window=3)
    acct = register(server.client)
    wrong = {"email": acct.email.upper(), "password": "not-the-password"}
    codes = [server.client.post("/v1/auth/login", json=wrong).status_code for _ in range(3)]
    assert codes == [401, 401, 401]
    right = {"email": acct.email, "password": PASSWORD}
    err = assert_error(server.client.post("/v1/auth/login", json=right), 429, "rate_limited")
    assert "failed sign-ins" in err["message"]
    # Another email is not affected, and a success does not count as a failure.
    other = register(server.client)
    ok = server.client.post("/v1/auth/login", json={"email": other.email, "password": PASSWORD})
    assert ok.status_code == 200, ok.text
    # The window's end lifts it (the counter lives in the shared warehouse table).
    with server.wh.begin() as db:
        db.execute(server.wh.text("UPDATE app.rate_limit_windows SET window_start = 0"))
    assert server.client.post("/v1/auth/login", json=right).status_code == 200


def test_docs_page_needs_no_internet(api: ApiServer) -> None:
    # Swagger UI's script and stylesheet come from this server, not a CDN: /docs works offline.
    page = api.client.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', page.text)
    assert len(assets) == 2 and all(a.startswith("/") for a in assets), assets
    for asset in assets:
        r = api.client.get(asset)
        assert r.status_code == 200 and len(r.content) > 10_000, asset


def test_openapi_documents_every_route_with_models_and_errors(api: ApiServer) -> None:
    doc = api.client.get("/openapi.json").json()
    assert api.client.get("/docs").status_code == 200
    assert "ErrorEnvelope" in doc["components"]["schemas"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            responses = op["responses"]
            ok = [s for s in responses if s.startswith("2")]
            assert ok, (method, path)
            for s in ok:
                content = responses[s].get("content", {})
                if s != "204" and "application/json" in content:  # not a file download
                    assert "$ref" in str(content), (method, path, s)
            # Each family's errors in its own dialect's model, for the statuses it answers.
            dialect = dialect_for(api.app, path)
            for s in ("401", "404", "422", "429", "500"):
                if int(s) not in dialect.statuses:
                    continue
                assert responses[s]["content"]["application/json"]["schema"] == {
                    "$ref": f"#/components/schemas/{dialect.model.__name__}"
                }, (method, path, s)
