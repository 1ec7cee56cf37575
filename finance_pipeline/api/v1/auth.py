"""`POST /v1/auth/register` and `POST /v1/auth/login`: an organization and an access token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from finance_pipeline import accounts
from finance_pipeline.api import ratelimit
from finance_pipeline.api.auth import issue_access_token, limit_anonymous
from finance_pipeline.api.context import ApiContext, api_context
from finance_pipeline.api.errors import ApiError
from finance_pipeline.api.families import V1
from finance_pipeline.api.v1.models import AuthResponse, LoginRequest, Org, RegisterRequest
from finance_pipeline.lib.timeutil import iso_utc

router = APIRouter(prefix="/auth", dependencies=[Depends(limit_anonymous)])

Ctx = Annotated[ApiContext, Depends(api_context)]


def _auth_response(ctx: ApiContext, org_id: str, user_id: str) -> AuthResponse:
    org = ctx.wh.rows(
        "SELECT id, name, email, created_at FROM app.organizations WHERE id = :o", o=org_id
    )[0]
    return AuthResponse(
        org=Org(
            id=org["id"],
            name=org["name"],
            email=org["email"],
            created_at=iso_utc(org["created_at"]),
        ),
        access_token=issue_access_token(ctx.settings, user_id, org_id),
    )


@router.post("/register", status_code=201, response_model=AuthResponse)
def register(body: RegisterRequest, ctx: Ctx) -> AuthResponse:
    """Create an organization with you as its owner; returns an access token."""
    try:
        org_id, user_id = accounts.register_owner(ctx.wh, body.org_name, body.email, body.password)
    except accounts.AccountError as exc:
        raise ApiError(409, exc.code, str(exc), param="email") from None
    return _auth_response(ctx, org_id, user_id)


@router.post(
    "/login",
    response_model=AuthResponse,
    responses={429: {"model": V1.dialect.model, "description": "Too many failed sign-ins"}},
)
def login(body: LoginRequest, ctx: Ctx) -> AuthResponse:
    """Sign in with email and password; returns an access token for your organization. After
    FP_API_LOGIN_FAILURES_PER_WINDOW failed sign-ins of an email in 15 minutes, 429 until the
    window ends (whatever the password)."""
    bucket = f"login-failures:{body.email.strip().lower()}"
    limit = ctx.settings.api_login_failures_per_window
    window = ratelimit.LOGIN_WINDOW_SECONDS
    if (retry := ratelimit.over(ctx.wh, bucket, limit, window_seconds=window)) is not None:
        raise ApiError(
            429,
            "rate_limited",
            f"Too many failed sign-ins for this email: at most {limit} per "
            f"{window // 60} minutes. Retry in {retry} s.",
            headers={"Retry-After": str(retry)},
        )
    member = accounts.authenticate_password(ctx.wh, body.email, body.password, body.org_id)
    if member is None:
        ratelimit.hit(ctx.wh, bucket, limit, window_seconds=window)
        raise ApiError(401, "invalid_credentials", "Email or password is incorrect.")
    return _auth_response(ctx, member.org_id, member.user_id)
