"""PostgreSQL restarted under the API (issue: reliability): while the database is away every
request answers 503 `database_unavailable` in the family's envelope with its request id and a
Retry-After, nothing is written, and the API recovers by itself once the server is back, with
every write accepted before the outage still there."""

from __future__ import annotations

import uuid

import pytest

from finance_pipeline_tests.api.conftest import ServerFactory, assert_error, register
from finance_pipeline_tests.api.test_v1_cfo import EXPENSE
from finance_pipeline_tests.private_postgres import private_postgres, wait_until

pytestmark = pytest.mark.postgres


def test_the_api_answers_503_while_postgres_restarts_and_recovers_by_itself(
    api_server_factory: ServerFactory,
) -> None:
    with private_postgres() as pg:
        api = api_server_factory(warehouse_url=pg.create_database("fp_outage"))
        acct = register(api.client)
        ws = api.client.post("/v1/workspaces", json={"name": "W"}, headers=acct.headers).json()
        url = f"/v1/workspaces/{ws['id']}/ingest/expenses"
        before = {**EXPENSE, "external_id": "before-outage"}
        r = api.client.post(url, json={"expenses": [before]}, headers=acct.headers)
        assert r.status_code == 202, r.text

        pg.stop("fast")
        during = {**EXPENSE, "external_id": "during-outage"}
        for method, path, body in (
            ("GET", "/v1/workspaces", None),
            ("POST", url, {"expenses": [during]}),
            ("GET", f"/v1/workspaces/{ws['id']}/metrics", None),
        ):
            rid = f"outage-{uuid.uuid4().hex[:8]}"
            r = api.client.request(
                method, path, json=body, headers={**acct.headers, "X-Request-Id": rid}
            )
            err = assert_error(r, 503, "database_unavailable")
            assert r.headers["retry-after"] == "2" and r.headers["x-request-id"] == rid
            assert rid in r.text, err

        pg.start()
        took = wait_until(
            lambda: api.client.get("/v1/workspaces", headers=acct.headers).status_code == 200
        )
        assert took < 10  # the first requests after the restart get new connections
        stored = api.wh.rows(
            "SELECT external_id FROM raw.expense_events WHERE workspace_id = :w ORDER BY 1",
            w=ws["id"],
        )
        assert [r["external_id"] for r in stored] == ["before-outage"]
        # And writes work again.
        r = api.client.post(url, json={"expenses": [during]}, headers=acct.headers)
        assert r.status_code == 202 and r.json()["inserted"] == 1, r.text
