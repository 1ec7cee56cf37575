"""Two uvicorn workers on one PostgreSQL warehouse: idempotency and the rate limit hold across
worker processes (the state is in the warehouse, not in a process), and a token issued by one
worker is accepted by the other. Each request comes from its own connection, so its client port
in the access log (formatted with the worker's pid) tells which worker served it."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from finance_pipeline_tests.api.conftest import PASSWORD, TEST_SECRET_KEY, bearer, unique_email

LIMIT = 30
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "pid": {"format": "%(process)d %(name)s %(message)s"},
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "pid",
            "stream": "ext://sys.stderr",
        }
    },
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.access": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}
_ACCESS = re.compile(r"^(\d+) uvicorn\.access 127\.0\.0\.1:(\d+) ")


@dataclass
class Workers:
    """A two-worker uvicorn serving the API, and its log."""

    base_url: str
    log: Path

    def pids(self, responses: list[httpx.Response]) -> set[int]:
        """The pids of the workers that served these responses."""
        by_port = {}
        for line in self.log.read_text().splitlines():
            m = _ACCESS.match(line)
            if m:
                by_port[int(m.group(2))] = int(m.group(1))
        return {by_port[r.extensions["client_port"]] for r in responses}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def workers(pg_url: str, tmp_path: Path) -> Iterator[Workers]:
    """`uvicorn --workers 2` with the app factory, on a fresh PostgreSQL database."""
    cfg = tmp_path / "log.json"
    cfg.write_text(json.dumps(LOG_CONFIG))
    log = tmp_path / "uvicorn.log"
    port = _free_port()
    env = {
        **os.environ,
        "FP_WAREHOUSE_URL": pg_url,
        "FP_DATA_DIR": str(tmp_path / "data"),
        "FP_SECRET_KEY": TEST_SECRET_KEY,
        "FP_API_RATE_LIMIT_PER_MINUTE": str(LIMIT),
    }
    # FP_JWT_SECRET unset: both workers must agree on the one key file they create.
    env.pop("FP_JWT_SECRET", None)
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "finance_pipeline.api.app:app_from_settings",
        "--factory",
        "--workers",
        "2",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-config",
        str(cfg),
    ]
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while log.read_text().count("Application startup complete") < 2:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start:\n{log.read_text()}")
            time.sleep(0.2)
        yield Workers(base, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _fresh_minute() -> None:
    """Start near the beginning of a rate-limit window so a test's requests share one."""
    if time.time() % 60 > 40:
        time.sleep(60 - time.time() % 60 + 0.2)


def _note_port(response: httpx.Response) -> None:
    # While the connection is open: the local port the access log shows as the client's.
    stream = response.extensions["network_stream"]
    response.extensions["client_port"] = stream.get_extra_info("client_addr")[1]


def _client(base: str) -> httpx.Client:
    # A new connection per request, so the kernel spreads them over the workers.
    return httpx.Client(
        base_url=base,
        timeout=60,
        headers={"Connection": "close"},
        event_hooks={"response": [_note_port]},
    )


def _post(base: str, path: str, **kw: object) -> httpx.Response:
    with _client(base) as c:
        return c.post(path, **kw)  # type: ignore[arg-type]


def _get(base: str, path: str, **kw: object) -> httpx.Response:
    with _client(base) as c:
        return c.get(path, **kw)  # type: ignore[arg-type]


def _register(base: str) -> tuple[str, httpx.Response]:
    r = _post(
        base,
        "/v1/auth/register",
        json={"org_name": "Acme", "email": unique_email(), "password": PASSWORD},
    )
    assert r.status_code == 201, r.text
    return r.json()["access_token"], r


@pytest.mark.postgres
@pytest.mark.slow
def test_idempotency_and_rate_limit_hold_across_two_workers(workers: Workers) -> None:
    _fresh_minute()
    base = workers.base_url

    # Idempotency: 24 requests with one key, in concurrent bursts over both workers.
    token, registered = _register(base)
    h = {**bearer(token), "Idempotency-Key": "two-workers-1"}
    body = {"name": "Acme Corp", "cash_on_hand_cents": 5000000}
    with ThreadPoolExecutor(8) as pool:
        idem = list(
            pool.map(
                lambda _: _post(base, "/v1/workspaces", json=body, headers=h),
                range(24),
            )
        )
    created = {r.json()["id"] for r in idem if r.status_code == 201}
    assert len(created) == 1, [r.text for r in idem]
    for r in idem:
        if r.status_code == 409:  # its twin was still running in the other worker
            assert r.json()["error"]["code"] == "idempotency_key_in_use"
        else:
            assert r.status_code == 201
    listed = _get(base, "/v1/workspaces", headers=bearer(token)).json()
    assert [w["id"] for w in listed["data"]] == list(created)
    other = _post(base, "/v1/workspaces", json={"name": "Other"}, headers=h)
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    served = workers.pids(idem)
    assert len(served) == 2, "both workers served the idempotent requests"
    # The token was issued by one worker and accepted by both.
    assert workers.pids([registered]) < served

    # Rate limit: 45 requests of one token; exactly LIMIT pass, whichever worker serves them.
    _fresh_minute()
    token, _ = _register(base)
    with ThreadPoolExecutor(8) as pool:
        limited = list(
            pool.map(
                lambda _: _get(base, "/v1/workspaces", headers=bearer(token)),
                range(45),
            )
        )
    statuses = [r.status_code for r in limited]
    assert statuses.count(200) == LIMIT and statuses.count(429) == 45 - LIMIT, statuses
    for r in limited:
        if r.status_code == 429:
            assert 1 <= int(r.headers["retry-after"]) <= 60
            assert r.json()["error"]["request_id"] == r.headers["x-request-id"]
    assert len(workers.pids(limited)) == 2, "both workers counted"
