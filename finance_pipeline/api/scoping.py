"""Which workspace a request is about, for every family (docs/api.md, Choosing the workspace).

Paths naming a workspace (`/v1/workspaces/{id}`, `/api/v1/client/workspace/{workspaceId}`) use
`workspace_by_id`. Org-scoped paths (the 000 and 003 families) use `request_workspace`, whose rule
is, in order: a workspace-scoped API key's workspace; else the `X-Workspace-Id` header; else the
organization's only workspace; else 400 `workspace_required`. A workspace of another organization,
or outside the key's scope, is a 404 like one that does not exist.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from finance_pipeline.api.auth import Principal, current_principal
from finance_pipeline.api.context import ApiContext
from finance_pipeline.api.errors import ApiError, not_found
from finance_pipeline.tenancy import Workspace, get_workspace, workspace_from_row

WORKSPACE_HEADER = "X-Workspace-Id"


def workspace_by_id(
    ctx: ApiContext, principal: Principal, workspace_id: str, param: str = "id"
) -> Workspace:
    """The workspace `workspace_id` if the caller may see it; 404 otherwise."""
    ws = get_workspace(ctx.wh, workspace_id, org_id=principal.org_id)
    if ws is None or principal.workspace_id not in (None, ws.id):
        raise not_found("workspace", param=param)
    return ws


def resolve_workspace(ctx: ApiContext, principal: Principal, header: str | None) -> Workspace:
    """The workspace of an org-scoped request, by the rule of this module's docstring."""
    if principal.workspace_id is not None:
        if header is not None and header != principal.workspace_id:
            raise not_found("workspace", param=WORKSPACE_HEADER)
        return workspace_by_id(ctx, principal, principal.workspace_id, WORKSPACE_HEADER)
    if header is not None:
        return workspace_by_id(ctx, principal, header, WORKSPACE_HEADER)
    rows = ctx.wh.rows(
        "SELECT * FROM app.workspaces WHERE org_id = :o ORDER BY id LIMIT 2", o=principal.org_id
    )
    if len(rows) == 1:
        return workspace_from_row(rows[0])
    if not rows:
        raise not_found("workspace (the organization has none yet)", param=WORKSPACE_HEADER)
    raise ApiError(
        400,
        "workspace_required",
        f"The organization has several workspaces: name one with the {WORKSPACE_HEADER} header.",
        param=WORKSPACE_HEADER,
    )


def request_workspace(
    request: Request,
    principal: Annotated[Principal, Depends(current_principal)],
    x_workspace_id: Annotated[
        str | None,
        Header(
            alias=WORKSPACE_HEADER,
            max_length=255,
            description="Workspace of an org-scoped request (docs/api.md)",
        ),
    ] = None,
) -> Workspace:
    """Dependency: the workspace an org-scoped request is about."""
    return resolve_workspace(request.app.state.ctx, principal, x_workspace_id)
