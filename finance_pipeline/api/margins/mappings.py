"""`/api/customer-mappings`: list, upsert and delete the workspace's customer <-> cost tag mappings
(finance_pipeline/margins/mappings.py does the work; a failed call writes nothing)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from finance_pipeline.api.auth import Principal
from finance_pipeline.api.context import ApiContext, api_context
from finance_pipeline.api.errors import ApiError, not_found
from finance_pipeline.api.margins.gate import gated
from finance_pipeline.api.margins.models import (
    CustomerMappingIn,
    CustomerMappingOut,
    Deleted,
    Envelope,
)
from finance_pipeline.api.scoping import request_workspace
from finance_pipeline.lib.access import Permission
from finance_pipeline.margins import mappings
from finance_pipeline.tenancy import Workspace

router = APIRouter(prefix="/customer-mappings")

Ctx = Annotated[ApiContext, Depends(api_context)]
Ws = Annotated[Workspace, Depends(request_workspace)]
_FIELDS = ("stripeCustomerId", "tagValue", "tagKey", "matchType", "status", "id")


def _api_error(err: mappings.MappingError, param: str | None = None) -> ApiError:
    """A mapping error as the margins API answers it; its message names the field first."""
    text = str(err)
    param = next((f for f in _FIELDS if text.startswith(f)), param)
    return ApiError(err.status, err.code, text[:1].upper() + text[1:] + ".", param=param)


@router.get("", response_model=Envelope[list[CustomerMappingOut]])
def list_customer_mappings(
    ctx: Ctx,
    principal: Annotated[Principal, Depends(gated(Permission.READ))],
    ws: Ws,
    status: Annotated[
        Literal["pending", "accepted", "rejected"] | None,
        Query(description="Only mappings of this status (default: all)"),
    ] = None,
) -> Envelope[list[CustomerMappingOut]]:
    """Every mapping of the workspace, by tag key, tag value and customer."""
    rows = mappings.list_mappings(ctx.wh, ws.id, status)
    return Envelope[list[CustomerMappingOut]](
        data=[CustomerMappingOut.model_validate(r) for r in rows]
    )


@router.post("", response_model=Envelope[CustomerMappingOut])
def upsert_customer_mapping(
    body: CustomerMappingIn,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(gated(Permission.SETTINGS))],
    ws: Ws,
) -> Envelope[CustomerMappingOut]:
    """Create or update a mapping, upserting on (stripeCustomerId, tagKey); in force at once."""
    known = ctx.wh.rows(
        "SELECT id FROM raw.stripe_customers WHERE workspace_id = :w AND id = :c AND deleted = :f",
        w=ws.id,
        c=body.stripeCustomerId,
        f=False,
    )
    if not known:
        # A well-formed reference to nothing (not bad input): 404 like any missing resource.
        raise not_found("Stripe customer in this workspace", param="stripeCustomerId")
    try:
        row = mappings.upsert_mapping(
            ctx.wh, ws.id, body.stripeCustomerId, body.tagValue, body.tagKey, body.matchType
        )
    except mappings.MappingError as err:
        raise _api_error(err) from None
    return Envelope[CustomerMappingOut](data=CustomerMappingOut.model_validate(row))


@router.delete("", response_model=Envelope[Deleted])
def delete_customer_mapping(
    ctx: Ctx,
    principal: Annotated[Principal, Depends(gated(Permission.SETTINGS))],
    ws: Ws,
    id: Annotated[str, Query(min_length=1, max_length=255, description="The mapping's id")],
) -> Envelope[Deleted]:
    """Delete a mapping (or forget a rejection) by id; 404 if the workspace has no such id."""
    try:
        mappings.delete_mapping(ctx.wh, ws.id, id)
    except mappings.MappingError as err:
        raise _api_error(err, "id") from None
    return Envelope[Deleted](data=Deleted(deleted=True))
