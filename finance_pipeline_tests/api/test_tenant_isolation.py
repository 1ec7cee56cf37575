"""Tenant isolation and the role matrix over every operation of the served /openapi.json.

Two pro-tier organizations, A and B, each with workspaces holding real data (ingested expenses and
revenue, product records, marts, margins with a customer mapping, a Stripe connection, a sync job,
an export, a forecast and a scenario, an API key, members). Every operation of the schema is either
exercised or listed in EXEMPT with a reason, so a new route is covered (or fails) automatically:

- B (owner JWT and owner API key) naming A's workspace, slug or resource ids in the path, query,
  X-Workspace-Id or body gets 404 and a body without any of A's identifiers; an operation naming
  nothing of A's acts in B's own organization and never shows A's identifiers either;
- every GET as B on B's own resources (the lists included) shows none of A's items;
- A's API key scoped to workspace 1 never reaches workspace 2 (404, or 403 workspace_scoped_key
  for rights over the whole organization) and never shows workspace 2's identifiers;
- A's member and finance users and keys get 403 exactly where `lib/access.py` denies the route's
  declared right (read from the route's `require(...)` dependency), never a 2xx there;
- the same requests by A's owner succeed (a control: B's 404s come from tenancy, not from a bad
  request), and nothing B or the scoped key tried changed A's resources.

test_tenant_isolation_property.py makes the tenancy part a hypothesis property over generated
data in every workspace table and mixes of both tenants' ids in one request.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.routing import APIRoute

from finance_pipeline.lib.access import ORG_LEVEL, Permission, allows
from finance_pipeline.margins.assets import customer_margins_monthly
from finance_pipeline.margins.mappings import upsert_mapping
from finance_pipeline.resources import WarehouseResource
from finance_pipeline.tenancy import connect_stripe, set_org_tier
from finance_pipeline_tests.api.conftest import (
    ON_BOTH_WAREHOUSES,
    PASSWORD,
    Account,
    ApiServer,
    bearer,
    register,
    unique_email,
)
from finance_pipeline_tests.api.test_v1_cfo import SEED_FORECAST, _metrics_row, _mrr_day

PF = "/api/v1/platform/finance"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "api.md"
M = 1_000_000
# The schema's operation count when this suite was written: fewer means routes went missing from
# the schema (and so from this suite), not that the suite may cover less.
MIN_OPERATIONS = 54
WEBHOOK_SECRET = "whsec_test_0123456789abcdef"

#: Operations not driven with another organization's credentials, and why.
EXEMPT: dict[tuple[str, str], str] = {
    ("POST", "/v1/auth/register"): "no credential: creates a new organization, names no other",
    ("POST", "/v1/auth/login"): (
        "no credential; naming another org's id is test_login_never_enters_another_org"
    ),
    ("GET", f"{PF}/reports/download/{{token}}"): (
        "no bearer: the signed, expiring link is the credential (test_platform_finance_jobs)"
    ),
    ("POST", f"{PF}/stripe/webhook/{{workspace_id}}"): (
        "no bearer: authenticated by Stripe's signature with the workspace's secret"
    ),
}

#: Rights of routes that check them in their body instead of a `require(...)` dependency.
UNDECLARED_RIGHTS: dict[tuple[str, str], Permission] = {
    # Either the scheduler's cron secret or any member's credential (docs/api.md, 003).
    ("GET", "/api/stripe/revenue-sync"): Permission.READ,
}

#: Statuses of A's owner's control request other than a 2xx, where the request is right but the
#: state answers otherwise (after the workspace check, which is what the control proves).
CONTROL_STATUSES: dict[tuple[str, str], set[int]] = {
    # The test server's Stripe base refuses connections (no request leaves the machine).
    ("POST", "/v1/workspaces/{id}/ingest/stripe"): {502},
    # Already connected in the seed.
    ("POST", "/api/stripe/connect"): {400, 409},
}

#: Query parameters an operation requires, beyond the resource ids (resolved per workspace).
QUERY: dict[tuple[str, str], dict[str, str]] = {
    ("GET", f"{PF}/reports/export"): {"report_type": "mrr_breakdown", "format": "csv"},
}


@dataclass
class Ws:
    """One seeded workspace and the ids of what it holds."""

    id: str
    slug: str
    label: str  # in every name and external id of the workspace (what a scan looks for)
    forecast_id: str = ""
    scenario_id: str = ""
    export_id: str = ""
    job_id: str = ""
    revenue_id: str = ""
    cost_id: str = ""
    mapping_id: str = ""

    @property
    def customer(self) -> str:
        """Its Stripe customer id."""
        return f"cus_{self.label}"

    @property
    def tag(self) -> str:
        """Its customers' cost tag, mapped to the customer."""
        return f"tag-{self.label}"

    def identifiers(self) -> set[str]:
        """Strings that only this workspace's data contains."""
        ids = {self.id, self.slug, self.label, self.forecast_id, self.scenario_id}
        ids |= {self.export_id, self.job_id, self.revenue_id, self.cost_id, self.mapping_id}
        return {i for i in ids if i}


@dataclass
class Tenant:
    """A seeded organization: its owner, workspaces, members, API key and identifiers."""

    owner: Account
    marker: str
    workspaces: list[Ws]
    key_id: str = ""
    key_prefixes: set[str] = field(default_factory=set)
    owner_key: str = ""
    finance_user_id: str = ""
    users: dict[str, dict[str, str]] = field(default_factory=dict)  # role -> bearer headers
    emails: set[str] = field(default_factory=set)
    user_ids: set[str] = field(default_factory=set)

    def identifiers(self) -> set[str]:
        """Every string that belongs to this organization alone."""
        ids = {self.owner.org_id, self.marker, self.key_id} | self.emails
        ids |= self.user_ids | self.key_prefixes
        for ws in self.workspaces:
            ids |= ws.identifiers()
        return {i for i in ids if i}


# Every test, once on SQLite and once on PostgreSQL (production's warehouse).
pytestmark = ON_BOTH_WAREHOUSES


@pytest.fixture(scope="module")
def api(isolation_api: ApiServer) -> ApiServer:
    """The isolation suites' server (api/conftest.py), on the test's warehouse."""
    return isolation_api


def _ok(r: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return r.json()


def _seed_marts(api: ApiServer, ws: Ws) -> None:
    """Metrics, MRR, Stripe customers, tagged costs and recognized revenue of the workspace (the
    margins marts are built from them once all tenants are seeded)."""
    wh = api.wh
    rows: dict[str, list[dict[str, Any]]] = {
        "mart.cfo_metrics_daily": [_metrics_row(ws.id, "2026-02-28")],
        "mart.mrr_daily": [_mrr_day(ws.id, "2026-02-28", 2150000)],
        "raw.stripe_customers": [
            {
                "workspace_id": ws.id, "id": ws.customer, "account_id": f"acct_{ws.label}",
                "livemode": False, "name": f"Customer {ws.label}", "email": f"{ws.label}@x.io",
                "deleted": False, "payload": {"id": ws.customer, "metadata": {}}, "synced_at": 0,
            }
        ],
        "core.ledger": [
            {
                "workspace_id": ws.id, "entry_id": f"{ws.label}_e", "day": date(2026, 9, 10),
                "occurred_at": None, "kind": "expense", "subtype": "recurring_expense",
                "category": None, "customer_id": ws.tag, "amount_micros": 20 * M,
                "currency": "usd", "amount_reporting_micros": 20 * M, "reporting_currency": "usd",
                "fx_rate": "1", "source_table": "raw.usage_costs", "source_id": f"{ws.label}_e",
            }
        ],
        "raw.usage_costs": [
            {
                "workspace_id": ws.id, "external_id": f"{ws.label}_e", "customer_tag": ws.tag,
                "model": "gpt-4o", "cost_micros": 20 * M, "currency": "usd",
                "request_count": 10, "occurred_on": date(2026, 9, 10), "source": "t",
                "ingested_at": 0,
            }
        ],
        "core.recognized_revenue_monthly": [
            {
                "workspace_id": ws.id, "customer_id": ws.customer, "month": "2026-09",
                "currency": "usd", "amount_micros": 100 * M, "amount_reporting_micros": 100 * M,
                "reporting_currency": "usd", "skipped_lines": 0,
            }
        ],
    }  # fmt: skip
    with wh.begin() as db:
        for table, values in rows.items():
            db.execute(sa.insert(wh.table(table)), values)
    upsert_mapping(wh, ws.id, ws.customer, ws.tag)
    connect_stripe(
        wh, ws.id, account_id=f"acct_{ws.label}", livemode=False,
        api_key="sk_test_0123456789", settings=api.settings,
    )  # fmt: skip


def _seed_api(api: ApiServer, t: Tenant, ws: Ws) -> None:
    """What the API itself creates in the workspace, as its owner would."""
    c, h = api.client, {**t.owner.headers, "X-Workspace-Id": ws.id}
    url = f"/v1/workspaces/{ws.id}"
    expense = {
        "subtype": "recurring_expense", "amount_cents": 120000, "currency": "USD",
        "occurred_at": "2026-02-01", "vendor": f"Vendor {ws.label}", "external_id": f"x-{ws.label}",
    }  # fmt: skip
    _ok(c.post(f"{url}/ingest/expenses", json={"expenses": [expense]}, headers=h), 202)
    revenue = {
        "subtype": "recurring", "amount_cents": 250000, "currency": "USD",
        "occurred_at": "2026-02-01", "description": f"Sub {ws.label}", "external_id": f"r-{ws.label}",
    }  # fmt: skip
    _ok(c.post(f"{url}/ingest/revenue", json={"revenue": [revenue]}, headers=h), 202)
    products = f"/api/v1/products/{ws.slug}"
    ws.revenue_id = _ok(
        c.post(f"{products}/revenue", json=_revenue_body(f"rev_{ws.label}"), headers=h), 201
    )["data"]["id"]
    ws.cost_id = _ok(
        c.post(f"{products}/costs", json=_cost_body(f"cost_{ws.label}"), headers=h), 201
    )["data"]["id"]
    fc = {**SEED_FORECAST, "name": f"Plan {ws.label}"}
    ws.forecast_id = _ok(c.post(f"{url}/forecasts", json=fc, headers=h), 201)["id"]
    ws.scenario_id = _ok(c.post(f"{url}/scenarios", json=_scenario_body(ws), headers=h), 201)["id"]
    export = _ok(c.post(f"{PF}/reports/export", json=_export_body(), headers=h), 202)
    ws.export_id = export["data"]["export_id"]
    job = _ok(c.post(f"{PF}/stripe-sync", json={"reason": ws.label}, headers=h), 202)
    ws.job_id = job["data"]["job_id"]
    _ok(c.put(f"{PF}/stripe/webhook-secret", json={"secret": WEBHOOK_SECRET}, headers=h))
    [mapping] = _ok(c.get("/api/customer-mappings", headers=h))["data"]
    ws.mapping_id = mapping["id"]


def _user(api: ApiServer, t: Tenant, role: str) -> str:
    """Add a user with `role` to the organization; their login token's headers go in t.users."""
    email = unique_email(role)
    body = {"email": email, "role": role, "password": PASSWORD}
    user_id = _ok(api.client.post("/v1/members", json=body, headers=t.owner.headers), 201)[
        "user_id"
    ]
    login = _ok(api.client.post("/v1/auth/login", json={"email": email, "password": PASSWORD}))
    t.users[role] = bearer(login["access_token"])
    t.emails.add(email)
    t.user_ids.add(user_id)
    return user_id


def _key(api: ApiServer, t: Tenant, role: str, workspace_id: str | None = None) -> dict[str, Any]:
    body = {"name": f"{t.marker} {role}", "role": role, "workspace_id": workspace_id}
    return _ok(api.client.post("/v1/api_keys", json=body, headers=t.owner.headers), 201)


def _tenant(api: ApiServer, workspaces: int) -> Tenant:
    """A pro-tier organization with `workspaces` seeded workspaces, a finance and a member user,
    and an owner API key."""
    marker = "zq" + uuid.uuid4().hex[:8]
    owner = register(api.client, f"{marker} Holdings")
    assert set_org_tier(api.wh, owner.org_id, "pro")
    t = Tenant(owner, marker, [])
    for i in range(1, workspaces + 1):
        label = f"{marker}w{i}"
        r = api.client.post(
            "/v1/workspaces",
            json={"name": f"{label} Books", "cash_on_hand_cents": 5000000},
            headers=owner.headers,
        )
        data = _ok(r, 201)
        t.workspaces.append(Ws(data["id"], api.wh.scalar(
            "SELECT slug FROM app.workspaces WHERE id = :w", w=data["id"]
        ), label))  # fmt: skip
    for ws in t.workspaces:
        _seed_marts(api, ws)
        _seed_api(api, t, ws)
    t.emails.add(owner.email)
    t.user_ids |= {m["user_id"] for m in _ok(api.client.get("/v1/members", headers=owner.headers))[
        "data"
    ]}  # fmt: skip
    t.finance_user_id = _user(api, t, "finance")
    _user(api, t, "member")
    key = _key(api, t, "owner")
    t.key_id, t.owner_key = key["id"], key["key"]
    t.key_prefixes.add(key["prefix"])
    return t


@dataclass(frozen=True)
class World:
    """The two organizations and A's extra credentials."""

    a: Tenant
    b: Tenant
    a_ws1_key: str  # owner role, scoped to A's workspace 1
    role_keys: dict[str, str]  # A's org-wide finance and member API keys


@pytest.fixture(scope="module")
def world(api: ApiServer) -> World:
    """A with two workspaces, B with one; the margins marts built for September 2026."""
    a, b = _tenant(api, 2), _tenant(api, 1)
    res = {"warehouse": WarehouseResource(url=api.wh.url.render_as_string(hide_password=False))}
    result = dg.materialize([customer_margins_monthly], resources=res, partition_key="2026-09-01")
    assert result.success
    scoped = _key(api, a, "owner", a.workspaces[0].id)
    a.key_prefixes.add(scoped["prefix"])
    roles = {role: _key(api, a, role)["key"] for role in ("finance", "member")}
    return World(a, b, scoped["key"], roles)


# --- request bodies ------------------------------------------------------------------------------
# Valid bodies, so that a refusal is about tenancy or the role and never about the input. Bodies
# carry no names of their own tenant: only references to its resources.


def _revenue_body(record_id: str | None = None) -> dict[str, Any]:
    return {
        "id": record_id or f"rec_{uuid.uuid4().hex[:10]}", "amount": 99.00, "currency": "USD",
        "type": "subscription", "source": "stripe", "date": "2024-01-15",
    }  # fmt: skip


def _cost_body(record_id: str | None = None) -> dict[str, Any]:
    return {
        "id": record_id or f"rec_{uuid.uuid4().hex[:10]}", "name": "Vercel Pro", "amount": 20.00,
        "currency": "USD", "category": "INFRASTRUCTURE", "isRecurring": True, "date": "2024-01-15",
    }  # fmt: skip


def _scenario_body(ws: Ws) -> dict[str, Any]:
    return {"baseline_forecast_id": ws.forecast_id, "delta": {"type": "price_change", "pct": 0.1}}


def _export_body() -> dict[str, Any]:
    return {
        "report_type": "mrr_breakdown", "format": "csv",
        "date_start": "2026-02-01", "date_end": "2026-02-28",
    }  # fmt: skip


def _item(kind: str) -> dict[str, Any]:
    base = {"amount_cents": 1000, "currency": "USD", "occurred_at": "2026-02-02"}
    if kind == "expenses":
        return {**base, "subtype": "one_time_expense", "vendor": "V"}
    return {**base, "subtype": "recurring", "description": "D"}


Body = Callable[[Ws], dict[str, Any]]
BODIES: dict[tuple[str, str], Body] = {
    ("POST", "/v1/workspaces"): lambda ws: {"name": "Another workspace"},
    ("PATCH", "/v1/workspaces/{id}"): lambda ws: {"cash_on_hand_cents": 5000000},
    ("POST", "/v1/members"): lambda ws: {
        "email": unique_email("new"), "role": "member", "password": PASSWORD
    },
    ("PATCH", "/v1/members/{user_id}"): lambda ws: {"role": "finance"},
    ("POST", "/v1/api_keys"): lambda ws: {"role": "member", "workspace_id": ws.id},
    ("POST", "/v1/workspaces/{id}/ingest/expenses"): lambda ws: {"expenses": [_item("expenses")]},
    ("POST", "/v1/workspaces/{id}/ingest/revenue"): lambda ws: {"revenue": [_item("revenue")]},
    ("POST", "/v1/workspaces/{id}/ingest/stripe"): lambda ws: {"stripe_api_key": "sk_test_abc"},
    ("POST", "/v1/workspaces/{id}/forecasts"): lambda ws: SEED_FORECAST,
    ("POST", "/v1/workspaces/{id}/scenarios"): _scenario_body,
    ("POST", f"{PF}/stripe-sync"): lambda ws: {"reason": "month-end close"},
    ("PUT", f"{PF}/stripe/webhook-secret"): lambda ws: {"secret": WEBHOOK_SECRET},
    ("POST", f"{PF}/reports/export"): lambda ws: _export_body(),
    ("POST", "/api/v1/products/{id_or_slug}/revenue"): lambda ws: _revenue_body(),
    ("POST", "/api/v1/products/{id_or_slug}/costs"): lambda ws: _cost_body(),
    ("POST", "/api/customer-mappings"): lambda ws: {
        "stripeCustomerId": ws.customer, "tagValue": ws.tag
    },
    ("POST", "/api/stripe/connect"): lambda ws: {"stripeKey": "sk_test_0123456789"},
}  # fmt: skip


# --- the operations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    """One operation of the served schema."""

    method: str
    path: str
    spec: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        """(METHOD, path template)."""
        return self.method, self.path

    def params(self, where: str) -> list[dict[str, Any]]:
        """Its declared parameters in `where` (path, query, header)."""
        return [p for p in self.spec.get("parameters", []) if p["in"] == where]


def operations(api: ApiServer) -> list[Op]:
    """Every operation of the served /openapi.json."""
    spec = _ok(api.client.get("/openapi.json"))
    return [
        Op(method.upper(), path, op)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def _api_routes(app: FastAPI) -> Iterator[Any]:
    """The app's API routes with their full paths (FastAPI >= 0.16x keeps included routers as
    route contexts; older versions flatten them into APIRoutes)."""
    from fastapi import routing

    iterate = getattr(routing, "iter_route_contexts", None)
    if iterate is None:
        yield from (r for r in app.routes if isinstance(r, APIRoute))
        return
    for ctx in iterate(app.routes):
        if isinstance(ctx.original_route, APIRoute):
            yield ctx


def _required_rights(dependant: Any) -> set[Permission]:
    """The rights of the `require(...)` dependencies anywhere under a route's dependant."""
    rights: set[Permission] = set()
    call = dependant.call
    if call is not None and getattr(call, "__name__", "").startswith("require_"):
        rights |= {
            cell.cell_contents
            for cell in call.__closure__ or ()
            if isinstance(cell.cell_contents, Permission)
        }
    for sub in dependant.dependencies:
        rights |= _required_rights(sub)
    return rights


def declared_rights(app: FastAPI) -> dict[tuple[str, str], Permission]:
    """(METHOD, path) -> the right its route requires: introspected from the route's
    `require(...)` dependency, else UNDECLARED_RIGHTS."""
    out: dict[tuple[str, str], Permission] = dict(UNDECLARED_RIGHTS)
    for route in _api_routes(app):
        path = getattr(route, "path_format", None) or route.path
        rights = _required_rights(route.dependant)
        assert len(rights) <= 1, (path, rights)
        for method in route.methods:
            if rights:
                out[(method, path)] = next(iter(rights))
    return out


def documented_rights() -> dict[tuple[str, str], str | None]:
    """(METHOD, path with {} placeholders) -> the first backticked right of docs/api.md's
    endpoint tables (None: "none", "the link", "Stripe signature")."""
    out: dict[tuple[str, str], str | None] = {}
    row = re.compile(r"^\| `(GET|POST|PUT|PATCH|DELETE) ([^`]+)` \| ([^|]*) \|")
    for line in DOCS.read_text().splitlines():
        m = row.match(line)
        if m:
            path = re.sub(r"\{[^}]*\}", "{}", re.split(r"[?\[]", m.group(2))[0])
            right = re.search(r"`([^`]+)`", m.group(3))
            out[(m.group(1), path)] = right.group(1) if right else None
    return out


def _placeholders(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


# --- building a request --------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One concrete request."""

    method: str
    url: str
    params: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any] | None

    def send(self, client: httpx.Client, auth: dict[str, str]) -> httpx.Response:
        """Send it with the credential `auth`."""
        return client.request(
            self.method,
            self.url,
            params=self.params or None,
            headers={**self.headers, **auth},
            json=self.body,
        )


def _path_value(op: Op, name: str, t: Tenant, ws: Ws, by_id: bool) -> str:
    """The value of path parameter `name` naming the tenant's resource in workspace `ws`."""
    if name == "id":
        return t.key_id if op.path.startswith("/v1/api_keys") else ws.id
    values = {
        "workspaceId": ws.id,
        "id_or_slug": ws.id if by_id else ws.slug,
        "user_id": t.finance_user_id,
        "forecast_id": ws.forecast_id,
        "scenario_id": ws.scenario_id,
        "job_id": ws.job_id,
        "export_id": ws.export_id,
        "revenue_id": ws.revenue_id,
        "cost_id": ws.cost_id,
        "customer": ws.tag,
    }
    if name not in values:
        raise KeyError(f"{op.key}: no value for path parameter {name!r}: add it to _path_value")
    return values[name]


def calls(op: Op, t: Tenant, ws: Ws, bogus_ids: bool = False) -> list[Call]:
    """The requests of `op` naming tenant `t`'s workspace `ws` and its resources (both ways of
    naming a product: slug and id). `bogus_ids` names missing resources instead (a role check
    that must not delete anything)."""
    path_names = [p["name"] for p in op.params("path")]
    variants = [False, True] if "id_or_slug" in path_names else [False]
    out = []
    for by_id in variants:
        url = op.path
        for name in path_names:
            value = "nope_missing" if bogus_ids else _path_value(op, name, t, ws, by_id)
            url = url.replace("{" + name + "}", value)
        params = dict(QUERY.get(op.key, {}))
        for p in op.params("query"):
            if p["name"] == "id":  # DELETE /api/customer-mappings?id=
                params["id"] = "nope_missing" if bogus_ids else ws.mapping_id
            elif p.get("required") and p["name"] not in params:
                raise KeyError(f"{op.key}: required query parameter {p['name']!r}: add to QUERY")
        headers = {p["name"]: ws.id for p in op.params("header") if p["name"] == "X-Workspace-Id"}
        body = None
        if "requestBody" in op.spec:
            if op.key not in BODIES:
                raise KeyError(f"{op.key}: has a request body: add a valid one to BODIES")
            body = BODIES[op.key](ws)
        out.append(Call(op.method, url, params, headers, body))
    return out


def _names_any(call: Call, identifiers: set[str]) -> bool:
    text = f"{call.url} {call.params} {call.headers} {call.body}"
    return any(i in text for i in identifiers)


def _leaks(r: httpx.Response, identifiers: set[str]) -> list[str]:
    text = r.text + " ".join(f"{k}: {v}" for k, v in r.headers.items())
    return sorted(i for i in identifiers if i in text)


def _code(r: httpx.Response) -> str:
    try:
        return str(r.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return ""


def _tested_ops(api: ApiServer) -> list[Op]:
    return [op for op in operations(api) if op.key not in EXEMPT]


# --- tests ---------------------------------------------------------------------------------------


def test_every_operation_is_exercised_or_exempt(api: ApiServer, world: World) -> None:
    ops = operations(api)
    assert len(ops) >= MIN_OPERATIONS
    keys = {op.key for op in ops}
    assert set(EXEMPT) <= keys, "an exemption names an operation the schema no longer has"
    assert set(UNDECLARED_RIGHTS) <= keys
    rights = declared_rights(api.app)
    problems = []
    for op in ops:
        if op.key in EXEMPT:
            continue
        if op.key not in rights:
            problems.append(f"{op.key}: no introspectable right: add it to UNDECLARED_RIGHTS")
        try:
            calls(op, world.a, world.a.workspaces[0])
        except KeyError as err:
            problems.append(str(err))
    assert problems == []
    assert len(ops) - len(EXEMPT) >= MIN_OPERATIONS - len(EXEMPT)


def test_declared_rights_match_the_documented_matrix(api: ApiServer) -> None:
    """The right each route requires is the one docs/api.md's endpoint tables give."""
    documented = documented_rights()
    rights = declared_rights(api.app)
    mismatches = []
    for op in _tested_ops(api):
        doc = documented.get((op.method, _placeholders(op.path)), "undocumented")
        if doc != rights[op.key].value:
            mismatches.append((op.key, rights[op.key].value, doc))
    assert mismatches == []


def test_another_org_gets_404_and_never_its_data(api: ApiServer, world: World) -> None:
    a, b = world.a, world.b
    secret = a.identifiers()
    failures = []
    ws = a.workspaces[0]
    for op in _tested_ops(api):
        # Fresh calls per credential: a create's body (a new member's email) is used once.
        for label, cred in (("B jwt", b.owner.headers), ("B key", bearer(b.owner_key))):
            for call in calls(op, a, ws):
                names_a = _names_any(call, secret)
                r = call.send(api.client, cred)
                leaked = _leaks(r, secret)
                if leaked:
                    failures.append(f"{label} {op.key} {call.url}: body shows A's {leaked}")
                if names_a and r.status_code != 404:
                    failures.append(f"{label} {op.key} {call.url}: {r.status_code} {r.text[:200]}")
                if not names_a and not 200 <= r.status_code < 300:
                    # Names nothing of A's: acts in B's own organization.
                    failures.append(f"{label} {op.key}: {r.status_code} {r.text[:200]}")
    assert failures == []


def test_every_read_of_the_own_org_shows_none_of_another_orgs_items(
    api: ApiServer, world: World
) -> None:
    a, b = world.a, world.b
    secret = a.identifiers()
    failures = []
    for op in _tested_ops(api):
        if op.method != "GET":
            continue
        for call in calls(op, b, b.workspaces[0]):
            for cred in (b.owner.headers, bearer(b.owner_key)):
                r = call.send(api.client, cred)
                if r.status_code != 200:
                    failures.append(f"{op.key} {call.url}: {r.status_code} {r.text[:200]}")
                if leaked := _leaks(r, secret):
                    failures.append(f"{op.key} {call.url}: shows A's {leaked}")
    assert failures == []


def test_a_workspace_scoped_key_never_reaches_another_workspace(
    api: ApiServer, world: World
) -> None:
    a = world.a
    ws1, ws2 = a.workspaces
    rights = declared_rights(api.app)
    secret = ws2.identifiers()
    key = bearer(world.a_ws1_key)
    failures = []
    for op in _tested_ops(api):
        for call in calls(op, a, ws2):
            r = call.send(api.client, key)
            if leaked := _leaks(r, secret):
                failures.append(f"{op.key} {call.url}: shows workspace 2's {leaked}")
            if rights[op.key] in ORG_LEVEL:
                expected, code = 403, "workspace_scoped_key"
            elif _names_any(call, secret):
                expected, code = 404, ""
            else:
                continue  # names no workspace (GET /v1/members): the scan above is the check
            if r.status_code != expected or (code and _code(r) != code):
                failures.append(f"{op.key} {call.url}: {r.status_code} {r.text[:200]}")
    # Lists through the key show its workspace only.
    listed = _ok(api.client.get("/v1/workspaces", headers=key))["data"]
    assert [w["id"] for w in listed] == [ws1.id]
    assert failures == []


def test_roles_get_403_exactly_where_the_matrix_denies_the_right(
    api: ApiServer, world: World
) -> None:
    a = world.a
    rights = declared_rights(api.app)
    creds = {
        "member jwt": ("member", a.users["member"]),
        "finance jwt": ("finance", a.users["finance"]),
        "member key": ("member", bearer(world.role_keys["member"])),
        "finance key": ("finance", bearer(world.role_keys["finance"])),
    }
    failures = []
    for op in _tested_ops(api):
        right = rights[op.key]
        for label, (role, cred) in creds.items():
            # A DELETE the role may do targets a missing resource: the role check runs first,
            # and the seeded resources stay for the controls below.
            for call in calls(op, a, a.workspaces[0], bogus_ids=op.method == "DELETE"):
                r = call.send(api.client, cred)
                if allows(role, right):
                    bad = r.status_code in (401, 403)
                else:
                    bad = r.status_code != 403 or _code(r) not in ("insufficient_role", "forbidden")
                if bad:
                    failures.append(
                        f"{label} {op.key} (needs {right.value}): {r.status_code} {r.text[:200]}"
                    )
    assert failures == []


#: SQL meta-characters and statements, each put in every string parameter (no `/`, `?` or `#`,
#: which would change the route rather than reach a query).
INJECTIONS = (
    "' OR '1'='1",
    "x'; DROP TABLE app.organizations; --",
    "1 UNION SELECT id, name FROM app.organizations --",
    '" OR 1=1 --',
    "%' OR 1=1 --",
    "x'||(SELECT string_agg(id, ',') FROM app.workspaces)||'",
)


def test_sql_injection_in_every_string_parameter_is_inert(api: ApiServer, world: World) -> None:
    """B's owner puts SQL in each path parameter, query parameter and X-Workspace-Id of every
    operation (one at a time, the others naming B's own resources): never a 5xx, never A's
    data, and nothing of A's or of the schema is gone afterwards. Writes take it only where it
    names the target (path, header), so a payload never creates or changes anything."""
    a, b = world.a, world.b
    secret = a.identifiers()
    tables_before = api.wh.scalar("SELECT COUNT(*) FROM app.organizations")
    failures, tried = [], 0
    for op in _tested_ops(api):
        [base, *_] = calls(op, b, b.workspaces[0])
        slots = [("path", p["name"]) for p in op.params("path")]
        slots += [("header", p["name"]) for p in op.params("header") if p["name"] in base.headers]
        if op.method == "GET":
            slots += [("query", p["name"]) for p in op.params("query")]
        for where, name in slots:
            for payload in INJECTIONS:
                url, params, headers = base.url, dict(base.params), dict(base.headers)
                if where == "path":
                    url = op.path
                    for p in op.params("path"):
                        value = (
                            payload
                            if p["name"] == name
                            else _path_value(op, p["name"], b, b.workspaces[0], by_id=True)
                        )
                        url = url.replace("{" + p["name"] + "}", value)
                elif where == "query":
                    params[name] = payload
                else:
                    headers[name] = payload
                call = Call(op.method, url, params, headers, base.body)
                r = call.send(api.client, b.owner.headers)
                tried += 1
                if r.status_code >= 500:
                    failures.append(f"{op.key} {where} {name}={payload!r}: {r.status_code}")
                if op.method != "GET" and 200 <= r.status_code < 300:
                    failures.append(f"{op.key} {where} {name}={payload!r}: acted ({r.status_code})")
                if leaked := _leaks(r, secret):
                    failures.append(f"{op.key} {where} {name}={payload!r}: shows A's {leaked}")
    assert failures == []
    assert tried >= 200  # every operation with a string parameter took every payload
    assert api.wh.scalar("SELECT COUNT(*) FROM app.organizations") == tables_before
    _ok(api.client.get(f"/v1/workspaces/{a.workspaces[0].id}", headers=a.owner.headers))


def test_the_owners_same_requests_succeed_and_nothing_of_theirs_changed(
    api: ApiServer, world: World
) -> None:
    """The control: B's requests were well formed (A's owner gets a 2xx for the same ones), and
    A's resources are as seeded. Deletions run last, on workspace 2."""
    a = world.a
    ws1, ws2 = a.workspaces
    # Nothing B tried removed or revoked A's things.
    for ws in a.workspaces:
        for url in (
            f"/v1/workspaces/{ws.id}",
            f"/v1/workspaces/{ws.id}/forecasts/{ws.forecast_id}",
            f"/v1/workspaces/{ws.id}/scenarios/{ws.scenario_id}",
            f"/api/v1/products/{ws.slug}/revenue/{ws.revenue_id}",
        ):
            _ok(api.client.get(url, headers=a.owner.headers))
        h = {**a.owner.headers, "X-Workspace-Id": ws.id}
        mappings = _ok(api.client.get("/api/customer-mappings", headers=h))["data"]
        assert ws.mapping_id in [m["id"] for m in mappings]
        connections = "SELECT COUNT(*) FROM app.stripe_connections WHERE workspace_id = :w"
        assert api.wh.scalar(connections, w=ws.id) == 1
    key = _ok(api.client.get(f"/v1/api_keys/{a.key_id}", headers=a.owner.headers))
    assert key["revoked_at"] is None
    members = _ok(api.client.get("/v1/members", headers=a.owner.headers))["data"]
    assert {m["user_id"]: m["role"] for m in members}[a.finance_user_id] == "finance"
    assert _ok(api.client.get("/v1/workspaces", headers=a.owner.headers))["data"] != []

    failures = []
    ops = _tested_ops(api)
    # Deleting the workspace last, since the other deletions name it.
    deletes = sorted((op for op in ops if op.method == "DELETE"), key=lambda o: "{id}" in o.path)
    for op in [op for op in ops if op.method != "DELETE"] + deletes:
        ws = ws2 if op.method == "DELETE" else ws1
        for call in calls(op, a, ws):
            r = call.send(api.client, a.owner.headers)
            ok = 200 <= r.status_code < 300 or r.status_code in CONTROL_STATUSES.get(op.key, ())
            if not ok:
                failures.append(f"{op.key} {call.url}: {r.status_code} {r.text[:200]}")
    assert failures == []


def test_login_never_enters_another_org(api: ApiServer, world: World) -> None:
    """Naming another organization's id at login is refused like a wrong password."""
    r = api.client.post(
        "/v1/auth/login",
        json={"email": world.b.owner.email, "password": PASSWORD, "org_id": world.a.owner.org_id},
    )
    assert r.status_code == 401, r.text
    assert _leaks(r, world.a.identifiers()) == []
