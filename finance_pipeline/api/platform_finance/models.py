"""Bodies of the 000 platform finance API. Money is dollars (the reporting currency's major unit)
with two decimals and percentages with two decimals, both exact JSON numbers (`api.exact`);
instants are ISO 8601 UTC with `Z`, as the seed shows them."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from finance_pipeline.api.exact import ExactNumber

# Not blank: at least one non-space character (spelt out, see api/v1/models.py).
Reason = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=r"[^ \t\r\n]")]
ReportType = Literal["mrr_breakdown", "invoice_summary", "revenue_trend", "failed_payments"]
ExportFormat = Literal["csv", "pdf"]
JobStatus = Literal["processing", "completed", "failed"]


class MrrData(BaseModel):
    """`GET /mrr`: MRR on the latest materialized day D (docs/metrics.md §4, §6)."""

    current_mrr: ExactNumber | None = Field(description="MRR(D) in dollars, 2 decimals")
    mrr_growth_percent: ExactNumber | None = Field(description="MRR(D) vs MRR(D-30), percent")
    active_subscriptions: int | None = Field(description="Subscriptions counting on D")
    churn_rate_percent: ExactNumber | None = Field(
        description="Cohort logo churn of the 30 days ending D (docs/metrics.md §6), percent"
    )
    as_of: str | None = Field(
        description="The last instant of D, UTC", examples=["2025-12-04T23:59:59Z"]
    )


class TrendMonth(BaseModel):
    """One month of `GET /mrr-trend`: balances on its last day (D for the current month)."""

    month: str = Field(examples=["2025-01"])
    mrr: ExactNumber | None
    subscriptions: int | None
    growth_percent: ExactNumber | None


class TrendData(BaseModel):
    """`GET /mrr-trend`: oldest month first, ending with D's month."""

    months: list[TrendMonth]


class WebhookEvent(BaseModel):
    """The latest Stripe event: id, type and when Stripe created it."""

    id: str = Field(examples=["evt_abc123"])
    type: str = Field(examples=["invoice.paid"])
    timestamp: str = Field(examples=["2025-12-04T12:05:00Z"])


class SyncStatusData(BaseModel):
    """`GET /stripe-sync-status`."""

    last_sync: str | None
    sync_health: Literal["healthy", "delayed", "error"]
    invoices_synced: int
    failed_payments: int
    pending_webhooks: int
    last_webhook_event: WebhookEvent | None


class SyncRequestBody(BaseModel):
    """`POST /stripe-sync`: why the sync is asked for."""

    model_config = ConfigDict(extra="forbid")

    reason: Reason = Field(examples=["Manual reconciliation for month-end close"])


class SyncJobData(BaseModel):
    """`POST /stripe-sync`: the sync request (job) just queued."""

    job_id: str = Field(examples=["sync_3f9a..."])
    status: JobStatus
    estimated_duration_seconds: int


class SyncJobDetail(SyncJobData):
    """`GET /stripe-sync/{job_id}`: the request's progress and outcome."""

    reason: str
    requested_at: str
    started_at: str | None
    finished_at: str | None
    run_id: str | None = Field(description="The Dagster run serving the request, once it exists")
    error: str | None


class ExportBody(BaseModel):
    """`POST /reports/export`: the same fields as the seed's query parameters."""

    model_config = ConfigDict(extra="forbid")

    report_type: ReportType
    format: ExportFormat
    date_start: date | None = None
    date_end: date | None = None
    plan_id: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None


class ExportData(BaseModel):
    """An export request; `download_url` (signed, expiring at `expires_at`) once completed."""

    export_id: str = Field(examples=["export_3f9a..."])
    status: JobStatus
    download_url: str | None
    expires_at: str | None
    error: str | None = Field(default=None, description="Why it failed (status failed)")


class WebhookSecretBody(BaseModel):
    """`PUT /stripe/webhook-secret`: the endpoint's signing secret from Stripe's dashboard."""

    model_config = ConfigDict(extra="forbid")

    secret: Annotated[str, StringConstraints(min_length=16, max_length=255, pattern=r"^whsec_")]


class WebhookSecretData(BaseModel):
    """Where Stripe must send this workspace's events."""

    workspace_id: str
    webhook_url: str


class WebhookReceipt(BaseModel):
    """`POST /stripe/webhook/{workspace_id}`: the event recorded (or already recorded)."""

    received: Literal[True] = True
    event_id: str
    duplicate: bool = Field(description="A redelivery of an event already recorded (no-op)")
    job_id: str | None = Field(description="The Stripe sync request the event asked for")
