"""Tenant isolation as a property: whatever the tenants hold and however a request mixes another
tenant's references with its own, it never reaches, shows or changes the other tenant's data.

Each example seeds fresh organizations A (two workspaces) and B (one or two), each workspace
holding data of every object kind the warehouse keeps per workspace: what the API creates
(ingests, product records, forecasts, scenarios, exports, sync jobs, mappings, a Stripe
connection, a webhook secret, API keys, members) and, for every other table with a
`workspace_id` column, a row of generated names, emails and amounts. `STORED_KINDS` lists those
tables; a table added to `sql/` without a way to seed it fails
`test_every_stored_object_kind_is_seeded`. Tables tied to an organization otherwise
(organizations, memberships, users, org-wide API keys, idempotency keys with their stored
responses) are `ORG_KINDS`, checked against the schema the same way. Then, for every operation of the served schema (the
same coverage as test_tenant_isolation.py), A's owner (access token or API key) and A's key
scoped to its workspace 1 send the request with B's (or workspace 2's) ids in every slot, and
with generated mixes of A's own and B's slots (path ids, query filters, X-Workspace-Id, body
references). The properties:

- naming B's workspace or object in the path or X-Workspace-Id is a 404 (403 for rights over the
  whole organization through a scoped key) with the error envelope, never a 2xx or a 5xx;
- a reference to B's object in a query filter or body is never a 5xx, and a body reference to an
  object of B's is refused (4xx);
- no answer (body or headers) holds a byte of B's ids, names, emails or generated amounts;
- B's rows, in every table, are the same after all of A's requests as before;
- B's stored responses are never served to A: the same request under B's Idempotency-Key runs
  afresh for A.

Every test runs on SQLite and on PostgreSQL (production's warehouse), each on a server and
database of its own. Examples: FP_ISOLATION_EXAMPLES on SQLite (3 by default, to keep CI short)
and FP_ISOLATION_PG_EXAMPLES on PostgreSQL (2 by default); derandomized in CI.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from finance_pipeline.lib.access import ORG_LEVEL
from finance_pipeline.warehouse import Warehouse
from finance_pipeline_tests.api.conftest import ON_BOTH_WAREHOUSES, ApiServer, bearer
from finance_pipeline_tests.api.test_tenant_isolation import (
    EXEMPT,
    MIN_OPERATIONS,
    Call,
    Op,
    Tenant,
    Ws,
    _code,
    _key,
    _leaks,
    _names_any,
    _tenant,
    calls,
    declared_rights,
    operations,
)

EXAMPLES = int(os.environ.get("FP_ISOLATION_EXAMPLES", "3"))
#: Examples on PostgreSQL: fewer, since each one costs as much again on top of the SQLite run.
PG_EXAMPLES = int(os.environ.get("FP_ISOLATION_PG_EXAMPLES", "2"))

#: Every warehouse table with a workspace_id column, and how a seeded workspace comes to hold
#: rows of it: "api" (the owner's requests in `_tenant`) or "generated" (a row of generated
#: values inserted here, for tables the pipeline fills).
STORED_KINDS: dict[str, str] = {
    "app.alert_deliveries": "generated",
    "app.api_keys": "api",
    "app.closes": "generated",
    "app.customer_mapping_rejections": "generated",
    "app.customer_mappings": "api",
    "app.pipeline_requests": "api",
    "app.report_catalogue": "generated",
    "app.report_emails": "generated",
    "app.report_exports": "api",
    "app.restatements": "generated",
    "app.stripe_connections": "api",
    "app.stripe_webhook_events": "generated",
    "core.build_state": "generated",
    "core.ledger": "api",
    "core.recognized_revenue_monthly": "api",
    "core.subscription_history": "generated",
    "core.subscription_history_due": "generated",
    "mart.advisory_memos": "generated",
    "mart.alert_episodes": "generated",
    "mart.alert_evaluated_days": "generated",
    "mart.alerts": "generated",
    "mart.cfo_metrics_daily": "api",
    "mart.customer_margins_monthly": "generated",
    "mart.customer_margins_summary_monthly": "generated",
    "mart.forecasts": "api",
    "mart.mrr_changes": "generated",
    "mart.mrr_daily": "api",
    "mart.mrr_movements": "generated",
    "mart.mrr_plan_daily": "generated",
    "mart.revenue_daily": "generated",
    "mart.scenarios": "api",
    "mart.subscription_counting": "generated",
    "raw.cost_records": "api",
    "raw.expense_events": "api",
    "raw.landing_files": "generated",
    "raw.manual_revenue": "api",
    "raw.stripe_balance_transactions": "generated",
    "raw.stripe_charges": "generated",
    "raw.stripe_coupons": "generated",
    "raw.stripe_credit_note_lines": "generated",
    "raw.stripe_credit_notes": "generated",
    "raw.stripe_customers": "api",
    "raw.stripe_events": "generated",
    "raw.stripe_invoice_lines": "generated",
    "raw.stripe_invoice_payments": "generated",
    "raw.stripe_invoices": "generated",
    "raw.stripe_prices": "generated",
    "raw.stripe_products": "generated",
    "raw.stripe_refunds": "generated",
    "raw.stripe_subscription_items": "generated",
    "raw.stripe_subscriptions": "generated",
    "raw.sync_runs": "generated",
    "raw.sync_state": "generated",
    "raw.usage_costs": "api",
}

#: Operations whose requests name nothing of a tenant's: they act in the caller's organization
#: (test_tenant_isolation checks they show nothing of another's).
NAME_NOTHING = {("POST", "/v1/workspaces")}

#: Values a generated row must take to pass a column's CHECK constraint (sql/).
CHECKED: dict[str, str] = {
    "match_type": "manual",
    "format": "csv",
    "role": "member",
    "kind": "stripe_sync",
    "confidence": "0.5",  # a decimal string
}
CHECKED_STATUS: dict[str, str] = {
    "app.customer_mappings": "accepted",
    "app.alert_deliveries": "delivered",
    "mart.alert_episodes": "active",
    "app.report_exports": "completed",
    "app.closes": "closed",
    "app.report_emails": "delivered",
    "app.pipeline_requests": "queued",
}
#: Foreign keys of generated rows: (table, column) -> the table whose generated row it names.
REFERENCES: dict[tuple[str, str], str] = {("app.restatements", "close_id"): "app.closes"}


def _tables(wh: Warehouse) -> list[tuple[str | None, str, str]]:
    """Every table of the migrated database as (schema, physical name, `schema.table`): every
    schema on PostgreSQL but the system ones, every table on SQLite (`raw__x` is `raw.x`)."""
    inspector = sa.inspect(wh.engine)
    if wh.is_sqlite:
        return [(None, n, n.replace("__", ".", 1)) for n in inspector.get_table_names()]
    return [
        (schema, n, f"{schema}.{n}")
        for schema in inspector.get_schema_names()
        if schema != "information_schema" and not schema.startswith("pg_")
        for n in inspector.get_table_names(schema=schema)
    ]


def workspace_tables(wh: Warehouse) -> set[str]:
    """Every table of the migrated database that has a workspace_id column, as `schema.table`:
    read from the database itself, so that a table added by a migration, in any schema, is in it."""
    inspector = sa.inspect(wh.engine)
    return {
        qualified
        for schema, name, qualified in _tables(wh)
        if "workspace_id" in {c["name"] for c in inspector.get_columns(name, schema=schema)}
    }


#: Columns that tie a row to an organization without a workspace: the organization itself, or
#: the credential acting for it (idempotency keys are owned by `user@org` or an API key's id).
ORG_COLUMNS = frozenset({"org_id", "organization_id", "principal"})


def org_tables(wh: Warehouse) -> set[str]:
    """Every table whose rows belong to an organization other than through a workspace_id, as
    `schema.table`, read from the database: app.organizations, a table with an ORG_COLUMNS
    column, a table with a foreign key (not workspace_id) to one of those, and a table one of
    those refers to (users, through memberships); to a fixed point, so a chain is followed."""
    inspector = sa.inspect(wh.engine)
    qualified_of = {(schema, name): q for schema, name, q in _tables(wh)}
    by_physical = {name: q for (_, name), q in qualified_of.items()}  # SQLite: no schema
    edges: list[tuple[str, str]] = []  # (referring, referred), workspace_id references left out
    tied: set[str] = {"app.organizations"}
    for (schema, name), q in qualified_of.items():
        if ORG_COLUMNS & {c["name"] for c in inspector.get_columns(name, schema=schema)}:
            tied.add(q)
        for fk in inspector.get_foreign_keys(name, schema=schema):
            if fk["constrained_columns"] == ["workspace_id"]:
                continue
            referred = fk["referred_table"]
            target = (
                by_physical.get(referred)
                if wh.is_sqlite
                else qualified_of.get((fk["referred_schema"] or schema, referred))
            )
            if target is not None:
                edges.append((q, target))
    while True:
        grown = tied | {a for a, b in edges if b in tied} | {b for a, b in edges if a in tied}
        if grown == tied:
            return tied
        tied = grown


@pytest.fixture(scope="module")
def api(isolation_api: ApiServer) -> ApiServer:
    """The isolation suites' server (api/conftest.py), on the test's warehouse."""
    return isolation_api


# --- generated data ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Content:
    """What a workspace's generated rows hold: a name, an email's local part (the email carries
    the workspace's label) and an amount, unique among an example's workspaces, so that a scan
    can find them."""

    name: str
    local: str
    amount: int


NAME = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=0, max_size=12
)
CONTENT = st.builds(
    Content,
    name=NAME,
    local=st.from_regex(r"[a-z][a-z0-9._+-]{0,10}", fullmatch=True),
    # Nine digits from 9xx: not a substring of a timestamp, a year or a small count.
    amount=st.integers(min_value=900_000_001, max_value=999_999_999),
)


def _value(table: str, col: sa.Column, ws: Ws, c: Content, ids: dict[str, str]) -> Any:
    """A generated value for one column of a row of `table` in workspace `ws`."""
    name, t = col.name, col.type
    if name == "workspace_id":
        return ws.id
    if (table, name) in REFERENCES:
        return ids[REFERENCES[(table, name)]]
    if name == "status" and table in CHECKED_STATUS:
        return CHECKED_STATUS[table]
    if name in CHECKED:
        return CHECKED[name]
    if isinstance(t, sa.JSON) or name.endswith("_json") or name in ("payload", "settings"):
        return {"id": f"{ws.label}_{name}", "name": f"{ws.label} {c.name}", "amount": c.amount}
    if isinstance(t, sa.Boolean):
        return False
    if isinstance(t, sa.DateTime):
        return datetime(2026, 9, 10, tzinfo=UTC)
    if isinstance(t, sa.Date):
        return date(2026, 9, 10)
    if isinstance(t, sa.Float):
        return 0.5
    if isinstance(t, sa.Numeric) and not isinstance(t, sa.Integer):
        return Decimal("1")
    if isinstance(t, sa.Integer):
        if name.endswith("_at") or name in ("version", "attempt", "attempts"):
            return 1
        return c.amount * (1_000_000 if name.endswith("_micros") else 1)
    if isinstance(t, sa.LargeBinary):
        return f"{ws.label}_{name}".encode()
    if name == "month":
        return "2026-09"
    if name in ("day", "date") or name.endswith(("_day", "_date", "_on")):
        return "2026-09-10"
    if "currency" in name:
        return "usd"
    if "email" in name:
        return f"{c.local}.{ws.label}@example.com"
    if name == "id":
        return ids.setdefault(table, f"{ws.label}_{table}")
    if name == "path" or name.endswith(("_id", "_key", "_path")):
        return f"{ws.label}_{table}_{name}"
    return f"{ws.label} {name} {c.name}"


def _generate_rows(wh: Warehouse, ws: Ws, content: Content) -> None:
    """One generated row of workspace `ws` in every STORED_KINDS table the API does not fill
    (the referenced tables first)."""
    ids: dict[str, str] = {}
    order = sorted(STORED_KINDS, key=lambda t: t in set(REFERENCES.values()), reverse=True)
    with wh.begin() as db:
        for qualified in order:
            if STORED_KINDS[qualified] != "generated":
                continue
            table = wh.table(qualified)
            row = {c.name: _value(qualified, c, ws, content, ids) for c in table.columns}
            db.execute(sa.insert(table), [row])


def _org_api_key_ids(wh: Warehouse, org_id: str) -> Any:
    keys = wh.table("app.api_keys")
    return sa.select(keys.c.id).where(keys.c.org_id == org_id)


#: Every table `org_tables` finds, and the query for an organization's rows of it: what the
#: snapshot compares beyond the workspaces' rows. A table tied to an organization but missing
#: here fails test_every_org_table_is_snapshotted.
ORG_KINDS: dict[str, Callable[[Warehouse, str], Any]] = {
    "app.organizations": lambda wh, org: sa.select(wh.table("app.organizations")).where(
        wh.table("app.organizations").c.id == org
    ),
    "app.workspaces": lambda wh, org: sa.select(wh.table("app.workspaces")).where(
        wh.table("app.workspaces").c.org_id == org
    ),
    "app.memberships": lambda wh, org: sa.select(wh.table("app.memberships")).where(
        wh.table("app.memberships").c.org_id == org
    ),
    # Users belong to an organization through their memberships.
    "app.users": lambda wh, org: sa.select(wh.table("app.users")).where(
        wh.table("app.users").c.id.in_(
            sa.select(wh.table("app.memberships").c.user_id).where(
                wh.table("app.memberships").c.org_id == org
            )
        )
    ),
    # Org-wide keys too (workspace_id NULL), which the workspaces' rows leave out.
    "app.api_keys": lambda wh, org: sa.select(wh.table("app.api_keys")).where(
        wh.table("app.api_keys").c.org_id == org
    ),
    # Owned by the credential (auth.Principal.key): `user@org` for a user, the key's id for a key.
    "app.idempotency_keys": lambda wh, org: sa.select(wh.table("app.idempotency_keys")).where(
        sa.or_(
            wh.table("app.idempotency_keys").c.principal.endswith(f"@{org}"),
            wh.table("app.idempotency_keys").c.principal.in_(_org_api_key_ids(wh, org)),
        )
    ),
}


def _snapshot(wh: Warehouse, t: Tenant, org: bool = True) -> dict[str, list[str]]:
    """Every row of tenant `t`'s workspaces (and, with `org`, of its organization: every
    ORG_KINDS table), by table, as sorted JSON lines."""
    ws_ids = [ws.id for ws in t.workspaces]
    queries: dict[str, Any] = {
        **{
            q: (sa.select(wh.table(q)).where(wh.table(q).c.workspace_id.in_(ws_ids)))
            for q in STORED_KINDS
        },
        "workspace rows": sa.select(wh.table("app.workspaces")).where(
            wh.table("app.workspaces").c.id.in_(ws_ids)
        ),
    }
    if org:
        queries |= {f"org {q}": query(wh, t.owner.org_id) for q, query in ORG_KINDS.items()}
    out = {}
    with wh.engine.connect() as c:
        for name, query in queries.items():
            rows = [
                json.dumps(dict(r._mapping), default=str, sort_keys=True) for r in c.execute(query)
            ]
            out[name] = sorted(rows)
    return out


@dataclass
class Pair:
    """One example's tenants: A (the intruder) and B (the target), and B's generated content."""

    a: Tenant
    b: Tenant
    content: dict[str, Content]  # by B's workspace id
    a_scoped_key: str  # owner role, scoped to A's workspace 1

    def secret(self, target: Tenant) -> set[str]:
        """Strings only the target tenant's data holds."""
        ids = set(target.identifiers())
        for ws in target.workspaces:
            c = self.content.get(ws.id)
            if c is not None:
                ids |= {str(c.amount), f"{c.local}.{ws.label}@example.com"}
        return ids


def _seed(api: ApiServer, b_workspaces: int, contents: list[Content]) -> Pair:
    a, b = _tenant(api, 2), _tenant(api, b_workspaces)
    content = {}
    for ws, c in zip(a.workspaces + b.workspaces, contents, strict=False):
        _generate_rows(api.wh, ws, c)
        content[ws.id] = c
    scoped = _key(api, a, "owner", a.workspaces[0].id)
    a.key_prefixes.add(scoped["prefix"])
    # A key scoped to each other workspace too (API keys are an object kind of the workspace).
    for t, ws in [(a, a.workspaces[1])] + [(b, ws) for ws in b.workspaces]:
        t.key_prefixes.add(_key(api, t, "member", ws.id)["prefix"])
    # Stored responses (app.idempotency_keys): each tenant's owner, by token and by key, creates
    # an API key under an Idempotency-Key; B's under the key A replays in the property.
    for t, idem in [(a, f"idem-{a.marker}"), (b, SHARED_IDEMPOTENCY_KEY)]:
        for cred in (t.owner.headers, bearer(t.owner_key)):
            r = _idempotent_key_request(api, cred, idem)
            assert r.status_code == 201, r.text
            t.key_prefixes.add(r.json()["prefix"])
    return Pair(a, b, content, scoped["key"])


#: The Idempotency-Key B's owner used (in _seed) and A's owner sends again in the property.
SHARED_IDEMPOTENCY_KEY = "idem-isolation-shared"
#: A request whose stored response holds a credential shown once, and names no tenant.
IDEMPOTENT_BODY = {"name": "idempotent", "role": "member"}


def _idempotent_key_request(api: ApiServer, cred: dict[str, str], idem: str) -> httpx.Response:
    return api.client.post(
        "/v1/api_keys", json=IDEMPOTENT_BODY, headers={**cred, "Idempotency-Key": idem}
    )


def _replays_nothing_of_the_targets(
    api: ApiServer, creds: dict[str, dict[str, str]], target: Tenant, secret: set[str]
) -> list[str]:
    """The target's stored responses are never served to another principal: the same request
    under the target's Idempotency-Key runs afresh for each of `creds` (a new key of the caller's
    own, not a replay) and shows nothing of the target's."""
    failures = []
    for label, cred in creds.items():
        r = _idempotent_key_request(api, cred, SHARED_IDEMPOTENCY_KEY)
        where = f"{label} replaying {target.marker}'s Idempotency-Key"
        if r.status_code != 201 or r.headers.get("Idempotent-Replayed"):
            failures.append(f"{where}: {r.status_code} {dict(r.headers)} {r.text[:200]}")
        elif r.json()["prefix"] in target.key_prefixes:
            failures.append(f"{where}: served the target's key {r.json()['prefix']}")
        if leaked := _leaks(r, secret):
            failures.append(f"{where}: answer shows the target's {leaked}")
    return failures


# --- the property --------------------------------------------------------------------------------


#: The object of a list's page that its `starting_after` cursor names, by the path's last word.
CURSORS = {
    "workspaces": lambda t, ws: ws.id,
    "members": lambda t, ws: t.finance_user_id,
    "api_keys": lambda t, ws: t.key_id,
    "forecasts": lambda t, ws: ws.forecast_id,
    "scenarios": lambda t, ws: ws.scenario_id,
    "revenue": lambda t, ws: ws.revenue_id,
    "costs": lambda t, ws: ws.cost_id,
}


def tenant_calls(op: Op, t: Tenant, ws: Ws) -> list[Call]:
    """calls() of test_tenant_isolation, with the query filters that name a tenant's object set
    too: a list's `starting_after` cursor and a `plan_id` (the workspace's generated price)."""
    out = []
    for call in calls(op, t, ws):
        params = dict(call.params)
        names = {p["name"] for p in op.params("query")}
        if "starting_after" in names:
            params["starting_after"] = CURSORS[op.path.rsplit("/", 1)[1]](t, ws)
        if "plan_id" in names:
            params["plan_id"] = f"{ws.label}_raw.stripe_prices"
        out.append(Call(call.method, call.url, params, call.headers, call.body))
    return out


def _slots(call: Call) -> dict[str, Any]:
    """A request's parts that name a tenant's things: each path segment, query parameter, the
    X-Workspace-Id header and the body."""
    slots: dict[str, Any] = {f"path{i}": s for i, s in enumerate(call.url.split("/"))}
    slots |= {f"query:{k}": v for k, v in call.params.items()}
    slots |= {f"header:{k}": v for k, v in call.headers.items()}
    slots["body"] = call.body
    return slots


#: Slots that name the workspace or object a request acts on (else a filter or a reference).
ADDRESSING = ("path", "header:", "query:id")


def _compose(own: Call, other: Call, take: set[str]) -> Call:
    """`own` with the slots in `take` from `other`."""
    mine, theirs = _slots(own), _slots(other)
    pick = {k: (theirs[k] if k in take else v) for k, v in mine.items()}
    segments = [pick[f"path{i}"] for i in range(len(own.url.split("/")))]
    return Call(
        own.method,
        "/".join(segments),
        {k.split(":", 1)[1]: v for k, v in pick.items() if k.startswith("query:")},
        {k.split(":", 1)[1]: v for k, v in pick.items() if k.startswith("header:")},
        pick["body"],
    )


def _text(call: Call) -> str:
    return f"{call.url} {call.params} {call.headers} {json.dumps(call.body)}"


def _missing(call: Call, secret: set[str]) -> Call:
    """The same request naming objects that do not exist where it names the target's."""

    def swap(text: str) -> str:
        for i in sorted(secret, key=len, reverse=True):
            text = text.replace(i, i + "0missing")
        return text

    return Call(
        call.method,
        swap(call.url),
        {k: swap(v) for k, v in call.params.items()},
        {k: swap(v) for k, v in call.headers.items()},
        None if call.body is None else json.loads(swap(json.dumps(call.body))),
    )


def _envelope(r: httpx.Response) -> bool:
    try:
        err = r.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(err, dict) and bool(err.get("code")) and bool(err.get("message"))


def _check(
    api: ApiServer,
    op: Op,
    call: Call,
    cred: dict[str, str],
    secret: set[str],
    addressed: bool,
    org_level_scoped: bool,
    failures: list[str],
    label: str,
) -> None:
    """Send one intruding request and record what breaks the properties."""
    r = call.send(api.client, cred)
    where = f"{label} {op.method} {call.url} {call.params} {call.headers} {call.body}"
    # A refusal may echo what the request itself named ("No such forecast: fc_..."): that
    # discloses nothing. Anything else of the target's in an answer does.
    sent = {i for i in secret if i in _text(call)} if r.status_code >= 400 else set()
    if leaked := _leaks(r, secret - sent):
        failures.append(f"{where}: answer shows the target's {leaked}")
    if addressed or org_level_scoped:
        # No existence oracle: the target's objects are refused exactly as missing ones are.
        missing = _missing(call, secret).send(api.client, cred)
        if (missing.status_code, _code(missing)) != (r.status_code, _code(r)):
            failures.append(
                f"{where}: {r.status_code} {_code(r)}, but {missing.status_code} "
                f"{_code(missing)} for missing objects"
            )
    if r.status_code >= 500:
        failures.append(f"{where}: {r.status_code} {r.text[:200]}")
    elif org_level_scoped:
        if r.status_code != 403 or not _envelope(r):
            failures.append(f"{where}: {r.status_code} (want 403) {r.text[:200]}")
    elif addressed:
        if r.status_code not in (403, 404) or not _envelope(r):
            failures.append(f"{where}: {r.status_code} (want 404) {r.text[:200]}")
    elif (
        call.body is not None
        and _names_any(Call(call.method, "", {}, {}, call.body), secret)
        and r.status_code < 400
    ):
        failures.append(
            f"{where}: a body naming the target's object was accepted ({r.status_code})"
        )


def _property_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=bool(os.environ.get("CI")),
        # No shrinking: every example seeds two organizations and sweeps the schema, and a
        # failure already names the request and what it showed.
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


#: An example: how many workspaces B has, the four workspaces' generated content, and the draws
#: (B's target workspace, the slots mixed in, the credential) per operation.
EXAMPLE = {
    "b_workspaces": st.integers(1, 2),
    "contents": st.lists(CONTENT, min_size=4, max_size=4, unique_by=lambda c: c.amount),
    "data": st.data(),
}


@pytest.mark.slow
@pytest.mark.parametrize("isolation_api", ["sqlite"], indirect=True)
@_property_settings(EXAMPLES)
@given(**EXAMPLE)
def test_no_request_reaches_shows_or_changes_another_tenants_data(
    api: ApiServer, b_workspaces: int, contents: list[Content], data: st.DataObject
) -> None:
    _no_request_reaches_shows_or_changes_another_tenants_data(api, b_workspaces, contents, data)


@pytest.mark.slow
@pytest.mark.parametrize(
    "isolation_api", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
@_property_settings(PG_EXAMPLES)
@given(**EXAMPLE)
def test_no_request_reaches_shows_or_changes_another_tenants_data_on_postgresql(
    api: ApiServer, b_workspaces: int, contents: list[Content], data: st.DataObject
) -> None:
    """The same property on production's warehouse (PG_EXAMPLES examples)."""
    _no_request_reaches_shows_or_changes_another_tenants_data(api, b_workspaces, contents, data)


def _no_request_reaches_shows_or_changes_another_tenants_data(
    api: ApiServer, b_workspaces: int, contents: list[Content], data: st.DataObject
) -> None:
    """The module's property for one example (its docstring)."""
    pair = _seed(api, b_workspaces, contents)
    a, b = pair.a, pair.b
    a_ws1, a_ws2 = a.workspaces
    rights = declared_rights(api.app)
    ops = [op for op in operations(api) if op.key not in EXEMPT]
    before = _snapshot(api.wh, b)
    before_ws2 = _snapshot(api.wh, Tenant(a.owner, a.marker, [a_ws2]), org=False)
    b_secret = pair.secret(b)
    ws2_secret = {i for i in a_ws2.identifiers()} | {str(pair.content[a_ws2.id].amount)}
    failures: list[str] = []
    swept: set[tuple[str, str]] = set()
    creds = {"A owner token": a.owner.headers, "A owner key": bearer(a.owner_key)}
    for op in ops:
        target_ws = data.draw(st.sampled_from(b.workspaces), label=f"{op.key} target")
        own_calls = tenant_calls(op, a, a_ws1)
        for own, theirs in zip(own_calls, tenant_calls(op, b, target_ws), strict=True):
            differing = sorted(k for k, v in _slots(theirs).items() if _slots(own).get(k) != v)
            if not differing:
                continue  # names nothing of anyone's (POST /v1/workspaces): nothing to swap
            swept.add(op.key)
            mix = data.draw(
                st.sets(st.sampled_from(differing), min_size=1), label=f"{op.key} B's slots"
            )
            # Every slot from B; each one alone; and a generated mix.
            singles = [{k} for k in differing] if len(differing) > 1 else []
            for take in [set(differing), *singles, mix]:
                call = _compose(own, theirs, take)
                addressed = any(k.startswith(ADDRESSING) for k in take)
                label = data.draw(st.sampled_from(sorted(creds)), label=f"{op.key} credential")
                _check(api, op, call, creds[label], b_secret, addressed, False, failures, label)
        # A's key scoped to workspace 1, naming workspace 2's things (the same organization).
        for own, theirs in zip(own_calls, tenant_calls(op, a, a_ws2), strict=True):
            differing = {k for k, v in _slots(theirs).items() if _slots(own).get(k) != v}
            if not differing:
                continue
            call = _compose(own, theirs, differing)
            org_level = rights[op.key] in ORG_LEVEL
            addressed = any(k.startswith(ADDRESSING) for k in differing)
            _check(
                api, op, call, bearer(pair.a_scoped_key), ws2_secret, addressed, org_level,
                failures, "A key scoped to workspace 1",
            )  # fmt: skip
    failures += _replays_nothing_of_the_targets(api, creds, b, b_secret)
    assert failures == []
    # Every operation of the schema was sent naming the other tenant, but those that name nothing
    # of a tenant's (they act in the caller's own organization).
    assert len(ops) >= MIN_OPERATIONS - len(EXEMPT)
    assert {op.key for op in ops} - swept == NAME_NOTHING
    assert _snapshot(api.wh, b) == before
    assert _snapshot(api.wh, Tenant(a.owner, a.marker, [a_ws2]), org=False) == before_ws2


@ON_BOTH_WAREHOUSES
def test_every_stored_object_kind_is_seeded(api: ApiServer) -> None:
    """STORED_KINDS is every table with a workspace_id column and ORG_KINDS every table tied to
    an organization otherwise, and a seeded tenant holds a row of each (so every kind is in the
    property above)."""
    assert set(STORED_KINDS) == workspace_tables(api.wh)
    assert set(ORG_KINDS) == org_tables(api.wh)
    pair = _seed(api, 1, [Content("n", "l", 900_000_000 + i) for i in range(1, 5)])
    for t in (pair.a, pair.b):
        empty = {table for table, rows in _snapshot(api.wh, t).items() if not rows}
        assert empty == set(), f"{t.marker}: no rows in {sorted(empty)}"
        for ws in t.workspaces:
            for table in STORED_KINDS:
                n = api.wh.scalar(
                    f"SELECT COUNT(*) FROM {api.wh.name(table)} WHERE workspace_id = :w", w=ws.id
                )
                assert n, f"{table} holds nothing of workspace {ws.id}"


def test_a_new_workspace_table_is_an_uncovered_kind(warehouse: Warehouse) -> None:
    """The check above is not vacuous: a table a migration adds with a workspace_id column, in
    a layer or (PostgreSQL) a schema of its own, is found and is not in STORED_KINDS."""
    assert workspace_tables(warehouse) == set(STORED_KINDS)
    added = {"mart.new_kind"}
    with warehouse.begin() as db:
        db.execute(warehouse.text("CREATE TABLE mart.new_kind (workspace_id TEXT, x BIGINT)"))
        if not warehouse.is_sqlite:
            db.execute(sa.text("CREATE SCHEMA extra"))
            db.execute(sa.text("CREATE TABLE extra.kind (workspace_id TEXT)"))
            added.add("extra.kind")
    assert workspace_tables(warehouse) - set(STORED_KINDS) == added


def test_a_new_org_table_is_an_uncovered_kind(warehouse: Warehouse) -> None:
    """The ORG_KINDS check is not vacuous: a table a migration adds with an org_id column, one
    with a foreign key to organizations under another name, one reached through a chain of
    foreign keys, and one keyed by a credential's principal are found and are not in ORG_KINDS;
    a table tied only through workspace_id is a workspace kind, not one of these."""
    assert org_tables(warehouse) == set(ORG_KINDS)
    added = {"app.org_notes", "app.org_owned", "app.org_owned_child", "app.principal_state"}
    statements = [
        "CREATE TABLE app.org_notes (org_id TEXT, note TEXT)",
        "CREATE TABLE app.org_owned (id TEXT PRIMARY KEY,"
        " owner TEXT REFERENCES app.organizations (id))",
        "CREATE TABLE app.org_owned_child (parent TEXT REFERENCES app.org_owned (id))",
        "CREATE TABLE app.principal_state (principal TEXT, x BIGINT)",
        "CREATE TABLE mart.ws_only (workspace_id TEXT REFERENCES app.workspaces (id))",
    ]
    with warehouse.begin() as db:
        for statement in statements:
            db.execute(warehouse.text(statement))
        if not warehouse.is_sqlite:
            db.execute(sa.text("CREATE SCHEMA extra"))
            db.execute(sa.text("CREATE TABLE extra.org_kind (organization_id TEXT)"))
            added.add("extra.org_kind")
    assert org_tables(warehouse) - set(ORG_KINDS) == added


@ON_BOTH_WAREHOUSES
def test_the_target_tenant_sees_its_own_generated_data(api: ApiServer) -> None:
    """A control: B's owner reads show B's generated rows somewhere (the scan above looks for
    data the API does serve), and its own requests answer without a 5xx."""
    contents = [Content("Ω name", "who", 900_000_000 + i) for i in range(1, 5)]
    pair = _seed(api, 1, contents)
    b, ws = pair.b, pair.b.workspaces[0]
    secret = pair.secret(b)
    shown: set[str] = set()
    errors: list[str] = []
    texts: list[str] = []
    for op in operations(api):
        if op.key in EXEMPT or op.method != "GET":
            continue
        for call in calls(op, b, ws):
            r = call.send(api.client, b.owner.headers)
            if r.status_code >= 500:
                errors.append(f"{op.key}: {r.text[:200]}")
            shown |= {i for i in secret if i in r.text}
            texts.append(f"{op.key} {r.text}")
    assert errors == []
    # The API's own objects.
    assert ws.id in shown and ws.forecast_id in shown and ws.export_id in shown
    # A generated row is served too (the Stripe sync status shows the last webhook event).
    assert any(contents[0].name in t for t in texts)
