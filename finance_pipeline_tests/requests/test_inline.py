"""The inline runner end to end (SQLite and PostgreSQL): a manual revenue row lands in raw, a
refresh request for its day runs in this process, and mart.revenue_daily includes it; the run is
recorded in the Dagster instance with the request ids."""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from finance_pipeline.partitions import last_daily_partition
from finance_pipeline.requests.inline import run_pending_inline
from finance_pipeline.requests.sensors import REQUEST_IDS_TAG
from finance_pipeline.requests.store import claim, get_request, request_refresh
from finance_pipeline.tenancy import create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse

DAY = last_daily_partition() - timedelta(days=5)
C = 10_000  # micros per cent


def _manual_revenue(wh: Warehouse, cents: int) -> None:
    with wh.begin() as db:
        db.execute(
            wh.table("raw.manual_revenue").insert(),
            [
                {
                    "workspace_id": "ws1",
                    "external_id": "m_1",
                    "type": "one_time",
                    "subtype": "one_time",
                    "amount_micros": cents * C,
                    "currency": "usd",
                    "date": DAY,
                    "ingested_via": "test",
                    "ingested_at": 1_700_000_000,
                }
            ],
        )


def test_a_refresh_request_runs_inline_and_the_mart_includes_the_row(warehouse: Warehouse) -> None:
    wh = warehouse
    create_workspace(wh, create_organization(wh, "Org", org_id="org1"), "One", workspace_id="ws1")
    _manual_revenue(wh, 25_000)
    rid = request_refresh(wh, "ws1", DAY, DAY, reason="manual revenue added", requested_by="api")
    taken = request_refresh(wh, "ws1", DAY, DAY, reason="taken by the sensor")
    assert claim(wh, [taken]) == [taken]
    instance = dg.DagsterInstance.ephemeral()

    [row] = run_pending_inline(instance, wh, [rid, taken])[:1]

    assert row["id"] == rid and row["status"] == "succeeded", row["error"]
    assert row["run_id"] and row["finished_at"] >= row["started_at"]
    run = instance.get_run_by_id(row["run_id"])
    assert run is not None and run.job_name == "requested_refresh"
    assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags[REQUEST_IDS_TAG] == rid
    assert run.tags["dagster/asset_partition_range_start"] == DAY.isoformat()
    [mart] = wh.rows(
        "SELECT gross_revenue_micros, manual_revenue_micros FROM mart.revenue_daily"
        " WHERE workspace_id = 'ws1' AND day = :d",
        d=DAY,
    )
    assert mart == {"gross_revenue_micros": 25_000 * C, "manual_revenue_micros": 25_000 * C}
    # The request another runner claimed was left alone; a finished one is not run again.
    assert (get_request(wh, taken) or {})["status"] == "running"
    assert run_pending_inline(instance, wh, [rid])[0]["run_id"] == row["run_id"]
    assert len(instance.get_runs()) == 1


def test_a_failed_inline_run_fails_its_requests(sqlite_warehouse: Warehouse) -> None:
    wh = sqlite_warehouse
    create_workspace(wh, create_organization(wh, "Org", org_id="org1"), "One", workspace_id="ws1")
    rid = request_refresh(wh, "ws1", DAY, DAY, reason="r")
    with wh.begin() as db:  # a broken warehouse: the ledger's source table is gone
        db.execute(wh.text("DROP TABLE raw.manual_revenue"))
    [row] = run_pending_inline(dg.DagsterInstance.ephemeral(), wh)
    assert row["id"] == rid and row["status"] == "failed"
    assert row["error"].startswith(f"run {row['run_id']} failed: ")


def test_inline_is_the_default_of_the_embedded_warehouse_only() -> None:
    from finance_pipeline.settings import Settings

    assert Settings().resolved_requests_inline is True  # SQLite under data_dir
    pg = "postgresql+psycopg://u@h/db"
    assert Settings(warehouse_url=pg).resolved_requests_inline is False
    assert Settings(warehouse_url=pg, requests_inline=True).resolved_requests_inline is True
