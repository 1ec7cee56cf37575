"""`/v1/members` and `/v1/api_keys`: who may act for the organization, and with which role."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from finance_pipeline import accounts
from finance_pipeline.api.auth import Principal, require
from finance_pipeline.api.context import ApiContext, api_context
from finance_pipeline.api.errors import ApiError, not_found
from finance_pipeline.api.pagination import ListResponse, PageParams, fetch_page, page_params
from finance_pipeline.api.scoping import workspace_by_id
from finance_pipeline.api.v1.models import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    MemberCreate,
    MemberOut,
    MemberPatch,
)
from finance_pipeline.lib.access import Permission

members = APIRouter(prefix="/members")
api_keys = APIRouter(prefix="/api_keys")

Ctx = Annotated[ApiContext, Depends(api_context)]
Owner = Annotated[Principal, Depends(require(Permission.MEMBERS_MANAGE))]
KeyOwner = Annotated[Principal, Depends(require(Permission.API_KEYS_MANAGE))]
Reader = Annotated[Principal, Depends(require(Permission.READ))]
UserId = Annotated[str, Path(max_length=255, description="User id (usr_...)")]
KeyId = Annotated[str, Path(max_length=255, description="API key id (key_...)")]


def _conflict(exc: accounts.AccountError, param: str | None) -> ApiError:
    return ApiError(409, exc.code, str(exc), param=param)


@members.get("", response_model=ListResponse[MemberOut])
def list_members(
    ctx: Ctx, principal: Reader, page: Annotated[PageParams, Depends(page_params)]
) -> ListResponse[MemberOut]:
    """The organization's members and their roles, by user id."""
    rows, has_more = fetch_page(
        ctx.wh,
        "SELECT m.org_id, m.user_id, u.email, m.role, m.created_at FROM app.memberships m"
        " JOIN app.users u ON u.id = m.user_id WHERE m.org_id = :org",
        page,
        id_column="m.user_id",
        org=principal.org_id,
    )
    data = [MemberOut.of(accounts.membership_from_row(r)) for r in rows]
    return ListResponse[MemberOut](data=data, has_more=has_more)


@members.post("", status_code=201, response_model=MemberOut)
def add_member(body: MemberCreate, ctx: Ctx, principal: Owner) -> MemberOut:
    """Add a person with a role (owner); a new user needs a password."""
    try:
        m = accounts.add_member(ctx.wh, principal.org_id, body.email, body.role, body.password)
    except accounts.AccountError as exc:
        # password_required is a 409, not a 422: the body is valid, but this email has no
        # account yet (the state, not the schema, asks for a password).
        raise _conflict(exc, "password" if exc.code == "password_required" else "email") from None
    return MemberOut.of(m)


@members.patch("/{user_id}", response_model=MemberOut)
def change_role(user_id: UserId, body: MemberPatch, ctx: Ctx, principal: Owner) -> MemberOut:
    """Give a member another role (owner); the last owner stays an owner."""
    if accounts.membership(ctx.wh, principal.org_id, user_id) is None:
        raise not_found("member", param="user_id")
    try:
        m = accounts.change_role(ctx.wh, principal.org_id, user_id, body.role)
    except accounts.AccountError as exc:
        raise _conflict(exc, "role") from None
    if m is None:
        raise not_found("member", param="user_id")
    return MemberOut.of(m)


@members.delete("/{user_id}", status_code=204, response_class=Response)
def remove_member(user_id: UserId, ctx: Ctx, principal: Owner) -> Response:
    """Remove a member (owner); the last owner cannot be removed."""
    try:
        removed = accounts.remove_member(ctx.wh, principal.org_id, user_id)
    except accounts.AccountError as exc:
        raise _conflict(exc, "user_id") from None
    if not removed:
        raise not_found("member", param="user_id")
    return Response(status_code=204)


@api_keys.post("", status_code=201, response_model=ApiKeyCreated)
def create_api_key(body: ApiKeyCreate, ctx: Ctx, principal: KeyOwner) -> ApiKeyCreated:
    """Create an API key (owner); the response shows its secret `key` this once only."""
    if body.workspace_id is not None:
        workspace_by_id(ctx, principal, body.workspace_id, param="workspace_id")
    key, secret = accounts.create_api_key(
        ctx.wh,
        principal.org_id,
        body.role,
        name=body.name,
        workspace_id=body.workspace_id,
        created_by=principal.id,
    )
    return ApiKeyCreated(**ApiKeyOut.of(key).model_dump(), key=secret)


@api_keys.get("", response_model=ListResponse[ApiKeyOut])
def list_api_keys(
    ctx: Ctx, principal: KeyOwner, page: Annotated[PageParams, Depends(page_params)]
) -> ListResponse[ApiKeyOut]:
    """The organization's API keys, revoked ones included (never their secrets)."""
    rows, has_more = fetch_page(
        ctx.wh,
        f"SELECT {accounts.API_KEY_COLUMNS} FROM app.api_keys WHERE org_id = :org",
        page,
        org=principal.org_id,
    )
    return ListResponse[ApiKeyOut](
        data=[ApiKeyOut.of(accounts.api_key_from_row(r)) for r in rows], has_more=has_more
    )


@api_keys.get("/{id}", response_model=ApiKeyOut)
def get_api_key(id: KeyId, ctx: Ctx, principal: KeyOwner) -> ApiKeyOut:
    """One API key (never its secret)."""
    key = accounts.get_api_key(ctx.wh, principal.org_id, id)
    if key is None:
        raise not_found("API key", param="id")
    return ApiKeyOut.of(key)


@api_keys.delete("/{id}", status_code=204, response_class=Response)
def revoke_api_key(id: KeyId, ctx: Ctx, principal: KeyOwner) -> Response:
    """Revoke an API key (owner): it stops authenticating at once; revoking twice is harmless."""
    if not accounts.revoke_api_key(ctx.wh, principal.org_id, id):
        raise not_found("API key", param="id")
    return Response(status_code=204)
