"""Stripe sync: its health (`GET /stripe-sync-status`), sync requests (`POST /stripe-sync`, and
`GET /stripe-sync/{job_id}` to follow one), and the Stripe webhook that asks for a prompt sync.

A sync is a pipeline request (`requests.store.request_sync`, docs/requests.md) that the requests
sensor (or, embedded, this process) runs as a `daily_refresh` Dagster run; `job_id` is its id.
"""

from __future__ import annotations

import statistics
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool

from finance_pipeline.api.auth import limit_anonymous
from finance_pipeline.api.errors import ApiError, not_found
from finance_pipeline.api.families import PLATFORM_FINANCE
from finance_pipeline.api.inline_runs import start_inline
from finance_pipeline.api.platform_finance.common import (
    Ctx,
    Ingester,
    Reader,
    RequestWorkspace,
    StripeAdmin,
    iso_z,
    job_status,
)
from finance_pipeline.api.platform_finance.dialect import Envelope
from finance_pipeline.api.platform_finance.models import (
    SyncJobData,
    SyncJobDetail,
    SyncRequestBody,
    SyncStatusData,
    WebhookReceipt,
    WebhookSecretBody,
    WebhookSecretData,
)
from finance_pipeline.api.scoping import workspace_by_id
from finance_pipeline.requests.store import PipelineRequestError, get_request, request_sync
from finance_pipeline.stripe_sync import webhooks
from finance_pipeline.tenancy import get_workspace
from finance_pipeline.warehouse.db import Warehouse

router = APIRouter()

# Without history, a sync is estimated at the seed's example: two minutes.
DEFAULT_SYNC_SECONDS = 120
ESTIMATE_FROM_LAST = 5
JobId = Annotated[str, Path(max_length=255, description="The sync request's id (sync_...)")]


def estimated_sync_seconds(wh: Warehouse, workspace_id: str) -> int:
    """Median request-to-finish time of the workspace's last successful syncs (queue wait and
    run), else DEFAULT_SYNC_SECONDS."""
    rows = wh.rows(
        "SELECT finished_at - created_at AS s FROM app.pipeline_requests WHERE workspace_id = :w"
        " AND kind = 'stripe_sync' AND status = 'succeeded' AND finished_at IS NOT NULL"
        " ORDER BY finished_at DESC LIMIT :n",
        w=workspace_id,
        n=ESTIMATE_FROM_LAST,
    )
    if not rows:
        return DEFAULT_SYNC_SECONDS
    return max(1, round(statistics.median(int(r["s"]) for r in rows)))


@router.get("/stripe-sync-status", response_model=Envelope[SyncStatusData])
def get_sync_status(ctx: Ctx, _: Reader, ws: RequestWorkspace) -> Envelope[SyncStatusData]:
    """Sync health (`healthy`, `delayed` 5+ minutes behind, `error` a stream failed), last
    complete sync, invoices synced, failed payments, and the webhooks still to sync."""
    data = webhooks.platform_sync_status(ctx.wh, ws.id)
    return Envelope[SyncStatusData](data=SyncStatusData(**data))


@router.post("/stripe-sync", status_code=202, response_model=Envelope[SyncJobData])
def post_sync(
    body: SyncRequestBody, ctx: Ctx, principal: Ingester, ws: RequestWorkspace
) -> Envelope[SyncJobData]:
    """Queue a Stripe sync of the workspace (owner, finance); 409 `stripe_not_connected` when it
    has no active Stripe connection. Follow it with `GET /stripe-sync/{job_id}`."""
    try:
        job_id = request_sync(ctx.wh, ws.id, reason=body.reason, requested_by=principal.key)
    except PipelineRequestError as exc:
        raise ApiError(409, "stripe_not_connected", str(exc), param=None) from exc
    start_inline(ctx, [job_id])
    return Envelope[SyncJobData](
        data=SyncJobData(
            job_id=job_id,
            status="processing",
            estimated_duration_seconds=estimated_sync_seconds(ctx.wh, ws.id),
        )
    )


@router.get("/stripe-sync/{job_id}", response_model=Envelope[SyncJobDetail])
def get_sync_job(job_id: JobId, ctx: Ctx, principal: Reader) -> Envelope[SyncJobDetail]:
    """One sync request: processing (queued or running), completed or failed (with `error`)."""
    row = get_request(ctx.wh, job_id)
    if row is None or row["kind"] != "stripe_sync":
        raise not_found("sync job", param="job_id")
    try:
        workspace_by_id(ctx, principal, row["workspace_id"], param="job_id")
    except ApiError as exc:
        raise not_found("sync job", param="job_id") from exc
    return Envelope[SyncJobDetail](
        data=SyncJobDetail(
            job_id=row["id"],
            status=job_status(row["status"]),  # type: ignore[arg-type]
            estimated_duration_seconds=estimated_sync_seconds(ctx.wh, row["workspace_id"]),
            reason=row["reason"],
            requested_at=iso_z(row["created_at"]) or "",
            started_at=iso_z(row["started_at"]),
            finished_at=iso_z(row["finished_at"]),
            run_id=row["run_id"],
            error=row["error"],
        )
    )


def _webhook_url(request: Request, workspace_id: str) -> str:
    return f"{str(request.base_url).rstrip('/')}{PLATFORM_FINANCE.prefix}/stripe/webhook/{workspace_id}"


@router.put("/stripe/webhook-secret", response_model=Envelope[WebhookSecretData])
def put_webhook_secret(
    body: WebhookSecretBody, request: Request, ctx: Ctx, _: StripeAdmin, ws: RequestWorkspace
) -> Envelope[WebhookSecretData]:
    """Store the workspace's Stripe webhook signing secret, encrypted (owner); answers the URL to
    give Stripe. 409 `stripe_not_connected` without a Stripe connection."""
    try:
        webhooks.set_webhook_secret(ctx.wh, ws.id, body.secret, ctx.settings)
    except webhooks.WebhookError as exc:
        status, param = (409, None) if exc.code == "stripe_not_connected" else (400, "secret")
        raise ApiError(status, exc.code, str(exc), param=param) from exc
    return Envelope[WebhookSecretData](
        data=WebhookSecretData(workspace_id=ws.id, webhook_url=_webhook_url(request, ws.id))
    )


@router.post(
    "/stripe/webhook/{workspace_id}",
    response_model=Envelope[WebhookReceipt],
    dependencies=[Depends(limit_anonymous)],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
        "security": [],
    },
)
async def post_webhook(
    workspace_id: Annotated[str, Path(max_length=255)], request: Request
) -> Envelope[WebhookReceipt]:
    """Stripe's webhook for one workspace: the `Stripe-Signature` is verified against the
    workspace's signing secret; a new event is stored and asks for a prompt sync, a redelivered
    one is a 200 no-op. 400 `invalid_signature` / `invalid_event`; 404 for a workspace without
    a webhook secret."""
    ctx = request.app.state.ctx
    payload = await request.body()
    signature = request.headers.get("stripe-signature")

    def receive() -> webhooks.Delivery:
        if get_workspace(ctx.wh, workspace_id) is None:
            raise not_found("webhook endpoint", param="workspace_id")
        try:
            delivery = webhooks.receive(
                ctx.wh, workspace_id, payload, signature, settings=ctx.settings
            )
        except webhooks.WebhookError as exc:
            if exc.code == "webhook_not_configured":
                raise not_found("webhook endpoint", param="workspace_id") from exc
            param = "Stripe-Signature" if exc.code == "invalid_signature" else None
            raise ApiError(400, exc.code, str(exc), param=param) from exc
        if not delivery.duplicate and delivery.request_id is not None:
            start_inline(ctx, [delivery.request_id])
        return delivery

    delivery = await run_in_threadpool(receive)
    return Envelope[WebhookReceipt](
        data=WebhookReceipt(
            event_id=delivery.event_id, duplicate=delivery.duplicate, job_id=delivery.request_id
        )
    )
