"""The 001 products API (`/api/v1/products/{id_or_slug}`): a product's revenue and cost records,
listed, retrieved and created (docs/api.md). A product is a workspace, named by its id or slug.

Records are the raw ingest rows (raw.manual_revenue, raw.cost_records), the same ones the CSV
landing files write; creating one validates it with the landing files' rules, stores it, and asks
the pipeline to refresh the marts over its day.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Request, Response

from finance_pipeline.api.auth import Principal, require
from finance_pipeline.api.context import ApiContext, api_context
from finance_pipeline.api.errors import not_found
from finance_pipeline.api.exact import exact_json
from finance_pipeline.api.families import PRODUCTS
from finance_pipeline.api.pagination import PageParams, fetch_page, page_params
from finance_pipeline.api.products import records
from finance_pipeline.api.products.models import (
    Cost,
    CostCreate,
    CostList,
    CostOne,
    Revenue,
    RevenueCreate,
    RevenueList,
    RevenueOne,
)
from finance_pipeline.lib.access import Permission
from finance_pipeline.tenancy import Workspace, workspace_from_row

Ctx = Annotated[ApiContext, Depends(api_context)]
IdOrSlug = Annotated[
    str, Path(max_length=255, description="The product's workspace id (ws_...) or its slug")
]
RecordId = Annotated[str, Path(max_length=255, description="The record's id")]
REFRESH_HEADER = "X-Refresh-Request-Id"


def product(ctx: ApiContext, principal: Principal, id_or_slug: str) -> Workspace:
    """The workspace a path names by id or slug, if the caller may see it; 404 otherwise."""
    rows = ctx.wh.rows(
        "SELECT * FROM app.workspaces WHERE org_id = :o AND (id = :ref OR slug = :ref)",
        o=principal.org_id,
        ref=id_or_slug,
    )
    if not rows or principal.workspace_id not in (None, rows[0]["id"]):
        raise not_found("product", param="id_or_slug")
    return workspace_from_row(rows[0])


async def exact_body(request: Request) -> Any:
    """The JSON body with decimals as Decimal: `99.00` reaches the ingest validation digit for
    digit, never through a float (the body model has already checked its shape)."""
    return json.loads(await request.body(), parse_float=Decimal)


def _created(model: Any, result: records.Created) -> Response:
    response = exact_json(model, status_code=201 if result.created else 200)
    if result.refresh_id:
        response.headers[REFRESH_HEADER] = result.refresh_id
    return response


_CREATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "A record with this id and content already existed: it is returned"},
}


def router() -> APIRouter:
    """Every route of the family, under its prefix and error dialect."""
    r = PRODUCTS.router()

    @r.get("/{id_or_slug}/revenue", response_model=RevenueList)
    def list_revenue(
        id_or_slug: IdOrSlug,
        ctx: Ctx,
        principal: Annotated[Principal, Depends(require(Permission.READ))],
        page: Annotated[PageParams, Depends(page_params)],
    ) -> Response:
        """The product's revenue records (manual revenue: the API's and the landing files'), by
        id."""
        ws = product(ctx, principal, id_or_slug)
        rows, has_more = fetch_page(
            ctx.wh,
            "SELECT * FROM raw.manual_revenue WHERE workspace_id = :w",
            page,
            id_column="external_id",
            w=ws.id,
        )
        return exact_json(RevenueList(data=[Revenue.of(x) for x in rows], has_more=has_more))

    @r.get("/{id_or_slug}/revenue/{revenue_id}", response_model=RevenueOne)
    def get_revenue(
        id_or_slug: IdOrSlug,
        revenue_id: RecordId,
        ctx: Ctx,
        principal: Annotated[Principal, Depends(require(Permission.READ))],
    ) -> Response:
        """One revenue record."""
        ws = product(ctx, principal, id_or_slug)
        row = records.get_row(ctx, "revenue", ws.id, revenue_id)
        if row is None:
            raise not_found("revenue record", param="revenue_id")
        return exact_json(RevenueOne(data=Revenue.of(row)))

    @r.post(
        "/{id_or_slug}/revenue",
        status_code=201,
        response_model=RevenueOne,
        responses=_CREATE_RESPONSES,
    )
    def create_revenue(
        id_or_slug: IdOrSlug,
        body: Annotated[RevenueCreate, Body()],
        raw: Annotated[Any, Depends(exact_body)],
        ctx: Ctx,
        principal: Annotated[Principal, Depends(require(Permission.INGEST))],
    ) -> Response:
        """Create a revenue record; the marts include it once the refresh it queues has run
        (its id in the X-Refresh-Request-Id header)."""
        ws = product(ctx, principal, id_or_slug)
        result = records.create(ctx, "revenue", ws, raw, principal.id)
        return _created(RevenueOne(data=Revenue.of(result.row)), result)

    @r.get("/{id_or_slug}/costs", response_model=CostList)
    def list_costs(
        id_or_slug: IdOrSlug,
        ctx: Ctx,
        principal: Annotated[Principal, Depends(require(Permission.READ))],
        page: Annotated[PageParams, Depends(page_params)],
    ) -> Response:
        """The product's cost records (the API's and the landing files'), by id."""
        ws = product(ctx, principal, id_or_slug)
        rows, has_more = fetch_page(
            ctx.wh,
            "SELECT * FROM raw.cost_records WHERE workspace_id = :w",
            page,
            id_column="external_id",
            w=ws.id,
        )
        return exact_json(CostList(data=[Cost.of(x) for x in rows], has_more=has_more))

    @r.get("/{id_or_slug}/costs/{cost_id}", response_model=CostOne)
    def get_cost(
        id_or_slug: IdOrSlug,
        cost_id: RecordId,
        ctx: Ctx,
        principal: Annotated[Principal, Depends(require(Permission.READ))],
    ) -> Response:
        """One cost record."""
        ws = product(ctx, principal, id_or_slug)
        row = records.get_row(ctx, "costs", ws.id, cost_id)
        if row is None:
            raise not_found("cost record", param="cost_id")
        return exact_json(CostOne(data=Cost.of(row)))

    @r.post(
        "/{id_or_slug}/costs", status_code=201, response_model=CostOne, responses=_CREATE_RESPONSES
    )
    def create_cost(
        id_or_slug: IdOrSlug,
        body: Annotated[CostCreate, Body()],
        raw: Annotated[Any, Depends(exact_body)],
        ctx: Ctx,
        principal: Annotated[Principal, Depends(require(Permission.INGEST))],
    ) -> Response:
        """Create a cost record; the marts include it once the refresh it queues has run (its id
        in the X-Refresh-Request-Id header)."""
        ws = product(ctx, principal, id_or_slug)
        result = records.create(ctx, "costs", ws, raw, principal.id)
        return _created(CostOne(data=Cost.of(result.row)), result)

    return r
