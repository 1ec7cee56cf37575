"""A small margins warehouse behind a live API, for the 003 margins API tests: one pro-tier
organization whose workspace has three Stripe customers, tagged costs, recognized revenue for
August and September 2026 and one manual mapping, with the margins asset materialized for both
months through Dagster (so the API reads real marts)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import dagster as dg
import httpx
import sqlalchemy as sa

from finance_pipeline.margins.assets import customer_margins_monthly
from finance_pipeline.margins.mappings import upsert_mapping
from finance_pipeline.resources import WarehouseResource
from finance_pipeline.tenancy import set_org_tier
from finance_pipeline.warehouse import Warehouse
from finance_pipeline_tests.api.conftest import (
    Account,
    ApiServer,
    add_member,
    register,
)

M = 1_000_000
CRON_SECRET = "cron-secret-for-tests-0123456789"
CUSTOMERS = [
    ("cus_acme", "Acme Corp", "billing@acme.com"),
    ("cus_beta", "BetaCo", "billing@beta.co"),
    ("cus_delta", "Delta LLC", "ops@delta.io"),
]
# (month, customer, recognized micros)
REVENUE = [
    ("2026-08", "cus_acme", 90 * M),
    ("2026-08", "cus_beta", 40 * M),
    ("2026-09", "cus_acme", 100 * M),
    ("2026-09", "cus_beta", 50 * M),
]
# (day, tag, model, cost micros, requests)
COSTS = [
    (date(2026, 8, 10), "acme-corp", "gpt-4o", 25 * M, 100),
    (date(2026, 9, 10), "acme-corp", "gpt-4o", 20 * M, 150),
    (date(2026, 9, 11), "acme-corp", "gpt-4o-mini", 10 * M, 800),
    (date(2026, 9, 12), "gamma-inc", "gpt-4o", 15 * M, 200),
]


@dataclass(frozen=True)
class Org:
    """A registered organization with one workspace."""

    owner: Account
    workspace_id: str

    @property
    def headers(self) -> dict[str, str]:
        """The owner's Authorization header."""
        return self.owner.headers


def new_org(api: ApiServer, tier: str = "pro", name: str = "Acme Inc") -> Org:
    """Register an organization with one workspace, on `tier`."""
    owner = register(api.client, name)
    r = api.client.post("/v1/workspaces", json={"name": name}, headers=owner.headers)
    assert r.status_code == 201, r.text
    assert set_org_tier(api.wh, owner.org_id, tier)
    return Org(owner, r.json()["id"])


def member(api: ApiServer, org: Org, role: str) -> dict[str, str]:
    """A new user with `role` in the organization: their bearer headers."""
    return add_member(api, org.headers, role, org.owner.org_id)


def _insert(wh: Warehouse, table: str, rows: list[dict[str, Any]]) -> None:
    with wh.begin() as db:
        db.execute(sa.insert(wh.table(table)), rows)


def seed_customers(wh: Warehouse, ws: str) -> None:
    """The Stripe customers of CUSTOMERS in the workspace."""
    _insert(
        wh,
        "raw.stripe_customers",
        [
            {
                "workspace_id": ws, "id": cid, "account_id": "acct_1", "livemode": False,
                "name": name, "email": email, "deleted": False,
                "payload": {"id": cid, "metadata": {}}, "synced_at": 0,
            }
            for cid, name, email in CUSTOMERS
        ],
    )  # fmt: skip


def seed_margins(wh: Warehouse, ws: str) -> None:
    """Customers, costs, revenue and the manual mapping cus_acme <- acme-corp; then the margins
    asset for August and September 2026."""
    seed_customers(wh, ws)
    ledger, usage = [], []
    for i, (day, tag, model, micros, requests) in enumerate(COSTS):
        eid = f"{ws}_e{i}"
        ledger.append(
            {
                "workspace_id": ws, "entry_id": eid, "day": day, "occurred_at": None,
                "kind": "expense", "subtype": "recurring_expense", "category": None,
                "customer_id": tag, "amount_micros": micros, "currency": "usd",
                "amount_reporting_micros": micros, "reporting_currency": "usd", "fx_rate": "1",
                "source_table": "raw.usage_costs", "source_id": eid,
            }
        )  # fmt: skip
        usage.append(
            {
                "workspace_id": ws, "external_id": eid, "customer_tag": tag, "model": model,
                "cost_micros": micros, "currency": "usd", "request_count": requests,
                "occurred_on": day, "source": "t", "ingested_at": 0,
            }
        )  # fmt: skip
    _insert(wh, "core.ledger", ledger)
    _insert(wh, "raw.usage_costs", usage)
    _insert(
        wh,
        "core.recognized_revenue_monthly",
        [
            {
                "workspace_id": ws, "customer_id": c, "month": m, "currency": "usd",
                "amount_micros": v, "amount_reporting_micros": v, "reporting_currency": "usd",
                "skipped_lines": 0,
            }
            for m, c, v in REVENUE
        ],
    )  # fmt: skip
    upsert_mapping(wh, ws, "cus_acme", "acme-corp")
    res = {"warehouse": WarehouseResource(url=wh.url.render_as_string(hide_password=False))}
    for month in ("2026-08-01", "2026-09-01"):
        result = dg.materialize([customer_margins_monthly], resources=res, partition_key=month)
        assert result.success


def assert_error(r: httpx.Response, status: int, code: str, param: str | None = None) -> dict:
    """The default envelope with the margins API's status and code."""
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"type", "code", "message", "param", "request_id"}
    assert err["code"] == code, err
    if param is not None:
        assert err["param"] == param, err
    assert err["request_id"] == r.headers["x-request-id"]
    return err
