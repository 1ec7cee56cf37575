"""`/v1/workspaces/{id}/ingest/...`: push expenses and manual revenue (validated by the same code as
the CSV landing folder, deduplicated by external_id, all or nothing), or connect Stripe and sync.

Every ingest that stores a row requests a refresh of the days it changed (docs/api.md, "Reads see
writes"), so the metrics, alerts and forecasts read afterwards include it.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

import stripe
from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from finance_pipeline import tenancy
from finance_pipeline.api.auth import Principal, require
from finance_pipeline.api.context import ApiContext, api_context
from finance_pipeline.api.errors import ApiError, not_found
from finance_pipeline.api.families import V1
from finance_pipeline.api.inline_runs import start_inline
from finance_pipeline.api.scoping import workspace_by_id
from finance_pipeline.api.v1.freshness import (
    failed_sync_error,
    queue_refresh_after_ingest,
    run_inline,
    wait_for_refresh,
)
from finance_pipeline.api.v1.models import _Request
from finance_pipeline.ingest.manual_rows import store_records
from finance_pipeline.lib.access import Permission
from finance_pipeline.lib.backoff import BackoffPolicy
from finance_pipeline.lib.ingest_validation import MAX_ROWS, validate_rows
from finance_pipeline.requests.store import get_request, request_sync
from finance_pipeline.stripe_sync.gateway import StripeAuthFailed, StripeGateway

router = APIRouter(prefix="/workspaces/{id}/ingest")

Ctx = Annotated[ApiContext, Depends(api_context)]
WorkspaceId = Annotated[str, Path(max_length=255, description="Workspace id (ws_...)")]

_EXPENSE_ITEM = {
    "type": "object",
    "required": ["subtype", "amount_cents", "occurred_at"],
    "properties": {
        "subtype": {"type": "string", "enum": ["recurring_expense", "one_time_expense"]},
        "amount_cents": {"type": "integer", "minimum": 1, "description": "Positive cents"},
        "currency": {"type": "string", "default": "USD"},
        "occurred_at": {"type": "string", "format": "date", "example": "2026-02-01"},
        "vendor": {"type": "string"},
        "external_id": {"type": "string", "description": "Deduplicates across calls"},
    },
}
_REVENUE_ITEM = {
    "type": "object",
    "required": ["subtype", "amount_cents", "occurred_at"],
    "properties": {
        "subtype": {"type": "string", "enum": ["recurring", "one_time"]},
        "type": {"type": "string", "description": "Optional, e.g. refund (stored negative)"},
        "amount_cents": {"type": "integer", "minimum": 1, "description": "Positive cents"},
        "currency": {"type": "string", "default": "USD"},
        "occurred_at": {"type": "string", "format": "date", "example": "2026-02-01"},
        "description": {"type": "string"},
        "external_id": {"type": "string", "description": "Deduplicates across calls"},
    },
}


def _items(schema: dict[str, Any]) -> Any:
    # Items are checked by lib.ingest_validation (as CSV landing rows are); the schema documents.
    return Field(min_length=1, max_length=MAX_ROWS, json_schema_extra={"items": schema})


class ExpensesIngest(_Request):
    """Expense events to store (recurring ones count in recurring burn and runway)."""

    expenses: Annotated[list[dict[str, Any]], _items(_EXPENSE_ITEM)]


class RevenueIngest(_Request):
    """Manual revenue events to store (recurring ones count in MRR)."""

    revenue: Annotated[list[dict[str, Any]], _items(_REVENUE_ITEM)]


class StripeIngest(_Request):
    """A Stripe secret (or restricted) key to connect and sync from."""

    stripe_api_key: Annotated[str, Field(min_length=1, max_length=255)]


class IngestResult(BaseModel):
    """What an ingest stored: new rows, and rows skipped because their external_id was known."""

    ingest_id: str
    status: Literal["completed", "queued", "running", "failed"]
    inserted: int | None = Field(description="New rows stored (null while a Stripe sync runs)")
    duplicates: int | None = Field(description="Rows already stored (null while a sync runs)")
    refresh_request_id: str | None = Field(
        default=None, description="The refresh (or sync) request the marts are rebuilt by"
    )


def _json_cents(kind: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """JSON cents per docs/api.md (Amounts): `120000.0` is a whole number and passes on as 120000;
    fractions stay floats for the validator to reject; text and booleans, which a CSV cell may
    hold but a JSON amount may not, are a 422 here."""
    out = []
    for i, item in enumerate(items):
        amount = item.get("amount_cents")
        if isinstance(amount, str | bool):
            param = f"{kind}[{i}].amount_cents"
            raise ApiError(
                422,
                "invalid_field",
                f"{param} must be a JSON integer number of cents.",
                param=param,
            )
        if isinstance(amount, float) and amount.is_integer() and abs(amount) < 2**53:
            item = {**item, "amount_cents": int(amount)}
        out.append(item)
    return out


def _ingest(
    ctx: ApiContext, principal: Principal, workspace_id: str, kind: str, items: list[dict]
) -> IngestResult:
    """Validate every item, then store them all in one transaction (or none: 422 on the first
    problem, naming `kind[i].field`), then request a refresh of the affected days."""
    workspace_by_id(ctx, principal, workspace_id)
    result = validate_rows(kind, _json_cents(kind, items), start_line=0, max_rows=MAX_ROWS)
    if result.errors:
        first = result.errors[0]
        param = f"{kind}[{first.line}]" + (f".{first.field}" if first.field else "")
        more = f" ({len(result.errors) - 1} more problem(s))" if len(result.errors) > 1 else ""
        code = first.code if first.code == "missing_field" else "invalid_field"
        raise ApiError(422, code, f"{param}: {first.message}{more}", param=param)
    refresh_id = None
    with ctx.wh.begin() as db:
        outcome = store_records(
            ctx.wh, db, kind, result.records, workspace_id=workspace_id, source="api"
        )
        if outcome.inserted:
            days: list[date] = [r.date for r in result.records]  # type: ignore[union-attr]
            refresh_id = queue_refresh_after_ingest(
                ctx,
                db,
                workspace_id,
                days,
                reason=f"{outcome.inserted} {kind} row(s) ingested through the API",
                requested_by=f"api:{principal.id}",
            )
    if refresh_id is not None:
        run_inline(ctx)
    return IngestResult(
        ingest_id=tenancy.new_id("ing"),
        status="completed",
        inserted=outcome.inserted,
        # Repeats inside the request and rows stored by earlier calls alike.
        duplicates=outcome.duplicates + result.duplicate_count,
        refresh_request_id=refresh_id,
    )


@router.post("/expenses", status_code=202, response_model=IngestResult)
def ingest_expenses(
    id: WorkspaceId,
    body: ExpensesIngest,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(require(Permission.INGEST))],
) -> IngestResult:
    """Store expense events (all or nothing; known external_ids are skipped as duplicates)."""
    return _ingest(ctx, principal, id, "expenses", body.expenses)


@router.post("/revenue", status_code=202, response_model=IngestResult)
def ingest_revenue(
    id: WorkspaceId,
    body: RevenueIngest,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(require(Permission.INGEST))],
) -> IngestResult:
    """Store manual revenue events (all or nothing; known external_ids are skipped)."""
    return _ingest(ctx, principal, id, "revenue", body.revenue)


def check_stripe_key(ctx: ApiContext, api_key: str) -> dict[str, Any]:
    """The Stripe account of `api_key` (one call to the configured Stripe base): 422
    invalid_stripe_api_key when Stripe rejects it, 502 stripe_unavailable when it cannot answer."""
    if not api_key.startswith(("sk_", "rk_")):
        raise ApiError(
            422,
            "invalid_stripe_api_key",
            "stripe_api_key must be a Stripe secret (sk_...) or restricted (rk_...) key.",
            param="stripe_api_key",
        )
    gateway = StripeGateway(
        api_key,
        api_base=ctx.settings.stripe_api_base,
        api_version=ctx.settings.stripe_api_version,
        backoff=BackoffPolicy(max_attempts=2),
        timeout_seconds=ctx.settings.stripe_timeout_seconds,
    )
    try:
        return gateway.account()
    except (StripeAuthFailed, stripe.AuthenticationError) as exc:
        raise ApiError(
            422,
            "invalid_stripe_api_key",
            f"Stripe rejected the key {gateway.key_hint}.",
            param="stripe_api_key",
        ) from exc
    except Exception as exc:  # connection refused, 5xx after retries, a 403 on /v1/account
        raise ApiError(
            502,
            "stripe_unavailable",
            f"The Stripe API could not be reached ({type(exc).__name__}).",
        ) from exc


@router.post(
    "/stripe",
    status_code=202,
    response_model=IngestResult,
    responses={
        500: {"model": V1.dialect.model, "description": "The sync run failed (sync_failed)"},
        502: {"model": V1.dialect.model, "description": "Stripe is unreachable or failed"},
    },
)
def ingest_stripe(
    id: WorkspaceId,
    body: StripeIngest,
    ctx: Ctx,
    principal: Annotated[Principal, Depends(require(Permission.STRIPE_CONNECT))],
) -> IngestResult:
    """Check the key with Stripe, connect it to the workspace, sync it (invoices, charges, refunds,
    subscriptions; re-running skips objects already ingested) and count what the sync stored."""
    workspace_by_id(ctx, principal, id)
    account = check_stripe_key(ctx, body.stripe_api_key)
    key = body.stripe_api_key
    tenancy.connect_stripe(
        ctx.wh,
        id,
        account_id=str(account.get("id") or ""),
        livemode=key.startswith(("sk_live_", "rk_live_")),
        api_key=key,
        api_base=ctx.settings.stripe_api_base,
        settings=ctx.settings,
    )
    rid = request_sync(
        ctx.wh, id, reason="Stripe connected through the API", requested_by=f"api:{principal.id}"
    )
    start_inline(ctx, [rid])
    # The seed answers once the objects are in: wait like the reads do (FP_API_READ_WAIT_SECONDS);
    # a sync that outlasts the wait answers its status with null counters (poll the request).
    wait_for_refresh(ctx, id, request_ids=[rid])
    row = get_request(ctx.wh, rid)
    if row is None:  # the workspace was deleted meanwhile (its requests cascade)
        raise not_found("workspace", param="id")
    if row["status"] == "failed":
        raise failed_sync_error(ctx, row, stripe_code="stripe_unavailable")
    counts = (row["result_json"] or {}) if row["status"] == "succeeded" else {}
    return IngestResult(
        ingest_id=rid,
        status="completed" if row["status"] == "succeeded" else row["status"],
        inserted=counts.get("inserted"),
        duplicates=counts.get("duplicates"),
        refresh_request_id=rid,
    )
