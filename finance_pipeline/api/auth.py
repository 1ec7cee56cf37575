"""Who is calling: bearer JWTs for people, hashed API keys for machines, roles, the rate limit.

`authenticate(request)` resolves the credential once per request (the idempotency middleware and
the route's dependencies share the result) and counts the request against the credential's rate
limit. Routes declare what they need with `Depends(require(Permission.X))`, which answers 401
without a valid credential and 403 when the role lacks the right (docs/api.md, Roles).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from finance_pipeline import accounts
from finance_pipeline.api import ratelimit
from finance_pipeline.api.context import ApiContext
from finance_pipeline.api.errors import ApiError
from finance_pipeline.lib.access import ORG_LEVEL, Permission, Role, allows
from finance_pipeline.secrets import jwt_secret
from finance_pipeline.settings import Settings

ALGORITHM = "HS256"
ISSUER = "finance_pipeline"

# Documents the scheme in OpenAPI; the header itself is read by `authenticate`.
bearer_scheme = HTTPBearer(auto_error=False, description="A JWT access token or an `fpk_` API key")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user (through a JWT) or an API key, acting for one org."""

    kind: Literal["user", "api_key"]
    id: str
    org_id: str
    role: Role
    # An API key scoped to one workspace sees only that workspace.
    workspace_id: str | None = None

    @property
    def key(self) -> str:
        """Stable identity of the credential: the rate-limit bucket and idempotency owner."""
        return f"{self.id}@{self.org_id}" if self.kind == "user" else self.id


def issue_access_token(settings: Settings, user_id: str, org_id: str) -> str:
    """A signed short-lived access token for a user acting in an organization."""
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": user_id,
        "org": org_id,
        "iat": now,
        "exp": now + settings.jwt_access_ttl_seconds,
    }
    return jwt.encode(claims, jwt_secret(settings), algorithm=ALGORITHM)


def _invalid(message: str = "The bearer token is invalid or expired.") -> ApiError:
    return ApiError(
        401, "invalid_token", message, param=None, headers={"WWW-Authenticate": "Bearer"}
    )


def _from_jwt(ctx: ApiContext, token: str) -> Principal:
    try:
        # Only HS256 is accepted: a token declaring `none` or another algorithm is rejected.
        claims = jwt.decode(
            token,
            jwt_secret(ctx.settings),
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise _invalid("The bearer token has expired.") from None
    except jwt.InvalidTokenError:
        raise _invalid() from None
    user_id, org_id = claims.get("sub"), claims.get("org")
    if not isinstance(user_id, str) or not isinstance(org_id, str):
        raise _invalid()
    # The role is read now, not from the token: a demoted or removed member loses it at once.
    member = accounts.membership(ctx.wh, org_id, user_id)
    if member is None:
        raise _invalid()
    return Principal("user", user_id, org_id, member.role)


def _from_api_key(ctx: ApiContext, secret: str) -> Principal:
    key = accounts.verify_api_key(ctx.wh, secret)
    if key is None:
        raise _invalid("The API key is invalid or revoked.")
    return Principal("api_key", key.id, key.org_id, key.role, key.workspace_id)


def authenticate(request: Request) -> Principal:
    """The caller of this request, counted against its rate limit (resolved once per request).

    Raises ApiError 401 (no or bad credential) or 429 (over the limit, with Retry-After).
    """
    state = request.state
    cached = getattr(state, "auth", None)
    if cached is not None:
        if isinstance(cached, ApiError):
            raise cached
        return cached
    try:
        principal = _authenticate(request)
        enforce_rate_limit(request, principal.key)
    except ApiError as err:
        state.auth = err
        raise
    state.auth = principal
    return principal


def _authenticate(request: Request) -> Principal:
    ctx: ApiContext = request.app.state.ctx
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(
            401,
            "missing_token",
            "Send `Authorization: Bearer <access_token or API key>`.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if token.startswith(accounts.API_KEY_PREFIX):
        return _from_api_key(ctx, token)
    return _from_jwt(ctx, token)


def enforce_rate_limit(request: Request, bucket: str) -> None:
    """Count this request in `bucket`; 429 with Retry-After once over the per-minute limit."""
    ctx: ApiContext = request.app.state.ctx
    retry_after = ratelimit.hit(ctx.wh, bucket, ctx.settings.api_rate_limit_per_minute)
    if retry_after is not None:
        raise ApiError(
            429,
            "rate_limited",
            f"Too many requests: at most {ctx.settings.api_rate_limit_per_minute} per minute. "
            f"Retry in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )


def limit_anonymous(request: Request) -> None:
    """Dependency of the routes without a credential (register, login): the rate limit per
    client address, which also slows password guessing."""
    client = request.client.host if request.client else "unknown"
    if getattr(request.state, "anon_counted", False):
        return
    request.state.anon_counted = True
    enforce_rate_limit(request, f"ip:{client}")


def current_principal(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """Dependency: the authenticated caller (any role)."""
    return authenticate(request)


def require(permission: Permission) -> Callable[..., Principal]:
    """Dependency factory: the caller, who must hold `permission` (403 otherwise)."""

    def dependency(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if not allows(principal.role, permission):
            raise ApiError(
                403,
                "insufficient_role",
                f"The {principal.role.value} role cannot do this (needs {permission.value}).",
            )
        if principal.workspace_id is not None and permission in ORG_LEVEL:
            raise ApiError(
                403,
                "workspace_scoped_key",
                f"An API key scoped to one workspace cannot do this (needs {permission.value} "
                "over the whole organization).",
            )
        return principal

    dependency.__name__ = f"require_{permission.name.lower()}"
    return dependency
