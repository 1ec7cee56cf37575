"""Re-encrypting every stored secret under the current master key, the last step of a key
rotation (docs/security.md): Stripe keys and webhook signing secrets of the Stripe connections,
alert-webhook secrets in workspace settings, and the encrypted responses kept for idempotent
replays. One transaction: a failure leaves every secret as it was, still readable."""

from __future__ import annotations

import json
from typing import Any

from finance_pipeline.alerts.delivery import SETTINGS_KEY as ALERT_WEBHOOK_SETTING
from finance_pipeline.secrets import reencrypt_secret
from finance_pipeline.settings import Settings
from finance_pipeline.warehouse.db import Warehouse

# (table, key columns, encrypted column): each non-empty value is re-encrypted in place.
ENCRYPTED_COLUMNS = (
    ("app.stripe_connections", ("workspace_id",), "key_ciphertext"),
    ("app.stripe_connections", ("workspace_id",), "webhook_secret_ciphertext"),
    ("app.idempotency_keys", ("principal", "idempotency_key"), "response_body"),
)


def reencrypt_stored_secrets(wh: Warehouse, settings: Settings) -> dict[str, int]:
    """Re-encrypt every stored secret under FP_SECRET_KEY; returns how many per place."""
    counts: dict[str, int] = {}
    with wh.begin() as db:
        for table, keys, column in ENCRYPTED_COLUMNS:
            rows = db.execute(
                wh.text(
                    f"SELECT {', '.join(keys)}, {column} AS c FROM {table}"
                    f" WHERE {column} IS NOT NULL AND {column} <> ''"
                )
            ).mappings()
            updates = [
                {**{k: r[k] for k in keys}, "c": reencrypt_secret(r["c"], settings)} for r in rows
            ]
            where = " AND ".join(f"{k} = :{k}" for k in keys)
            if updates:
                db.execute(wh.text(f"UPDATE {table} SET {column} = :c WHERE {where}"), updates)
            counts[f"{table}.{column}"] = len(updates)
        counts["app.workspaces.settings_json (alert webhook)"] = _reencrypt_alert_webhooks(
            db, wh, settings
        )
    return counts


def _reencrypt_alert_webhooks(db: Any, wh: Warehouse, settings: Settings) -> int:
    done = 0
    for row in db.execute(wh.text("SELECT id, settings_json FROM app.workspaces")).mappings():
        value = row["settings_json"]
        current = dict(json.loads(value) if isinstance(value, str) else value or {})
        hook = current.get(ALERT_WEBHOOK_SETTING)
        if not isinstance(hook, dict) or not hook.get("secret_ciphertext"):
            continue
        hook["secret_ciphertext"] = reencrypt_secret(hook["secret_ciphertext"], settings)
        tbl = wh.table("app.workspaces")
        db.execute(tbl.update().where(tbl.c.id == row["id"]).values(settings_json=current))
        done += 1
    return done
