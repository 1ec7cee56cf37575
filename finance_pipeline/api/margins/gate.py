"""Who may use the 003 margins API: a role with the right, in an organization on the pro tier or
above (free-tier organizations get 403 `forbidden` with an upgrade pointer)."""

# No `from __future__ import annotations`: the dependency's annotation names a closure variable,
# which FastAPI could not resolve from a string.
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request

from finance_pipeline.api.auth import Principal, require
from finance_pipeline.api.errors import ApiError
from finance_pipeline.lib.access import Permission
from finance_pipeline.tenancy import PAID_TIERS, org_tier


def check_tier(request: Request, org_id: str) -> None:
    """403 `forbidden` unless the organization is on a paid tier."""
    tier = org_tier(request.app.state.ctx.wh, org_id) or "free"
    if tier not in PAID_TIERS:
        raise ApiError(
            403,
            "forbidden",
            f"Margins and Stripe revenue sync need the Pro tier or above; this organization is on "
            f"{tier}. Upgrade to Pro (an operator runs `finance-pipeline org set-tier {org_id} "
            "pro`; docs/api.md, 003 margins API).",
            param="tier",
        )


def gated(permission: Permission) -> Callable[..., Principal]:
    """Dependency factory: the caller, holding `permission`, in a paid-tier organization."""
    role_check = require(permission)

    def dependency(
        request: Request, principal: Annotated[Principal, Depends(role_check)]
    ) -> Principal:
        check_tier(request, principal.org_id)
        return principal

    dependency.__name__ = f"gated_{permission.name.lower()}"
    return dependency
