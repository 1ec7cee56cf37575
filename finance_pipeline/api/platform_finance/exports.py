"""Report exports: ask for one (`GET /reports/export` as the seed has it, or `POST` with a JSON
body), follow it (`GET /reports/export/{export_id}`), and download it through a signed link that
expires (`GET /reports/download/{token}`). The export sensor renders the request into the report
store (reports/exports.py); this module only records and reads requests."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import FileResponse

from finance_pipeline.api.auth import Principal, limit_anonymous
from finance_pipeline.api.context import ApiContext
from finance_pipeline.api.errors import ApiError, not_found
from finance_pipeline.api.families import PLATFORM_FINANCE
from finance_pipeline.api.platform_finance import links
from finance_pipeline.api.platform_finance.common import (
    Ctx,
    Exporter,
    Reader,
    RequestWorkspace,
    iso_z,
    job_status,
)
from finance_pipeline.api.platform_finance.dialect import Envelope
from finance_pipeline.api.platform_finance.models import (
    ExportBody,
    ExportData,
    ExportFormat,
    ReportType,
)
from finance_pipeline.api.scoping import workspace_by_id
from finance_pipeline.reports.exports import create_export, get_export
from finance_pipeline.reports.render import PLAN_FILTERED, ReportRequestError
from finance_pipeline.reports.store import ReportStoreError, resolve_inside
from finance_pipeline.tenancy import Workspace

router = APIRouter(prefix="/reports")

ExportId = Annotated[str, Path(max_length=255, description="The export's id (export_...)")]
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}


def _period(ws: Workspace, start: date | None, end: date | None) -> tuple[date, date]:
    """The days to export: `date_end` defaults to yesterday (the last complete day in the
    workspace's time zone), `date_start` to the first day of `date_end`'s month."""
    if end is None:
        end = datetime.now(ZoneInfo(ws.time_zone or "UTC")).date() - timedelta(days=1)
    if start is None:
        start = end.replace(day=1)
    if end < start:
        raise ApiError(
            400, "invalid_date_range", f"date_end {end} is before date_start {start}.", "date_end"
        )
    return start, end


def _create(ctx: ApiContext, principal: Principal, ws: Workspace, body: ExportBody) -> ExportData:
    start, end = _period(ws, body.date_start, body.date_end)
    if body.plan_id is not None and body.report_type not in PLAN_FILTERED:
        raise ApiError(
            400,
            "invalid_field",
            f"{body.report_type} cannot be filtered by plan; plan_id applies to "
            f"{', '.join(PLAN_FILTERED)}.",
            "plan_id",
        )
    try:
        export_id = create_export(
            ctx.wh,
            ws.id,
            body.report_type,
            body.format,
            start,
            end,
            body.plan_id,
            requested_by=principal.key,
        )
    except ReportRequestError as exc:
        raise ApiError(400, "invalid_request", f"{exc}.") from exc
    return ExportData(export_id=export_id, status="processing", download_url=None, expires_at=None)


@router.get("/export", response_model=Envelope[ExportData])
def get_export_request(
    ctx: Ctx,
    principal: Exporter,
    ws: RequestWorkspace,
    report_type: Annotated[ReportType, Query()],
    fmt: Annotated[ExportFormat, Query(alias="format")],
    date_start: Annotated[date | None, Query(description="First day (YYYY-MM-DD)")] = None,
    date_end: Annotated[date | None, Query(description="Last day, inclusive")] = None,
    plan_id: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
) -> Envelope[ExportData]:
    """Ask for a report export, as the seed does (a GET with query parameters; owner, finance).
    Every call queues a new export; prefer `POST` with an `Idempotency-Key` to retry safely."""
    body = ExportBody(
        report_type=report_type,
        format=fmt,
        date_start=date_start,
        date_end=date_end,
        plan_id=plan_id,
    )
    return Envelope[ExportData](data=_create(ctx, principal, ws, body))


@router.post("/export", status_code=202, response_model=Envelope[ExportData])
def post_export_request(
    body: ExportBody, ctx: Ctx, principal: Exporter, ws: RequestWorkspace
) -> Envelope[ExportData]:
    """Ask for a report export with a JSON body (owner, finance); 202 while it is processing."""
    return Envelope[ExportData](data=_create(ctx, principal, ws, body))


@router.get("/export/{export_id}", response_model=Envelope[ExportData])
def get_export_status(
    export_id: ExportId, request: Request, ctx: Ctx, principal: Reader
) -> Envelope[ExportData]:
    """An export's status; once completed, a signed download URL valid until `expires_at`
    (FP_API_EXPORT_LINK_TTL_SECONDS, 15 minutes by default; each call signs a fresh one)."""
    row = get_export(ctx.wh, export_id)
    if row is None:
        raise not_found("export", param="export_id")
    try:
        workspace_by_id(ctx, principal, row["workspace_id"], param="export_id")
    except ApiError as exc:
        raise not_found("export", param="export_id") from exc
    status = job_status(row["status"])
    url = expires = None
    if status == "completed":
        expires_at = int(time.time()) + ctx.settings.api_export_link_ttl_seconds
        token = links.sign(ctx.settings, export_id, expires_at)
        base = str(request.base_url).rstrip("/")
        url = f"{base}{PLATFORM_FINANCE.prefix}/reports/download/{token}"
        expires = iso_z(expires_at)
    return Envelope[ExportData](
        data=ExportData(
            export_id=export_id,
            status=status,  # type: ignore[arg-type]
            download_url=url,
            expires_at=expires,
            error=row["error"] if status == "failed" else None,
        )
    )


@router.get(
    "/download/{token}",
    response_class=FileResponse,
    dependencies=[Depends(limit_anonymous)],
    responses={
        200: {
            "description": "The report file",
            "content": {"text/csv": {}, "application/pdf": {}},
        }
    },
    openapi_extra={"security": []},
)
def download_export(
    token: Annotated[str, Path(max_length=512, description="From an export's download_url")],
    ctx: Ctx,
) -> FileResponse:
    """The exported file, for whoever holds an unexpired link (the link is the credential).
    403 `link_expired` or `invalid_link` (tampered); 404 when the file is gone."""
    try:
        export_id = links.verify(ctx.settings, token)
    except links.LinkError as exc:
        raise ApiError(403, exc.code, str(exc), param="token") from exc
    row = get_export(ctx.wh, export_id)
    if row is None or row["status"] != "completed" or not row["path"]:
        raise not_found("export file", param="token")
    try:
        path = resolve_inside(ctx.settings.resolved_reports_dir, row["path"])
    except ReportStoreError as exc:
        raise not_found("export file", param="token") from exc
    if not path.is_file():
        raise not_found("export file", param="token")
    return FileResponse(
        path,
        media_type=MEDIA_TYPES.get(row["format"], "application/octet-stream"),
        filename=path.name,
    )
