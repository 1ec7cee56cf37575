"""`/v1/workspaces`: create, list, read, update (name, cash on hand) and delete workspaces."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response

from finance_pipeline import tenancy
from finance_pipeline.api.auth import Principal, require
from finance_pipeline.api.context import ApiContext, api_context
from finance_pipeline.api.pagination import ListResponse, PageParams, fetch_page, page_params
from finance_pipeline.api.scoping import workspace_by_id
from finance_pipeline.api.v1.freshness import request_refresh_of_computed_days
from finance_pipeline.api.v1.models import WorkspaceCreate, WorkspaceOut, WorkspacePatch
from finance_pipeline.lib.access import Permission
from finance_pipeline.lib.money import cents_to_micros

router = APIRouter(prefix="/workspaces")

Ctx = Annotated[ApiContext, Depends(api_context)]
WorkspaceId = Annotated[str, Path(max_length=255, description="Workspace id (ws_...)")]


@router.post("", status_code=201, response_model=WorkspaceOut)
def create_workspace(
    body: WorkspaceCreate,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(require(Permission.WORKSPACES_MANAGE))],
) -> WorkspaceOut:
    """Create a workspace in your organization (owner)."""
    cash = None if body.cash_on_hand_cents is None else cents_to_micros(body.cash_on_hand_cents)
    wid = tenancy.create_workspace(ctx.wh, principal.org_id, body.name, cash_on_hand_micros=cash)
    return WorkspaceOut.of(workspace_by_id(ctx, principal, wid))


@router.get("", response_model=ListResponse[WorkspaceOut])
def list_workspaces(
    ctx: Ctx,
    principal: Annotated[Principal, Depends(require(Permission.READ))],
    page: Annotated[PageParams, Depends(page_params)],
) -> ListResponse[WorkspaceOut]:
    """Your organization's workspaces (only its own workspace for a workspace-scoped key)."""
    scope = " AND id = :only" if principal.workspace_id is not None else ""
    params = {"only": principal.workspace_id} if scope else {}
    rows, has_more = fetch_page(
        ctx.wh,
        f"SELECT * FROM app.workspaces WHERE org_id = :org{scope}",
        page,
        org=principal.org_id,
        **params,
    )
    return ListResponse[WorkspaceOut](
        data=[WorkspaceOut.of(tenancy.workspace_from_row(r)) for r in rows], has_more=has_more
    )


@router.get("/{id}", response_model=WorkspaceOut)
def get_workspace(
    id: WorkspaceId,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(require(Permission.READ))],
) -> WorkspaceOut:
    """One workspace."""
    return WorkspaceOut.of(workspace_by_id(ctx, principal, id))


@router.patch("/{id}", response_model=WorkspaceOut)
def update_workspace(
    id: WorkspaceId,
    body: WorkspacePatch,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(require(Permission.SETTINGS))],
) -> WorkspaceOut:
    """Change the name and/or cash on hand; only the fields sent change, null clears cash."""
    before = workspace_by_id(ctx, principal, id).cash_on_hand_micros
    sent = body.model_fields_set
    changes: dict[str, object] = {}
    if "name" in sent:
        changes["name"] = body.name
    if "cash_on_hand_cents" in sent:
        cents = body.cash_on_hand_cents
        changes["cash_on_hand_micros"] = None if cents is None else cents_to_micros(cents)
    updated = tenancy.update_workspace(ctx.wh, id, **changes) if changes else None
    if "cash_on_hand_micros" in changes and changes["cash_on_hand_micros"] != before:
        # Runway is stored per day with the cash it was computed with: restate those days, so
        # reads see the new cash (docs/api.md, "Reads see writes").
        request_refresh_of_computed_days(
            ctx,
            id,
            reason="cash on hand changed through the API",
            requested_by=f"api:{principal.id}",
        )
    return WorkspaceOut.of(updated or workspace_by_id(ctx, principal, id))


@router.delete("/{id}", status_code=204, response_class=Response)
def delete_workspace(
    id: WorkspaceId,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(require(Permission.WORKSPACES_MANAGE))],
) -> Response:
    """Delete the workspace and all of its data (transactions, forecasts, alerts...) (owner)."""
    workspace_by_id(ctx, principal, id)
    tenancy.delete_workspace(ctx.wh, id)
    return Response(status_code=204)
