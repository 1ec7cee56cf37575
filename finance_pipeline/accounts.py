"""People and machines acting for an organization: users, memberships with roles, API keys.

Passwords are stored as argon2 hashes (pwdlib); API keys as a lookup prefix plus the key's sha256,
so the warehouse never holds a usable credential. The role matrix is `lib.access`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as _secrets
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

import sqlalchemy as sa
from pwdlib import PasswordHash

from finance_pipeline.lib.access import Role
from finance_pipeline.tenancy import new_id
from finance_pipeline.warehouse.db import Warehouse

API_KEY_PREFIX = "fpk_"


class AccountError(ValueError):
    """A request about accounts that cannot be honoured (duplicate email, last owner...)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Membership:
    """A user's role in one organization."""

    org_id: str
    user_id: str
    email: str
    role: Role
    created_at: int


@dataclass(frozen=True)
class ApiKey:
    """A machine credential as listed (never the secret)."""

    id: str
    org_id: str
    workspace_id: str | None
    name: str | None
    role: Role
    key_prefix: str
    created_at: int
    revoked_at: int | None


@cache
def _hasher() -> PasswordHash:
    return PasswordHash.recommended()


@cache
def _dummy_hash() -> str:
    return _hasher().hash(_secrets.token_urlsafe(16))


def normalize_email(email: str) -> str:
    """Emails compare case-insensitively and without surrounding blanks."""
    return email.strip().lower()


def register_owner(wh: Warehouse, org_name: str, email: str, password: str) -> tuple[str, str]:
    """A new organization with `email` as its owner; returns (org_id, user_id).

    Raises AccountError(email_taken) when the email already has an account.
    """
    email = normalize_email(email)
    password_hash = _hasher().hash(password)
    org_id, user_id = new_id("org"), new_id("usr")
    now = int(time.time())
    # One transaction: a taken email leaves no organization behind.
    with wh.begin() as db:
        db.execute(
            wh.text(
                "INSERT INTO app.organizations (id, name, email, created_at)"
                " VALUES (:o, :n, :e, :t)"
            ),
            {"o": org_id, "n": org_name, "e": email, "t": now},
        )
        _insert_user(wh, db, user_id, email, password_hash, now)
        db.execute(
            wh.text(
                "INSERT INTO app.memberships (org_id, user_id, role, created_at)"
                " VALUES (:o, :u, :r, :t)"
            ),
            {"o": org_id, "u": user_id, "r": Role.OWNER.value, "t": now},
        )
    return org_id, user_id


def _insert_user(
    wh: Warehouse, db: sa.Connection, user_id: str, email: str, password_hash: str, now: int
) -> None:
    inserted = wh.insert_new(
        db,
        "app.users",
        [{"id": user_id, "email": email, "password_hash": password_hash, "created_at": now}],
        key=("email",),
    )
    if not inserted:
        raise AccountError("email_taken", "An account with this email already exists.")


def authenticate_password(
    wh: Warehouse, email: str, password: str, org_id: str | None = None
) -> Membership | None:
    """The membership a correct email and password sign into (the given org, else the user's
    first); None for a wrong email or password, in about the same time either way."""
    rows = wh.rows(
        "SELECT id, password_hash FROM app.users WHERE email = :e", e=normalize_email(email)
    )
    if not rows:
        _hasher().verify(password, _dummy_hash())  # same work as a real check: no email oracle
        return None
    if not _hasher().verify(password, rows[0]["password_hash"]):
        return None
    found = [m for m in memberships_of_user(wh, rows[0]["id"]) if org_id in (None, m.org_id)]
    return found[0] if found else None


def memberships_of_user(wh: Warehouse, user_id: str) -> list[Membership]:
    """A user's memberships, oldest first (the first is where login signs in by default)."""
    return [
        membership_from_row(r)
        for r in wh.rows(
            "SELECT m.org_id, m.user_id, u.email, m.role, m.created_at FROM app.memberships m"
            " JOIN app.users u ON u.id = m.user_id WHERE m.user_id = :u"
            # Seconds tie easily: among equally old memberships, owned organizations first.
            " ORDER BY m.created_at, CASE m.role WHEN 'owner' THEN 0 ELSE 1 END, m.org_id",
            u=user_id,
        )
    ]


def membership(wh: Warehouse, org_id: str, user_id: str) -> Membership | None:
    """A user's membership in one organization, or None."""
    rows = wh.rows(
        "SELECT m.org_id, m.user_id, u.email, m.role, m.created_at FROM app.memberships m"
        " JOIN app.users u ON u.id = m.user_id WHERE m.org_id = :o AND m.user_id = :u",
        o=org_id,
        u=user_id,
    )
    return membership_from_row(rows[0]) if rows else None


def membership_from_row(r: dict[str, Any]) -> Membership:
    """A Membership from a row with org_id, user_id, email, role, created_at."""
    return Membership(r["org_id"], r["user_id"], r["email"], Role(r["role"]), r["created_at"])


def add_member(
    wh: Warehouse, org_id: str, email: str, role: Role, password: str | None
) -> Membership:
    """Add a person to an organization: a new user needs a password; an existing user keeps
    theirs. Raises AccountError(already_member / password_required)."""
    email = normalize_email(email)
    now = int(time.time())
    existing = wh.rows("SELECT id FROM app.users WHERE email = :e", e=email)
    with wh.begin() as db:
        if existing:
            user_id = existing[0]["id"]
        else:
            if not password:
                raise AccountError(
                    "password_required", "This email has no account yet: send a password."
                )
            user_id = new_id("usr")
            _insert_user(wh, db, user_id, email, _hasher().hash(password), now)
        added = wh.insert_new(
            db,
            "app.memberships",
            [{"org_id": org_id, "user_id": user_id, "role": role.value, "created_at": now}],
            key=("org_id", "user_id"),
        )
        if not added:
            raise AccountError("already_member", "This user is already a member.")
    return Membership(org_id, user_id, email, role, now)


def change_role(wh: Warehouse, org_id: str, user_id: str, role: Role) -> Membership | None:
    """Give a member another role (None: no such member). The last owner stays an owner."""
    with wh.begin() as db:
        _guard_last_owner(wh, db, org_id, user_id, keeps_owner=role is Role.OWNER)
        db.execute(
            wh.text("UPDATE app.memberships SET role = :r WHERE org_id = :o AND user_id = :u"),
            {"r": role.value, "o": org_id, "u": user_id},
        )
    return membership(wh, org_id, user_id)


def remove_member(wh: Warehouse, org_id: str, user_id: str) -> bool:
    """Remove a member (False: no such member). The last owner cannot be removed."""
    with wh.begin() as db:
        _guard_last_owner(wh, db, org_id, user_id, keeps_owner=False)
        res = db.execute(
            wh.text("DELETE FROM app.memberships WHERE org_id = :o AND user_id = :u"),
            {"o": org_id, "u": user_id},
        )
    return bool(res.rowcount)


def _guard_last_owner(
    wh: Warehouse, db: sa.Connection, org_id: str, user_id: str, *, keeps_owner: bool
) -> None:
    if keeps_owner:
        return
    owners = [
        r["user_id"]
        for r in wh.read(
            db,
            "SELECT user_id FROM app.memberships WHERE org_id = :o AND role = 'owner'",
            o=org_id,
        )
    ]
    if owners == [user_id]:
        raise AccountError("last_owner", "An organization keeps at least one owner.")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def create_api_key(
    wh: Warehouse,
    org_id: str,
    role: Role,
    *,
    name: str | None = None,
    workspace_id: str | None = None,
    created_by: str | None = None,
) -> tuple[ApiKey, str]:
    """A new API key; returns it and its secret `fpk_<prefix>_<secret>` (shown once only)."""
    prefix = _secrets.token_hex(6)
    secret = f"{API_KEY_PREFIX}{prefix}_{_secrets.token_urlsafe(32)}"
    key = ApiKey(
        id=new_id("key"),
        org_id=org_id,
        workspace_id=workspace_id,
        name=name,
        role=role,
        key_prefix=prefix,
        created_at=int(time.time()),
        revoked_at=None,
    )
    with wh.begin() as db:
        db.execute(
            wh.text(
                "INSERT INTO app.api_keys (id, org_id, workspace_id, name, role, key_prefix,"
                " key_sha256, created_by, created_at) VALUES (:id, :o, :w, :n, :r, :p, :h, :b, :t)"
            ),
            {
                "id": key.id,
                "o": org_id,
                "w": workspace_id,
                "n": name,
                "r": role.value,
                "p": prefix,
                "h": _sha256(secret),
                "b": created_by,
                "t": key.created_at,
            },
        )
    return key, secret


API_KEY_COLUMNS = "id, org_id, workspace_id, name, role, key_prefix, created_at, revoked_at"


def _api_key(r: dict[str, Any]) -> ApiKey:
    return ApiKey(
        r["id"],
        r["org_id"],
        r["workspace_id"],
        r["name"],
        Role(r["role"]),
        r["key_prefix"],
        r["created_at"],
        r["revoked_at"],
    )


def verify_api_key(wh: Warehouse, secret: str) -> ApiKey | None:
    """The live key a presented secret belongs to, or None (unknown, wrong or revoked)."""
    if not secret.startswith(API_KEY_PREFIX):
        return None
    prefix = secret[len(API_KEY_PREFIX) :].partition("_")[0]
    rows = wh.rows(
        f"SELECT {API_KEY_COLUMNS}, key_sha256 FROM app.api_keys"
        " WHERE key_prefix = :p AND revoked_at IS NULL",
        p=prefix,
    )
    if not rows or not hmac.compare_digest(rows[0]["key_sha256"], _sha256(secret)):
        return None
    return _api_key(rows[0])


def get_api_key(wh: Warehouse, org_id: str, key_id: str) -> ApiKey | None:
    """One of the organization's keys (revoked ones too), or None."""
    rows = wh.rows(
        f"SELECT {API_KEY_COLUMNS} FROM app.api_keys WHERE org_id = :o AND id = :id",
        o=org_id,
        id=key_id,
    )
    return _api_key(rows[0]) if rows else None


def api_key_from_row(row: dict) -> ApiKey:
    """An ApiKey from a row of app.api_keys (for paginated listings)."""
    return _api_key(row)


def revoke_api_key(wh: Warehouse, org_id: str, key_id: str) -> bool:
    """Revoke one of the organization's keys (False: no such key); revoking twice is harmless."""
    with wh.begin() as db:
        res = db.execute(
            wh.text(
                "UPDATE app.api_keys SET revoked_at = COALESCE(revoked_at, :t)"
                " WHERE org_id = :o AND id = :id"
            ),
            {"t": int(time.time()), "o": org_id, "id": key_id},
        )
    return bool(res.rowcount)
