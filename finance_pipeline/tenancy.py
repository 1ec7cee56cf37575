"""Organizations, workspaces and their Stripe connections (the `app` layer)."""

from __future__ import annotations

import json
import re
import secrets as _secrets
import time
import warnings
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from finance_pipeline.lib.money import normalize_currency
from finance_pipeline.lib.timeutil import zone
from finance_pipeline.secrets import decrypt_secret, encrypt_secret, mask_key, resolve_key_ref
from finance_pipeline.settings import Settings
from finance_pipeline.stripe_sync.engine import Connection
from finance_pipeline.warehouse.db import LAYERS, Warehouse

# Per-workspace metric switches (docs/metrics.md): defaults here, overrides in settings_json.
DEFAULT_WORKSPACE_SETTINGS: dict[str, Any] = {
    "discount_mode": "all_active",
    "count_paused": False,
    "past_due_grace_days": None,
    "week_start": "sunday",
    "margin_tiers": {"healthy": 50, "at_risk": 20},
    # Thresholds of the alert rules (docs/metrics.md §14); absent keys take lib.alerts defaults.
    "alert_thresholds": {},
    # Set through alerts.delivery.set_alert_webhook (the secret is stored encrypted).
    "alert_webhook": None,
    # Auto-match proposals at or above this confidence are stored accepted (None: all pending).
    "mapping_auto_accept_confidence": None,
    # Report emails (reports.email.set_report_email): {"recipients": [...]}; None sends nothing.
    "report_email": None,
}


def new_id(prefix: str) -> str:
    """A Stripe-style random id such as `ws_3kq...`."""
    return f"{prefix}_{_secrets.token_hex(10)}"


@dataclass(frozen=True)
class Workspace:
    """One business or product: its reporting currency, time zone, cash and metric switches."""

    id: str
    org_id: str
    name: str
    reporting_currency: str
    time_zone: str
    cash_on_hand_micros: int | None
    settings: dict[str, Any]
    created_at: int | None = None
    # Unique within the organization; the 001 products API addresses a product by id or slug.
    slug: str | None = None


def create_organization(
    wh: Warehouse, name: str, email: str | None = None, org_id: str | None = None
) -> str:
    """Create (or keep) an organization; returns its id."""
    oid = org_id or new_id("org")
    with wh.begin() as db:
        wh.insert_new(
            db,
            "app.organizations",
            [{"id": oid, "name": name, "email": email, "created_at": int(time.time())}],
            key=("id",),
        )
    return oid


_SLUG_MAX = 60


def slugify(name: str) -> str:
    """A URL slug from a workspace name: lower-case ASCII letters and digits joined by "-" (never
    "_", so a slug can never look like a `ws_` id); "workspace" when nothing is left."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:_SLUG_MAX].strip("-")
    return slug or "workspace"


def _free_slug(wh: Warehouse, db: Any, org_id: str, name: str) -> str:
    """The name's slug, with a -2, -3... suffix when the organization already uses it."""
    base = slugify(name)
    taken = {
        r[0]
        for r in db.execute(
            wh.text("SELECT slug FROM app.workspaces WHERE org_id = :o AND slug LIKE :p"),
            {"o": org_id, "p": f"{base}%"},
        )
    }
    slug, n = base, 1
    while slug in taken:
        n += 1
        slug = f"{base}-{n}"
    return slug


def create_workspace(
    wh: Warehouse,
    org_id: str,
    name: str,
    *,
    workspace_id: str | None = None,
    reporting_currency: str = "usd",
    time_zone: str = "UTC",
    cash_on_hand_micros: int | None = None,
    settings: dict[str, Any] | None = None,
) -> str:
    """Create a workspace (idempotent for a given id); validates currency and time zone."""
    zone(time_zone)
    wid = workspace_id or new_id("ws")
    now = int(time.time())
    with wh.begin() as db:
        wh.upsert(
            db,
            "app.workspaces",
            [
                {
                    "id": wid,
                    "org_id": org_id,
                    "name": name,
                    # Kept on re-creation (not in `update`): a slug is an address clients store.
                    "slug": _free_slug(wh, db, org_id, name),
                    "reporting_currency": normalize_currency(reporting_currency),
                    "time_zone": time_zone,
                    "cash_on_hand_micros": cash_on_hand_micros,
                    "settings_json": {**DEFAULT_WORKSPACE_SETTINGS, **(settings or {})},
                    "created_at": now,
                    "updated_at": now,
                }
            ],
            key=("id",),
            update=(
                "name",
                "reporting_currency",
                "time_zone",
                "cash_on_hand_micros",
                "settings_json",
                "updated_at",
            ),
        )
    return wid


def _workspace(r: dict[str, Any]) -> Workspace:
    raw_settings = r["settings_json"]
    if isinstance(raw_settings, str):
        raw_settings = json.loads(raw_settings)
    return Workspace(
        id=r["id"],
        org_id=r["org_id"],
        name=r["name"],
        reporting_currency=r["reporting_currency"],
        time_zone=r["time_zone"],
        cash_on_hand_micros=r["cash_on_hand_micros"],
        settings={**DEFAULT_WORKSPACE_SETTINGS, **(raw_settings or {})},
        created_at=r["created_at"],
        slug=r.get("slug"),
    )


def list_workspaces(wh: Warehouse) -> list[Workspace]:
    """Every workspace, oldest first."""
    return [_workspace(r) for r in wh.rows("SELECT * FROM app.workspaces ORDER BY created_at, id")]


#: Run tag scoping a Dagster run to some workspaces: one id, or a comma-separated batch of ids.
#: A run without it covers every workspace (the embedded default, backfills, manual runs).
WORKSPACE_TAG = "finance_pipeline/workspace"


def parse_workspace_scope(value: str | None) -> frozenset[str] | None:
    """The workspace ids a WORKSPACE_TAG value names; None (every workspace) when absent or
    blank."""
    ids = frozenset(i.strip() for i in (value or "").split(",") if i.strip())
    return ids or None


def workspace_scope_tag(workspace_ids: Collection[str]) -> str:
    """The WORKSPACE_TAG value of a batch of workspaces (sorted, so a batch has one spelling)."""
    return ",".join(sorted(workspace_ids))


def current_run_scope() -> frozenset[str] | None:
    """The workspaces the Dagster run executing now is scoped to, from its WORKSPACE_TAG; None
    (every workspace) outside a run or in an untagged run."""
    from dagster._core.execution.context.compute import current_execution_context

    # Dagster's own context variable, set around every asset and asset check body (the public
    # AssetExecutionContext.get() raises in a check, and outside a run).
    ctx = current_execution_context.get()
    if ctx is None:
        return None
    return parse_workspace_scope(ctx.run.tags.get(WORKSPACE_TAG))


def scoped_workspaces(wh: Warehouse) -> list[Workspace]:
    """The workspaces an asset works on: those of the current run's workspace scope (every
    workspace for an untagged run), oldest first."""
    ids = current_run_scope()
    workspaces = list_workspaces(wh)
    return workspaces if ids is None else [ws for ws in workspaces if ws.id in ids]


def in_run_scope(workspace_id: str) -> bool:
    """Whether the current run covers the workspace (always, for an untagged run)."""
    ids = current_run_scope()
    return ids is None or workspace_id in ids


def get_workspace(wh: Warehouse, workspace_id: str, org_id: str | None = None) -> Workspace | None:
    """One workspace (only if `org_id` owns it, when given), or None."""
    rows = wh.rows("SELECT * FROM app.workspaces WHERE id = :id", id=workspace_id)
    if not rows or org_id not in (None, rows[0]["org_id"]):
        return None
    return _workspace(rows[0])


def workspace_from_row(row: dict[str, Any]) -> Workspace:
    """A Workspace from a `SELECT *` row of app.workspaces (for paginated listings)."""
    return _workspace(row)


#: Marks an update argument as "leave unchanged" (None is a value: it clears cash on hand).
UNCHANGED: Any = object()


def update_workspace(
    wh: Warehouse,
    workspace_id: str,
    *,
    name: str = UNCHANGED,
    cash_on_hand_micros: int | None = UNCHANGED,
) -> Workspace | None:
    """Change a workspace's name and/or cash on hand (None clears it); None: no such workspace."""
    changes = {
        k: v
        for k, v in (("name", name), ("cash_on_hand_micros", cash_on_hand_micros))
        if v is not UNCHANGED
    }
    with wh.begin() as db:
        sets = ", ".join(f"{k} = :{k}" for k in [*changes, "updated_at"])
        db.execute(
            wh.text(f"UPDATE app.workspaces SET {sets} WHERE id = :id"),
            {**changes, "updated_at": int(time.time()), "id": workspace_id},
        )
    return get_workspace(wh, workspace_id)


def delete_workspace(wh: Warehouse, workspace_id: str) -> bool:
    """Delete a workspace and every row of it in every layer (raw, core, mart and app tables keyed
    by workspace_id), in one transaction; False when there is no such workspace."""
    tables = _workspace_tables(wh)
    with wh.begin() as db:
        for qualified in tables:
            db.execute(
                wh.text(f"DELETE FROM {qualified} WHERE workspace_id = :w"), {"w": workspace_id}
            )
        res = db.execute(wh.text("DELETE FROM app.workspaces WHERE id = :w"), {"w": workspace_id})
    return bool(res.rowcount)


def _workspace_tables(wh: Warehouse) -> list[str]:
    """Layer-qualified tables with a workspace_id column, referencing tables before the tables
    they reference (so deleting in this order never breaks a foreign key)."""
    md = sa.MetaData()
    with warnings.catch_warnings():
        # Expression indexes cannot be reflected; only columns and foreign keys matter here.
        warnings.simplefilter("ignore", sa.exc.SAWarning)
        if wh.is_sqlite:
            md.reflect(wh.engine)
        else:
            for layer in LAYERS:
                md.reflect(wh.engine, schema=layer)
    out = []
    for table in reversed(md.sorted_tables):
        if "workspace_id" not in table.c or table.name == "schema_migrations":
            continue
        if wh.is_sqlite:
            layer, _, name = table.name.partition("__")
        else:
            layer, name = table.schema or "", table.name
        if layer in LAYERS and name:
            out.append(f"{layer}.{name}")
    return out


def connect_stripe(
    wh: Warehouse,
    workspace_id: str,
    *,
    account_id: str,
    livemode: bool,
    api_key: str | None = None,
    key_ref: str | None = None,
    api_base: str = "https://api.stripe.com",
    stripe_account_header: str | None = None,
    settings: Settings | None = None,
) -> None:
    """Store a workspace's Stripe connection: the key encrypted, or only a reference to it."""
    if (api_key is None) == (key_ref is None):
        raise ValueError("give exactly one of api_key or key_ref")
    plaintext = api_key if api_key is not None else resolve_key_ref(key_ref or "")
    if plaintext.startswith(("sk_live_", "rk_live_")) != livemode:
        raise ValueError(
            f"key {mask_key(plaintext)} is a {'live' if 'live' in plaintext else 'test'}-mode key "
            f"but the connection says livemode={livemode}"
        )
    now = int(time.time())
    with wh.begin() as db:
        wh.upsert(
            db,
            "app.stripe_connections",
            [
                {
                    "workspace_id": workspace_id,
                    "account_id": account_id,
                    "livemode": livemode,
                    "api_base": api_base,
                    "key_ciphertext": encrypt_secret(api_key, settings) if api_key else None,
                    "key_ref": key_ref,
                    "key_hint": mask_key(plaintext),
                    "stripe_account_header": stripe_account_header,
                    "status": "active",
                    "created_at": now,
                    "updated_at": now,
                }
            ],
            key=("workspace_id",),
        )


def stripe_connections(wh: Warehouse, settings: Settings | None = None) -> list[Connection]:
    """Active Stripe connections with their keys resolved, one per workspace."""
    out = []
    for r in wh.rows(
        "SELECT * FROM app.stripe_connections WHERE status = 'active' ORDER BY workspace_id"
    ):
        key = (
            decrypt_secret(r["key_ciphertext"], settings)
            if r["key_ciphertext"]
            else resolve_key_ref(r["key_ref"])
        )
        out.append(
            Connection(
                workspace_id=r["workspace_id"],
                account_id=r["account_id"],
                livemode=bool(r["livemode"]),
                api_key=key,
                api_base=r["api_base"],
                stripe_account_header=r["stripe_account_header"],
            )
        )
    return out


# --- organization tiers (the 003 margins API's gating) -------------------------------------------

#: Tiers in ascending order; margins, customer mappings and Stripe revenue sync need `pro` or above.
TIERS = ("free", "pro", "enterprise")
PAID_TIERS = frozenset(TIERS[1:])


def org_tier(wh: Warehouse, org_id: str) -> str | None:
    """The organization's tier (`free` unless set), or None when there is no such organization."""
    rows = wh.rows("SELECT tier FROM app.organizations WHERE id = :o", o=org_id)
    return rows[0]["tier"] if rows else None


def set_org_tier(wh: Warehouse, org_id: str, tier: str) -> bool:
    """Set the organization's tier (one of TIERS); False when there is no such organization."""
    if tier not in TIERS:
        raise ValueError(f"tier must be one of {', '.join(TIERS)}, got {tier!r}")
    with wh.begin() as db:
        res = db.execute(
            wh.text("UPDATE app.organizations SET tier = :t WHERE id = :o"),
            {"t": tier, "o": org_id},
        )
    return bool(res.rowcount)


# Revenue data a Stripe disconnect removes beside the raw Stripe tables (the 003 margins API:
# "deletes all revenue data and customer mappings"): what the margins are built from and show.
_DISCONNECT_ALSO = (
    "raw.sync_state",
    "raw.sync_runs",
    "app.customer_mappings",
    "app.customer_mapping_rejections",
    "core.recognized_revenue_monthly",
    "mart.customer_margins_monthly",
    "mart.customer_margins_summary_monthly",
)


def disconnect_stripe(wh: Warehouse, workspace_id: str) -> bool:
    """Remove the workspace's Stripe connection with its raw Stripe objects, sync state, customer
    mappings and margins, in one transaction; False (nothing deleted) when it had no connection."""
    tables = [t for t in _workspace_tables(wh) if t.startswith("raw.stripe_")]
    tables += [t for t in _DISCONNECT_ALSO if t not in tables]
    with wh.begin() as db:
        res = db.execute(
            wh.text("DELETE FROM app.stripe_connections WHERE workspace_id = :w"),
            {"w": workspace_id},
        )
        if not res.rowcount:
            return False
        for qualified in tables:
            db.execute(
                wh.text(f"DELETE FROM {qualified} WHERE workspace_id = :w"), {"w": workspace_id}
            )
    return True
