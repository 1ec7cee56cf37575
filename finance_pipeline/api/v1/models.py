"""Request and response bodies of the 004 v1 API (amounts in cents, instants ISO 8601 UTC)."""

from __future__ import annotations

from typing import Annotated

from annotated_types import Interval
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from finance_pipeline.accounts import API_KEY_PREFIX, ApiKey, Membership
from finance_pipeline.lib.access import Role
from finance_pipeline.lib.money import micros_to_cents
from finance_pipeline.lib.timeutil import iso_utc
from finance_pipeline.tenancy import Workspace

# Cents fit BIGINT micro-units (x 10,000) with room to spare: |cents| <= 10^14 ($1 trillion).
MAX_CENTS = 10**14
# Patterns spell whitespace out: regex engines disagree on what `\s` covers (U+0085), and the
# schema's pattern and the server's check must accept exactly the same strings.
_NOT_SPACE = r"[^ \t\r\n]"
# Not blank: at least one non-space character.
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_NOT_SPACE)]
Email = Annotated[
    str,
    StringConstraints(max_length=254, pattern=r"^[^@ \t\r\n]+@[^@ \t\r\n]+\.[^@ \t\r\n]+$"),
]
Password = Annotated[str, StringConstraints(min_length=6, max_length=256)]


def _whole_cents(value: object) -> object:
    """Cents are whole numbers: 5000000 or 5000000.0 (JSON Schema's integer), never 12.5, "5",
    or true. Within MAX_CENTS every such float is exact (below 2**53)."""
    if isinstance(value, bool | str):
        raise ValueError("must be an integer number of cents")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be an integer number of cents")
        return int(value)
    return value


Cents = Annotated[int, Interval(ge=-MAX_CENTS, le=MAX_CENTS), BeforeValidator(_whole_cents)]
Timestamp = Annotated[str, Field(examples=["2026-03-01T00:00:00+00:00"])]


class _Request(BaseModel):
    """Request bodies reject fields they do not know (a typo is a 422, not silently ignored)."""

    model_config = ConfigDict(extra="forbid")


class RegisterRequest(_Request):
    """A new organization and its owner."""

    org_name: Name
    email: Email
    password: Password


class LoginRequest(_Request):
    """Credentials; `org_id` picks one of several organizations (default: the oldest membership)."""

    email: Email
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    org_id: str | None = None


class Org(BaseModel):
    """An organization as the API shows it."""

    id: str
    name: str
    email: str | None
    created_at: Timestamp


class AuthResponse(BaseModel):
    """The organization signed into and a short-lived access token (a JWT)."""

    org: Org
    access_token: str


class WorkspaceCreate(_Request):
    """A new workspace: a name and, optionally, cash on hand in cents."""

    name: Name
    cash_on_hand_cents: Cents | None = None


class WorkspacePatch(_Request):
    """Only the fields sent change; `cash_on_hand_cents: null` clears cash on hand."""

    # Optional but not nullable: a workspace always has a name.
    name: Name = None  # type: ignore[assignment]
    cash_on_hand_cents: Cents | None = None


class WorkspaceOut(BaseModel):
    """A workspace: one business or product (cash on hand drives runway)."""

    id: str
    org_id: str
    name: str
    cash_on_hand_cents: int | None
    created_at: Timestamp

    @classmethod
    def of(cls, ws: Workspace) -> WorkspaceOut:
        """The API form of a workspace (micro-units to cents, rounded half away from zero)."""
        cash = ws.cash_on_hand_micros
        return cls(
            id=ws.id,
            org_id=ws.org_id,
            name=ws.name,
            cash_on_hand_cents=None if cash is None else micros_to_cents(cash),
            created_at=iso_utc(ws.created_at or 0),
        )


class ApiKeyCreate(_Request):
    """A new API key: its role and, optionally, the one workspace it may see."""

    name: Annotated[str, StringConstraints(max_length=200)] | None = None
    role: Role = Role.MEMBER
    workspace_id: str | None = None


class ApiKeyOut(BaseModel):
    """An API key as listed: never its secret."""

    id: str
    name: str | None
    role: Role
    workspace_id: str | None
    prefix: str = Field(description="First characters of the key, to recognise it")
    created_at: Timestamp
    revoked_at: Timestamp | None

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyOut:
        """The API form of a stored key."""
        return cls(
            id=key.id,
            name=key.name,
            role=key.role,
            workspace_id=key.workspace_id,
            prefix=f"{API_KEY_PREFIX}{key.key_prefix}",
            created_at=iso_utc(key.created_at),
            revoked_at=None if key.revoked_at is None else iso_utc(key.revoked_at),
        )


class ApiKeyCreated(ApiKeyOut):
    """A key just created, with its secret: shown this once, store it now."""

    key: str = Field(description="The secret `fpk_...`; it cannot be shown again")


class MemberCreate(_Request):
    """Add a person: a new user needs a password; an existing user keeps theirs."""

    email: Email
    role: Role
    password: Password | None = None


class MemberPatch(_Request):
    """A member's new role."""

    role: Role


class MemberOut(BaseModel):
    """A member of the organization and their role."""

    user_id: str
    email: str
    role: Role
    created_at: Timestamp

    @classmethod
    def of(cls, m: Membership) -> MemberOut:
        """The API form of a membership."""
        return cls(user_id=m.user_id, email=m.email, role=m.role, created_at=iso_utc(m.created_at))
