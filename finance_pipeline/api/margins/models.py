"""Request and response shapes of the 003 margins API: `{"data": ...}`, camelCase, integer
microdollars (`*Microdollars`, and `revenue` / `cost` in the detail's series), percents as exact
decimal numbers (`42.50`), instants as ISO 8601 UTC with milliseconds (`...000Z`)."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_serializer

from finance_pipeline.api.exact import ExactNumber

T = TypeVar("T")
# Non-empty, no leading or trailing whitespace (what margins.mappings accepts).
_TRIMMED = r"^\S(.*\S)?$"
# A Stripe restricted key (or a full test key, refused in production by the route).
STRIPE_KEY_PATTERN = r"^(rk_live_|rk_test_|sk_test_)[A-Za-z0-9_]{4,200}$"


class Envelope(BaseModel, Generic[T]):
    """Every margins API response: the payload under `data`."""

    data: T


class MarginsSummary(BaseModel):
    """The month's totals over the margin table (mart.customer_margins_summary_monthly)."""

    blendedMarginPercent: ExactNumber | None
    totalRevenueMicrodollars: int
    totalCostMicrodollars: int
    criticalCount: int
    atRiskCount: int
    lastSyncAt: str | None
    syncStatus: str | None
    skippedCurrencies: dict[str, int]
    untaggedCostMicrodollars: int = 0
    unmappedCostMicrodollars: int = 0


class SparkPoint(BaseModel):
    """One month's margin percent; the last point may be a projection (`projected: true`)."""

    period: str
    marginPercent: ExactNumber | None
    projected: bool | None = None

    @model_serializer(mode="wrap")
    def _omit_unprojected(self, handler: Any) -> dict[str, Any]:
        # The margins API writes `projected` only on the projected point.
        out = handler(self)
        if not out.get("projected"):
            out.pop("projected", None)
        return out


class MarginCustomer(BaseModel):
    """One customer's margin in the month (mart.customer_margins_monthly.row_json)."""

    stripeCustomerId: str
    customerName: str | None
    avatarUrl: str | None
    tagValue: str | None
    tagValues: list[str] = []
    revenueMicrodollars: int
    costMicrodollars: int
    marginMicrodollars: int
    marginPercent: ExactNumber | None
    healthTier: str
    sparkline: list[SparkPoint]
    projectedTierWorsening: bool
    budgetSuggestionMicrodollars: int | None


class MarginsData(BaseModel):
    """GET /api/margins."""

    summary: MarginsSummary
    customers: list[MarginCustomer]


class PeriodAmounts(BaseModel):
    """A month of one customer: revenue and attributed cost, microdollars."""

    period: str
    revenue: int
    cost: int


class ModelCost(BaseModel):
    """Attributed cost and requests of one model in the month."""

    model: str
    cost: int
    requestCount: int


class CustomerMargin(BaseModel):
    """GET /api/margins/{customer}."""

    stripeCustomerId: str
    customerName: str | None
    avatarUrl: str | None
    tagValue: str
    healthTier: str | None
    marginPercent: ExactNumber | None
    revenueMicrodollars: int
    costMicrodollars: int
    marginMicrodollars: int
    revenueOverTime: list[PeriodAmounts]
    modelBreakdown: list[ModelCost]


class UnmatchedCustomer(BaseModel):
    """A Stripe customer no decided mapping ties to a cost tag."""

    stripeCustomerId: str
    customerName: str | None
    customerEmail: str | None
    totalRevenueMicrodollars: int


class UnmappedTag(BaseModel):
    """A cost tag value no decided mapping ties to a Stripe customer."""

    tagValue: str
    totalCostMicrodollars: int
    requestCount: int


class PendingAutoMatch(BaseModel):
    """An auto-match proposal waiting for a person's decision."""

    id: str
    stripeCustomerId: str
    customerName: str | None
    tagValue: str
    confidence: float
    matchReason: str | None = None


class UnmatchedData(BaseModel):
    """GET /api/margins/unmatched."""

    unmatchedStripeCustomers: list[UnmatchedCustomer]
    unmappedTagValues: list[UnmappedTag]
    pendingAutoMatches: list[PendingAutoMatch]
    customerNames: dict[str, str]


class CustomerMappingOut(BaseModel):
    """A stored customer <-> cost tag mapping (rejected proposals listed with status rejected)."""

    id: str
    stripeCustomerId: str
    customerName: str | None
    tagKey: str
    tagValue: str
    matchType: Literal["manual", "auto"]
    status: Literal["pending", "accepted", "rejected"]
    confidence: float | None
    matchReason: str | None
    createdAt: str | None
    decidedAt: str | None


class CustomerMappingIn(BaseModel):
    """POST /api/customer-mappings: upsert on (workspace, stripeCustomerId, tagKey)."""

    model_config = ConfigDict(extra="forbid")

    stripeCustomerId: str = Field(max_length=255, pattern=_TRIMMED, examples=["cus_abc123"])
    tagValue: str = Field(max_length=500, pattern=_TRIMMED, examples=["acme-corp"])
    tagKey: str = Field(default="customer", max_length=255, pattern=_TRIMMED)
    matchType: Literal["manual", "auto"] = "manual"


class Deleted(BaseModel):
    """A deletion done."""

    deleted: bool


class StripeConnectIn(BaseModel):
    """POST /api/stripe/connect."""

    model_config = ConfigDict(extra="forbid")

    stripeKey: str = Field(max_length=255, pattern=STRIPE_KEY_PATTERN, examples=["rk_live_..."])


class StripeConnectionOut(BaseModel):
    """The stored connection: its id (the workspace's: one connection per workspace), the masked
    key, status and when it was made."""

    id: str
    keyPrefix: str
    status: str
    createdAt: str


class CronSyncOut(BaseModel):
    """The scheduler's revenue sync: sync requests queued, and workspaces that could not be."""

    synced: int
    errors: int


class ManualSyncOut(BaseModel):
    """A member's revenue sync: its request and, once it succeeded, the margins API's counters
    (docs/requests.md); null while it is still queued or running (poll the request)."""

    orgId: str
    workspaceId: str
    requestId: str
    status: str
    customersProcessed: int | None = None
    periodsUpdated: int | None = None
    autoMatchesCreated: int | None = None
    invoicesFetched: int | None = None
    invoicesSkipped: int | None = None
    skippedCurrencies: dict[str, int] | None = None
    durationMs: int | None = None
