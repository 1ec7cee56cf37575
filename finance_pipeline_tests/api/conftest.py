"""The API over real HTTP: uvicorn on a free port against a fresh warehouse, and an httpx client.

`api` is one server per test module (each test registers its own organizations, so tests stay
independent); `api_server_factory` starts more with other settings or extra routes;
`isolation_api` is the tenant-isolation suites' server, on SQLite or PostgreSQL.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import APIRouter, FastAPI
from finance_pipeline_dev.production import fresh_pg_database

from finance_pipeline.api import create_app
from finance_pipeline.api.families import Family, include_family
from finance_pipeline.settings import Settings
from finance_pipeline.warehouse import Warehouse

TEST_SECRET_KEY = "q2h0GjQ9b9cF1vV6m5m7mYQx0Ck1l1z8r2p6u3w4e5Q="
PASSWORD = "hunter2"


@dataclass
class ApiServer:
    """A running API: where it listens, a client for it, its settings and warehouse."""

    base_url: str
    client: httpx.Client
    settings: Settings
    app: FastAPI
    _server: uvicorn.Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def wh(self) -> Warehouse:
        """The server's warehouse (to check what it stored)."""
        return self.app.state.ctx.wh

    def stop(self) -> None:
        """Stop the server and close the client."""
        self.client.close()
        self._server.should_exit = True
        self._thread.join(timeout=15)
        self.wh.dispose()


def start_server(app: FastAPI, settings: Settings) -> ApiServer:
    """Serve `app` with uvicorn in a thread on a free port of 127.0.0.1 (bound before start)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    base = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=base, timeout=30)
    return ApiServer(base, client, settings, app, server, thread)


def server_settings(data_dir: Path, warehouse_url: str | None = None, **overrides: Any) -> Settings:
    """Settings of a test server: its own data dir (and JWT key file), SQLite unless given."""
    return Settings(
        data_dir=data_dir,
        warehouse_url=warehouse_url or f"sqlite:///{data_dir / 'warehouse.sqlite'}",
        secret_key=TEST_SECRET_KEY,
        **overrides,
    )


ServerFactory = Callable[..., ApiServer]


def _factory(tmp_dir: Path) -> tuple[ServerFactory, list[ApiServer]]:
    started: list[ApiServer] = []

    def make(
        *,
        routers: tuple[tuple[Family, APIRouter], ...] = (),
        warehouse_url: str | None = None,
        **overrides: Any,
    ) -> ApiServer:
        settings = server_settings(tmp_dir / uuid.uuid4().hex[:8], warehouse_url, **overrides)
        app = create_app(settings)
        for family, router in routers:
            include_family(app, family, router)
        server = start_server(app, settings)
        started.append(server)
        return server

    return make, started


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """One API server on a fresh SQLite warehouse for the test module."""
    make, started = _factory(tmp_path_factory.mktemp("api"))
    yield make()
    for server in started:
        server.stop()


@pytest.fixture
def api_server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start servers with other settings (`api_rate_limit_per_minute=3`), extra family routers
    (`routers=((family, router),)`) or another warehouse (`warehouse_url=`); stopped after."""
    make, started = _factory(tmp_path)
    yield make
    for server in started:
        server.stop()


#: The tenant-isolation suites' server settings: requests only queued (no pipeline runs), reads
#: never wait, no rate limit in the way, and a Stripe base that refuses connections (no request
#: leaves the machine).
ISOLATION_SETTINGS: dict[str, Any] = {
    "requests_inline": False,
    "api_read_wait_seconds": 0,
    "api_rate_limit_per_minute": 1_000_000,
    "stripe_api_base": "http://127.0.0.1:9",
}

#: Runs a test once per warehouse: `isolation_api` on SQLite and on PostgreSQL (production's).
ON_BOTH_WAREHOUSES = pytest.mark.parametrize(
    "isolation_api",
    ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
    indirect=True,
)


@pytest.fixture(scope="module")
def isolation_api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    """The tenant-isolation suites' server (ISOLATION_SETTINGS), one per module and warehouse
    kind: `request.param` "sqlite" (the default) or "postgresql", a database of its own on the
    shared server, dropped after (parametrize with ON_BOTH_WAREHOUSES)."""
    kind = getattr(request, "param", "sqlite")
    with contextlib.ExitStack() as stack:
        url = None
        if kind == "postgresql":
            url = stack.enter_context(fresh_pg_database(request.getfixturevalue("pg_admin")))
        make, started = _factory(tmp_path_factory.mktemp(f"isolation_{kind}"))
        try:
            server = make(warehouse_url=url, **ISOLATION_SETTINGS)
            assert server.wh.is_sqlite == (kind == "sqlite"), server.wh
            yield server
        finally:
            # Before the database is dropped: the server's pool holds connections to it.
            for started_server in started:
                started_server.stop()


@dataclass(frozen=True)
class Account:
    """A registered organization: its owner's email, org id and bearer headers."""

    email: str
    org_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header of the owner's access token."""
        return {"Authorization": f"Bearer {self.token}"}


def unique_email(label: str = "ceo") -> str:
    """An email no other test uses."""
    return f"{label}-{uuid.uuid4().hex[:10]}@acme.com"


def register(client: httpx.Client, org_name: str = "Acme Inc") -> Account:
    """Register a new organization and return its owner's account."""
    email = unique_email()
    r = client.post(
        "/v1/auth/register", json={"org_name": org_name, "email": email, "password": PASSWORD}
    )
    assert r.status_code == 201, r.text
    return Account(email, r.json()["org"]["id"], r.json()["access_token"])


def add_member(
    api: ApiServer, owner_headers: dict[str, str], role: str, org_id: str | None = None
) -> dict[str, str]:
    """Add a new user with `role` to the owner's organization (`org_id`: checked on login); their
    bearer headers."""
    email = unique_email(role)
    r = api.client.post(
        "/v1/members",
        json={"email": email, "role": role, "password": PASSWORD},
        headers=owner_headers,
    )
    assert r.status_code == 201, r.text
    assert r.json()["role"] == role and r.json()["email"] == email
    login = api.client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    if org_id is not None:
        assert login.json()["org"]["id"] == org_id
    return bearer(login.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    """An Authorization header for a token or API key."""
    return {"Authorization": f"Bearer {token}"}


def assert_error(r: httpx.Response, status: int, code: str, param: str | None = None) -> dict:
    """The response is the 004 error envelope with this status and code (and param), carrying
    the request id the X-Request-Id header has."""
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"type", "code", "message", "param", "request_id"}
    assert err["code"] == code, err
    if param is not None:
        assert err["param"] == param, err
    assert err["request_id"] == r.headers["x-request-id"]
    return err
