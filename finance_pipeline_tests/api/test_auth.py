"""Register and login (the 004 seed's shapes), and what the bearer token check refuses."""

from __future__ import annotations

import re
import time

import jwt

from finance_pipeline.api.auth import ALGORITHM, ISSUER
from finance_pipeline.secrets import jwt_secret
from finance_pipeline_tests.api.conftest import (
    PASSWORD,
    ApiServer,
    assert_error,
    bearer,
    register,
    unique_email,
)

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+00:00$")


def test_register_returns_the_org_and_a_token(api: ApiServer) -> None:
    email = unique_email()
    r = api.client.post(
        "/v1/auth/register", json={"org_name": "Acme Inc", "email": email, "password": PASSWORD}
    )
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"org", "access_token"}
    assert set(body["org"]) == {"id", "name", "email", "created_at"}
    assert body["org"]["id"].startswith("org_")
    assert (body["org"]["name"], body["org"]["email"]) == ("Acme Inc", email)
    assert ISO_UTC.match(body["org"]["created_at"])
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == api.settings.jwt_access_ttl_seconds == 3600
    assert api.client.get("/v1/workspaces", headers=bearer(body["access_token"])).status_code == 200


def test_login_returns_the_same_org_and_refuses_wrong_credentials(api: ApiServer) -> None:
    acct = register(api.client)
    r = api.client.post("/v1/auth/login", json={"email": acct.email.upper(), "password": PASSWORD})
    assert r.status_code == 200
    assert r.json()["org"]["id"] == acct.org_id
    assert api.client.get("/v1/workspaces", headers=bearer(r.json()["access_token"])).is_success
    wrong = api.client.post("/v1/auth/login", json={"email": acct.email, "password": "nope!!"})
    assert_error(wrong, 401, "invalid_credentials")
    nobody = api.client.post("/v1/auth/login", json={"email": unique_email(), "password": "x"})
    assert_error(nobody, 401, "invalid_credentials")


def test_an_email_registers_once(api: ApiServer) -> None:
    acct = register(api.client)
    r = api.client.post(
        "/v1/auth/register", json={"org_name": "Again", "email": acct.email, "password": PASSWORD}
    )
    assert_error(r, 409, "email_taken", "email")


def test_register_validation_names_the_field(api: ApiServer) -> None:
    r = api.client.post("/v1/auth/register", json={"email": unique_email(), "password": PASSWORD})
    err = assert_error(r, 422, "missing_field", "org_name")
    assert err["type"] == "invalid_request"
    r = api.client.post(
        "/v1/auth/register", json={"org_name": "A", "email": "not-an-email", "password": PASSWORD}
    )
    assert_error(r, 422, "invalid_field", "email")


def _token(api: ApiServer, **claims: object) -> str:
    acct = register(api.client)
    base = jwt.decode(acct.token, options={"verify_signature": False})
    return jwt.encode({**base, **claims}, jwt_secret(api.settings), algorithm=ALGORITHM)


def test_expired_tampered_and_unsigned_tokens_are_401(api: ApiServer) -> None:
    now = int(time.time())
    expired = _token(api, iat=now - 7200, exp=now - 10)
    assert_error(api.client.get("/v1/workspaces", headers=bearer(expired)), 401, "invalid_token")

    acct = register(api.client)
    head, payload, sig = acct.token.split(".")
    other = register(api.client)
    # Another org's claims under this token's signature: the signature no longer matches.
    forged = ".".join([head, other.token.split(".")[1], sig])
    assert_error(api.client.get("/v1/workspaces", headers=bearer(forged)), 401, "invalid_token")
    flipped = ".".join([head, payload, sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB")])
    assert_error(api.client.get("/v1/workspaces", headers=bearer(flipped)), 401, "invalid_token")

    claims = jwt.decode(acct.token, options={"verify_signature": False})
    unsigned = jwt.encode(claims, None, algorithm="none")
    assert_error(api.client.get("/v1/workspaces", headers=bearer(unsigned)), 401, "invalid_token")

    wrong_key = jwt.encode(claims, "another-secret-of-enough-length-000000", algorithm=ALGORITHM)
    assert_error(api.client.get("/v1/workspaces", headers=bearer(wrong_key)), 401, "invalid_token")
    wrong_issuer = _token(api, iss="someone-else")
    assert_error(
        api.client.get("/v1/workspaces", headers=bearer(wrong_issuer)), 401, "invalid_token"
    )
    assert ISSUER == "finance_pipeline"


def test_missing_or_malformed_authorization_is_401(api: ApiServer) -> None:
    r = api.client.get("/v1/workspaces")
    assert_error(r, 401, "missing_token")
    assert r.headers["www-authenticate"] == "Bearer"
    r = api.client.get("/v1/workspaces", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert_error(r, 401, "missing_token")
    assert_error(api.client.get("/v1/workspaces", headers=bearer("garbage")), 401, "invalid_token")


def test_short_ttl_from_settings_expires_tokens(api_server_factory) -> None:
    server = api_server_factory(jwt_access_ttl_seconds=2)
    acct = register(server.client)
    claims = jwt.decode(acct.token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 2
    # PyJWT compares whole seconds: one more second makes the expiry certain.
    time.sleep(max(0.0, claims["exp"] + 1.1 - time.time()))
    r = server.client.get("/v1/workspaces", headers=acct.headers)
    assert_error(r, 401, "invalid_token")
    assert "expired" in r.json()["error"]["message"]
