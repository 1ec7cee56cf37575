"""Who may do what in an organization: the roles of its members and API keys (docs/api.md, Roles).

owner: everything, including members, API keys, creating and deleting workspaces and connecting
Stripe. finance: reads everything and runs the finance work (ingest, exports, forecasts and
scenarios, workspace settings such as cash on hand). member: reads only.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """A member's or an API key's role in its organization."""

    OWNER = "owner"
    FINANCE = "finance"
    MEMBER = "member"


class Permission(StrEnum):
    """One right a route requires; the matrix below grants it to roles."""

    READ = "read"
    INGEST = "ingest"
    EXPORTS = "exports"
    FORECASTS = "forecasts"
    SETTINGS = "settings"
    WORKSPACES_MANAGE = "workspaces:manage"
    MEMBERS_MANAGE = "members:manage"
    API_KEYS_MANAGE = "api_keys:manage"
    STRIPE_CONNECT = "stripe:connect"


_FINANCE = frozenset(
    {
        Permission.READ,
        Permission.INGEST,
        Permission.EXPORTS,
        Permission.FORECASTS,
        Permission.SETTINGS,
    }
)

#: The role matrix: the rights of each role (docs/api.md renders it as a table).
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OWNER: frozenset(Permission),
    Role.FINANCE: _FINANCE,
    Role.MEMBER: frozenset({Permission.READ}),
}


#: Rights over the whole organization, which a credential scoped to one workspace never has
#: (else a workspace key could add an org-wide member or key, or manage other workspaces).
ORG_LEVEL = frozenset(
    {Permission.WORKSPACES_MANAGE, Permission.MEMBERS_MANAGE, Permission.API_KEYS_MANAGE}
)


def allows(role: Role | str, permission: Permission) -> bool:
    """Whether `role` has `permission` (an unknown role has none)."""
    try:
        return permission in ROLE_PERMISSIONS[Role(role)]
    except ValueError:
        return False
