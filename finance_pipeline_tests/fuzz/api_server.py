"""The API server that generated requests go to (the body fuzz and the Schemathesis contract test),
and the owner they are sent as."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from finance_pipeline.tenancy import set_org_tier
from finance_pipeline_tests.api.conftest import ApiServer, _factory, register


@contextmanager
def generated_traffic_server(tmp_dir: Path, **overrides: Any) -> Iterator[ApiServer]:
    """A server whose rate limit stays out of the way of generated traffic. The Stripe base
    refuses connections at once (port 9, nothing listens), requests are only queued (no pipeline
    run) and reads never wait for a refresh: requests stay short and no generated request reaches
    Stripe or runs Dagster. `overrides`: further settings (a smaller body limit)."""
    make, started = _factory(tmp_dir)
    try:
        yield make(
            api_rate_limit_per_minute=1_000_000,
            stripe_api_base="http://127.0.0.1:9",
            requests_inline=False,
            api_read_wait_seconds=0,
            **overrides,
        )
    finally:
        for server in started:
            server.stop()


def pro_owner(
    server: ApiServer, workspace_name: str, cash_on_hand_cents: int
) -> tuple[dict[str, str], str]:
    """An owner's headers and their one workspace. The organization is on the pro tier, so the
    003 margins API's routes run past their tier gate; the headers name the workspace with
    X-Workspace-Id, since generated POST /v1/workspaces calls add workspaces and an org with
    several answers 400 `workspace_required` without it."""
    acct = register(server.client)
    set_org_tier(server.wh, acct.org_id, "pro")
    r = server.client.post(
        "/v1/workspaces",
        json={"name": workspace_name, "cash_on_hand_cents": cash_on_hand_cents},
        headers=acct.headers,
    )
    assert r.status_code == 201, r.text
    workspace_id = r.json()["id"]
    return {**acct.headers, "X-Workspace-Id": workspace_id}, workspace_id
