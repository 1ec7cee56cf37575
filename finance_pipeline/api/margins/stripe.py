"""`/api/stripe`: connect a restricted key (validated with one customers list call first),
disconnect (the workspace's Stripe data, mappings and margins go with it) and revenue sync (a
Stripe-sync request the pipeline runs; by a member, or by the scheduler with the cron secret)."""

from __future__ import annotations

import hmac
import logging
import re
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials

from finance_pipeline.api.auth import (
    Principal,
    authenticate,
    bearer_scheme,
    enforce_rate_limit,
)
from finance_pipeline.api.context import ApiContext, api_context
from finance_pipeline.api.errors import ApiError, not_found
from finance_pipeline.api.inline_runs import start_inline
from finance_pipeline.api.margins.gate import check_tier, gated
from finance_pipeline.api.margins.margins import iso_ms
from finance_pipeline.api.margins.models import (
    STRIPE_KEY_PATTERN,
    CronSyncOut,
    Deleted,
    Envelope,
    ManualSyncOut,
    StripeConnectIn,
    StripeConnectionOut,
)
from finance_pipeline.api.scoping import WORKSPACE_HEADER, request_workspace, resolve_workspace
from finance_pipeline.api.v1.freshness import failed_sync_error, wait_for_refresh
from finance_pipeline.lib.access import Permission, allows
from finance_pipeline.lib.backoff import BackoffPolicy
from finance_pipeline.requests.store import (
    PipelineRequestError,
    get_request,
    pending_requests,
    request_sync,
)
from finance_pipeline.tenancy import PAID_TIERS, Workspace, connect_stripe, disconnect_stripe

log = logging.getLogger(__name__)
router = APIRouter(prefix="/stripe")

Ctx = Annotated[ApiContext, Depends(api_context)]
Ws = Annotated[Workspace, Depends(request_workspace)]
Owner = Annotated[Principal, Depends(gated(Permission.STRIPE_CONNECT))]
_KEY = re.compile(STRIPE_KEY_PATTERN)


def _check_key_format(key: str) -> None:
    """Restricted keys only; a full test key is allowed outside production (the margins API)."""
    from finance_pipeline.deployment import deployment

    m = _KEY.match(key)
    if m is None or (m.group(1) == "sk_test_" and deployment() == "production"):
        allowed = "rk_" if deployment() == "production" else "rk_ (or sk_test_)"
        raise ApiError(
            400,
            "validation_error",
            f"stripeKey must be a Stripe restricted key starting with {allowed}.",
            param="stripeKey",
        )


def _validate_with_stripe(ctx: ApiContext, key: str, ws_id: str) -> str:
    """List one customer with the key (the margins API's check) and return the account id."""
    from finance_pipeline.stripe_sync.gateway import StripeGateway, StripePermissionDenied

    gateway = StripeGateway(
        key,
        api_base=ctx.settings.stripe_api_base,
        api_version=ctx.settings.stripe_api_version,
        backoff=BackoffPolicy(max_attempts=2, base_seconds=0.2, max_seconds=1.0),
        workspace_id=ws_id,
        timeout_seconds=ctx.settings.stripe_timeout_seconds,
    )
    try:
        gateway.list_page("customers", {"limit": 1})
    except Exception as exc:  # any refusal or failure: the key is not stored
        raise ApiError(
            400,
            "stripe_validation_failed",
            f"Stripe did not accept the key {gateway.key_hint} for listing customers: "
            f"{type(exc).__name__}.",
            param="stripeKey",
        ) from None
    try:
        return str(gateway.account()["id"])
    except StripePermissionDenied:
        # A restricted key may not read its account; the connection still works for syncing.
        return "unknown"
    except Exception:
        return "unknown"


@router.post("/connect", status_code=201, response_model=Envelope[StripeConnectionOut])
def connect(
    body: StripeConnectIn, ctx: Ctx, principal: Owner, ws: Ws
) -> Envelope[StripeConnectionOut]:
    """Store the workspace's Stripe key (encrypted) once Stripe accepts it; 409 if connected."""
    key = body.stripeKey
    _check_key_format(key)
    if ctx.wh.rows("SELECT 1 FROM app.stripe_connections WHERE workspace_id = :w", w=ws.id):
        raise ApiError(409, "conflict", "Stripe is already connected: disconnect first.")
    account = _validate_with_stripe(ctx, key, ws.id)
    connect_stripe(
        ctx.wh,
        ws.id,
        account_id=account,
        livemode="_live_" in key,
        api_key=key,
        api_base=ctx.settings.stripe_api_base,
        settings=ctx.settings,
    )
    row = ctx.wh.rows("SELECT * FROM app.stripe_connections WHERE workspace_id = :w", w=ws.id)[0]
    return Envelope[StripeConnectionOut](
        data=StripeConnectionOut(
            id=ws.id,
            keyPrefix=row["key_hint"],
            status=row["status"],
            createdAt=iso_ms(row["created_at"]) or "",
        )
    )


@router.delete("/disconnect", response_model=Envelope[Deleted])
def disconnect(ctx: Ctx, principal: Owner, ws: Ws) -> Envelope[Deleted]:
    """Remove the connection and cascade: the workspace's Stripe data, mappings and margins."""
    if not disconnect_stripe(ctx.wh, ws.id):
        raise not_found("Stripe connection")
    return Envelope[Deleted](data=Deleted(deleted=True))


# --- revenue sync --------------------------------------------------------------------------------


def _queue_sync(ctx: ApiContext, ws_id: str, reason: str, by: str) -> str:
    """A queued Stripe sync of the workspace: the one already waiting, else a new request."""
    for r in pending_requests(ctx.wh, ws_id):
        if r["kind"] == "stripe_sync" and r["status"] == "queued":
            return str(r["id"])
    return request_sync(ctx.wh, ws_id, reason=reason, requested_by=by)


def _cron_secret_matches(ctx: ApiContext, token: str) -> bool:
    secret = ctx.settings.cron_secret
    if secret is None or not token:
        return False
    return hmac.compare_digest(token.encode(), secret.get_secret_value().encode())


def _cron_sync(ctx: ApiContext) -> CronSyncOut:
    """A sync request for every active connection of a paid-tier organization."""
    rows = ctx.wh.rows(
        "SELECT c.workspace_id, o.tier FROM app.stripe_connections c"
        " JOIN app.workspaces w ON w.id = c.workspace_id"
        " JOIN app.organizations o ON o.id = w.org_id"
        " WHERE c.status = 'active' ORDER BY c.workspace_id"
    )
    ids: list[str] = []
    errors = 0
    for r in rows:
        if r["tier"] not in PAID_TIERS:
            continue
        try:
            ids.append(_queue_sync(ctx, r["workspace_id"], "revenue sync (cron)", "cron"))
        except PipelineRequestError:
            errors += 1
    start_inline(ctx, ids)
    return CronSyncOut(synced=len(ids), errors=errors)


@router.get(
    "/revenue-sync",
    response_model=Envelope[ManualSyncOut] | Envelope[CronSyncOut],
)
def revenue_sync(
    request: Request,
    ctx: Ctx,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    x_workspace_id: Annotated[
        str | None,
        Header(
            alias=WORKSPACE_HEADER,
            max_length=255,
            description="Workspace of an org-scoped request (docs/api.md)",
        ),
    ] = None,
) -> Envelope[ManualSyncOut] | Envelope[CronSyncOut]:
    """Sync Stripe revenue: with `Bearer <FP_CRON_SECRET>`, queue a sync of every paid-tier workspace
    with Stripe connected (the scheduler; no wait); else sync the caller's workspace (any member)
    and answer its counters, or its pending request when it outlasts the read wait."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and _cron_secret_matches(ctx, token.strip()):
        enforce_rate_limit(request, "cron")
        return Envelope[CronSyncOut](data=_cron_sync(ctx))
    principal = authenticate(request)
    if not allows(principal.role, Permission.READ):
        raise ApiError(403, "forbidden", f"The {principal.role.value} role cannot sync.")
    check_tier(request, principal.org_id)
    ws = resolve_workspace(ctx, principal, x_workspace_id)
    by = f"{principal.kind}:{principal.id}"
    try:
        request_id = _queue_sync(ctx, ws.id, "revenue sync (margins API)", by)
    except PipelineRequestError as err:
        raise ApiError(
            409, "conflict", f"Nothing to sync: {err}. Connect Stripe first.", param=None
        ) from None
    start_inline(ctx, [request_id])
    # The seed answers once the sync is done: wait like the reads do (FP_API_READ_WAIT_SECONDS),
    # then answer what the request is; still pending, the client polls the request.
    wait_for_refresh(ctx, ws.id, request_ids=[request_id])
    row = get_request(ctx.wh, request_id)
    if row is None:  # the workspace was deleted meanwhile (its requests cascade)
        raise not_found("workspace", param=WORKSPACE_HEADER)
    if row["status"] == "failed":
        raise failed_sync_error(ctx, row, stripe_code="stripe_sync_failed")
    stored = (row["result_json"] or {}) if row["status"] == "succeeded" else {}
    counters = {k: v for k, v in stored.items() if k in ManualSyncOut.model_fields}
    return Envelope[ManualSyncOut](
        data=ManualSyncOut(
            orgId=principal.org_id,
            workspaceId=ws.id,
            requestId=request_id,
            status=row["status"],
            **counters,
        )
    )
