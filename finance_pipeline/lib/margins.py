"""Customer margins per month (metrics.md §11, seeds/003 shapes and names).

Revenue is recognized revenue per (stripe customer, "YYYY-MM") in reporting micro-units (§8, see
recognition.recognized_by_customer_month). Costs are records tagged with a cost tag value; a tag
resolves to a Stripe customer through mappings (manual wins over accepted auto matches; pending
auto matches do not count until accepted). Untagged and unmapped costs are reported separately and
never spread over customers.

Decisions:
- Tiers are decided on the exact margin percent (49.999 % is at_risk even though it prints 50.00).
- Negative revenue (a month of refunds) is `critical` with a null margin percent.
- The projection is clamped at 100 % (costs are never negative, so a margin cannot exceed it).
- Auto-match confidence: tag == Stripe id 1.0; tag == customer email (case-insensitive) 0.9;
  normalized name equality 0.8, where normalizing keeps only lower-cased letters and digits
  ("Acme Corp" ~ "acme-corp").
"""

from __future__ import annotations

import csv
import io
import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from finance_pipeline.lib.money import micros_to_decimal, percent, round_half_away

TIER_ORDER = {"healthy": 0, "at_risk": 1, "critical": 2}
_PERIOD_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_AUTO_MATCH_NS = uuid.UUID("6f0c8f1e-5a37-4d7e-9a51-3c1b1f9e2a10")


@dataclass(frozen=True, slots=True)
class MarginThresholds:
    """Health tier lower bounds in percent (inclusive): healthy >= 50, at_risk >= 20, else critical.

    Values are percent (50 means 50 %).
    """

    healthy_min_pct: int | Fraction = 50
    at_risk_min_pct: int | Fraction = 20


DEFAULT_THRESHOLDS = MarginThresholds()


@dataclass(frozen=True, slots=True)
class StripeCustomer:
    """A Stripe customer as shown in margin tables."""

    id: str
    name: str | None = None
    email: str | None = None
    avatar_url: str | None = None


@dataclass(frozen=True, slots=True)
class CostRecord:
    """A cost attributed (or not) to a tag value in a month: usage cost events or tagged costs."""

    tag_value: str | None
    period: str
    cost_micros: int
    model: str | None = None
    request_count: int = 0


@dataclass(frozen=True, slots=True)
class CustomerMapping:
    """A stored customer <-> tag mapping: match_type manual|auto, status accepted|pending."""

    stripe_customer_id: str
    tag_value: str
    match_type: str = "manual"
    status: str = "accepted"
    id: str | None = None
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class AutoMatchProposal:
    """A proposed (pending) auto match of a cost tag to a Stripe customer, with its confidence."""

    id: str
    stripe_customer_id: str
    customer_name: str | None
    tag_value: str
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        """The seeds/003 pendingAutoMatches item."""
        return {
            "id": self.id,
            "stripeCustomerId": self.stripe_customer_id,
            "customerName": self.customer_name,
            "tagValue": self.tag_value,
            "confidence": self.confidence,
        }


@dataclass(frozen=True, slots=True)
class TierChange:
    """A customer's health tier moving between two margin snapshots (feeds margin alerts, §14)."""

    stripe_customer_id: str
    customer_name: str | None
    tag_value: str | None
    period: str
    from_tier: str | None
    to_tier: str
    margin_percent: Decimal | None


def validate_period(period: str) -> str:
    """A "YYYY-MM" month; raises ValueError (400 validation_error) otherwise."""
    if not isinstance(period, str) or not _PERIOD_RE.match(period):
        raise ValueError(f"period must be a calendar month in YYYY-MM format, got {period!r}")
    return period


def shift_month(period: str, months: int) -> str:
    """The month `months` after (negative: before) a "YYYY-MM" month."""
    y, m = int(period[:4]), int(period[5:7])
    idx = y * 12 + (m - 1) + months
    return f"{idx // 12:04d}-{idx % 12 + 1:02d}"


def margin_percent_exact(revenue: int, cost: int) -> Fraction | None:
    """Exact margin / revenue x 100, or None when revenue <= 0."""
    if revenue <= 0:
        return None
    return Fraction((revenue - cost) * 100, revenue)


def tier_for_percent(pct: Fraction | Decimal | int, thresholds: MarginThresholds) -> str:
    """Health tier of a margin percent; lower bounds inclusive."""
    value = Fraction(pct)
    if value >= Fraction(thresholds.healthy_min_pct):
        return "healthy"
    if value >= Fraction(thresholds.at_risk_min_pct):
        return "at_risk"
    return "critical"


def health_tier(
    revenue: int, cost: int, thresholds: MarginThresholds = DEFAULT_THRESHOLDS
) -> str | None:
    """Tier of a customer-month; None when there is no row (no revenue and no cost)."""
    if revenue > 0:
        return tier_for_percent(margin_percent_exact(revenue, cost) or 0, thresholds)
    if revenue < 0 or cost > 0:
        return "critical"
    return None


def budget_suggestion(
    revenue: int, cost: int, thresholds: MarginThresholds = DEFAULT_THRESHOLDS
) -> int | None:
    """Monthly cost (micros) at which the customer is exactly at the healthy threshold.

    revenue x (1 - healthy_min_pct/100), floored to a whole micro so that spending it is still
    healthy; None when already healthy (or no row), 0 without revenue.
    """
    tier = health_tier(revenue, cost, thresholds)
    if tier is None or tier == "healthy":
        return None
    if revenue <= 0:
        return 0
    return math.floor(revenue * (1 - Fraction(thresholds.healthy_min_pct) / 100))


def linear_projection(points: Sequence[tuple[int, Fraction]], at: int) -> Fraction | None:
    """Exact least-squares line through (x, y) points evaluated at x = `at` (flat for one point)."""
    if not points:
        return None
    if len(points) == 1:
        return Fraction(points[0][1])
    n = len(points)
    mean_x = Fraction(sum(x for x, _ in points), n)
    mean_y = sum((Fraction(y) for _, y in points), Fraction(0)) / n
    sxx = sum(((x - mean_x) ** 2 for x, _ in points), Fraction(0))
    sxy = sum(((x - mean_x) * (Fraction(y) - mean_y) for x, y in points), Fraction(0))
    slope = sxy / sxx if sxx else Fraction(0)
    return mean_y + slope * (at - mean_x)


def normalize_name(value: str | None) -> str:
    """Lower-cased letters and digits only, for name/tag matching ("Acme Corp" -> "acmecorp")."""
    return re.sub(r"[^0-9a-z]", "", (value or "").lower())


def resolve_tags(mappings: Iterable[CustomerMapping]) -> dict[str, str]:
    """tag value -> Stripe customer id in force: manual first, then accepted auto; pending ignored.

    Several mappings of one tag at the same precedence resolve to the smallest customer id, so the
    result never depends on input order (a tag's cost is never counted twice).
    """
    manual: dict[str, str] = {}
    auto: dict[str, str] = {}
    for m in mappings:
        if m.match_type == "manual":
            target = manual
        elif m.match_type == "auto" and m.status == "accepted":
            target = auto
        else:
            continue
        prev = target.get(m.tag_value)
        if prev is None or m.stripe_customer_id < prev:
            target[m.tag_value] = m.stripe_customer_id
    return {**auto, **manual}


def propose_auto_matches(
    customers: Iterable[StripeCustomer],
    tag_values: Iterable[str],
    mappings: Iterable[CustomerMapping] = (),
) -> list[AutoMatchProposal]:
    """Pending auto-match proposals for tags that have no mapping at all (best confidence per tag).

    When several customers tie at a tag's best confidence, all are proposed (a person chooses).
    Proposal ids are deterministic UUIDs of (customer, tag), so re-proposing is idempotent.
    """
    mapped = {m.tag_value for m in mappings}
    custs = sorted(customers, key=lambda c: c.id)
    proposals: list[AutoMatchProposal] = []
    for tag in sorted({t for t in tag_values if t and t not in mapped}):
        scored: list[tuple[float, StripeCustomer]] = []
        for c in custs:
            if c.id == tag:
                score = 1.0
            elif c.email and c.email.strip().lower() == tag.strip().lower():
                score = 0.9
            elif normalize_name(c.name) and normalize_name(c.name) == normalize_name(tag):
                score = 0.8
            else:
                continue
            scored.append((score, c))
        if not scored:
            continue
        best = max(s for s, _ in scored)
        for s, c in scored:
            if s == best:
                pid = str(uuid.uuid5(_AUTO_MATCH_NS, f"{c.id}\x1f{tag}"))
                proposals.append(AutoMatchProposal(pid, c.id, c.name, tag, s))
    return proposals


@dataclass(slots=True)
class _Attributed:
    by_customer: dict[tuple[str, str], int]
    untagged: dict[str, int]
    unmapped: dict[str, dict[str, int]]  # tag -> period -> cost micros
    unmapped_requests: dict[str, int]
    tags_of: dict[str, list[str]]
    tag_to_customer: dict[str, str]


def _attribute(costs: Iterable[CostRecord], mappings: Iterable[CustomerMapping]) -> _Attributed:
    tag_to_customer = resolve_tags(mappings)
    tags_of: dict[str, list[str]] = {}
    for tag, cust in sorted(tag_to_customer.items()):
        tags_of.setdefault(cust, []).append(tag)
    by_customer: dict[tuple[str, str], int] = {}
    untagged: dict[str, int] = {}
    unmapped: dict[str, dict[str, int]] = {}
    unmapped_requests: dict[str, int] = {}
    for c in costs:
        if not c.tag_value:
            untagged[c.period] = untagged.get(c.period, 0) + c.cost_micros
            continue
        cust = tag_to_customer.get(c.tag_value)
        if cust is None:
            u = unmapped.setdefault(c.tag_value, {})
            u[c.period] = u.get(c.period, 0) + c.cost_micros
            unmapped_requests[c.tag_value] = unmapped_requests.get(c.tag_value, 0) + c.request_count
            continue
        key = (cust, c.period)
        by_customer[key] = by_customer.get(key, 0) + c.cost_micros
    return _Attributed(by_customer, untagged, unmapped, unmapped_requests, tags_of, tag_to_customer)


def _pct_out(pct: Fraction | None) -> Decimal | None:
    return None if pct is None else Decimal(round_half_away(pct * 100)).scaleb(-2)


def _iso(ts: datetime | str | None) -> str | None:
    if ts is None or isinstance(ts, str):
        return ts
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _customer_row(
    cust: str,
    period: str,
    revenue: Mapping[tuple[str, str], int],
    att: _Attributed,
    names: Mapping[str, StripeCustomer],
    thresholds: MarginThresholds,
) -> dict[str, Any]:
    rev = revenue.get((cust, period), 0)
    cost = att.by_customer.get((cust, period), 0)
    tier = health_tier(rev, cost, thresholds)

    def pct_of(month: str) -> Fraction | None:
        return margin_percent_exact(
            revenue.get((cust, month), 0), att.by_customer.get((cust, month), 0)
        )

    history = [(offset, pct_of(shift_month(period, offset))) for offset in range(-5, 1)]
    projected = linear_projection([(x, y) for x, y in history if y is not None], 1)
    if projected is not None:
        projected = min(projected, Fraction(100))
    sparkline: list[dict[str, Any]] = [
        {"period": shift_month(period, x), "marginPercent": _pct_out(y)} for x, y in history[-3:]
    ]
    worsening = False
    if projected is not None:
        sparkline.append(
            {
                "period": shift_month(period, 1),
                "marginPercent": _pct_out(projected),
                "projected": True,
            }
        )
        worsening = (
            TIER_ORDER[tier_for_percent(projected, thresholds)] > TIER_ORDER[tier or "healthy"]
        )
    info = names.get(cust)
    tags = att.tags_of.get(cust, [])
    return {
        "stripeCustomerId": cust,
        "customerName": info.name if info else None,
        "avatarUrl": info.avatar_url if info else None,
        "tagValue": tags[0] if tags else None,
        "tagValues": tags,
        "revenueMicrodollars": rev,
        "costMicrodollars": cost,
        "marginMicrodollars": rev - cost,
        "marginPercent": percent(rev - cost, rev) if rev > 0 else None,
        "healthTier": tier,
        "sparkline": sparkline,
        "projectedTierWorsening": worsening,
        "budgetSuggestionMicrodollars": budget_suggestion(rev, cost, thresholds),
    }


def margin_table(
    period: str,
    revenue: Mapping[tuple[str, str], int],
    costs: Iterable[CostRecord],
    customers: Iterable[StripeCustomer] = (),
    mappings: Iterable[CustomerMapping] = (),
    thresholds: MarginThresholds = DEFAULT_THRESHOLDS,
    *,
    last_sync_at: datetime | str | None = None,
    sync_status: str | None = None,
    skipped_currencies: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The seeds/003 GET /api/margins `data` object for month `period` ("YYYY-MM").

    `revenue` maps (stripe_customer_id, "YYYY-MM") -> recognized micros and should include the 5
    months before `period` for the sparkline projection. Rows: every customer with revenue or
    attributed cost in the month (unmatched customers have tagValue null), sorted by revenue desc.
    """
    validate_period(period)
    att = _attribute(costs, mappings)
    names = {c.id: c for c in customers}
    ids = {c for c, m in revenue if m == period and revenue[(c, m)] != 0}
    ids |= {c for c, m in att.by_customer if m == period and att.by_customer[(c, m)] != 0}
    rows = [_customer_row(c, period, revenue, att, names, thresholds) for c in ids]
    rows = [r for r in rows if r["healthTier"] is not None]
    rows.sort(key=lambda r: (-r["revenueMicrodollars"], r["stripeCustomerId"]))
    total_rev = sum(r["revenueMicrodollars"] for r in rows)
    total_cost = sum(r["costMicrodollars"] for r in rows)
    summary = {
        "blendedMarginPercent": percent(total_rev - total_cost, total_rev)
        if total_rev > 0
        else None,
        "totalRevenueMicrodollars": total_rev,
        "totalCostMicrodollars": total_cost,
        "criticalCount": sum(r["healthTier"] == "critical" for r in rows),
        "atRiskCount": sum(r["healthTier"] == "at_risk" for r in rows),
        "lastSyncAt": _iso(last_sync_at),
        "syncStatus": sync_status,
        "skippedCurrencies": dict(sorted((skipped_currencies or {}).items())),
        "untaggedCostMicrodollars": att.untagged.get(period, 0),
        "unmappedCostMicrodollars": sum(u.get(period, 0) for u in att.unmapped.values()),
    }
    return {"period": period, "summary": summary, "customers": rows}


def customer_detail(
    tag_value: str,
    period: str,
    revenue: Mapping[tuple[str, str], int],
    costs: Iterable[CostRecord],
    customers: Iterable[StripeCustomer] = (),
    mappings: Iterable[CustomerMapping] = (),
    thresholds: MarginThresholds = DEFAULT_THRESHOLDS,
    months: int = 3,
) -> dict[str, Any] | None:
    """The seeds/003 GET /api/margins/:customer `data`; None (a 404) if the tag is not mapped."""
    validate_period(period)
    costs = list(costs)
    att = _attribute(costs, mappings)
    cust = att.tag_to_customer.get(tag_value)
    if cust is None:
        return None
    info = {c.id: c for c in customers}.get(cust)
    rev = revenue.get((cust, period), 0)
    cost = att.by_customer.get((cust, period), 0)
    tags = set(att.tags_of.get(cust, []))
    models: dict[str, list[int]] = {}
    for c in costs:
        if c.tag_value in tags and c.period == period:
            acc = models.setdefault(c.model or "unknown", [0, 0])
            acc[0] += c.cost_micros
            acc[1] += c.request_count
    return {
        "stripeCustomerId": cust,
        "customerName": info.name if info else None,
        "avatarUrl": info.avatar_url if info else None,
        "tagValue": tag_value,
        "healthTier": health_tier(rev, cost, thresholds),
        "marginPercent": percent(rev - cost, rev) if rev > 0 else None,
        "revenueMicrodollars": rev,
        "costMicrodollars": cost,
        "marginMicrodollars": rev - cost,
        "revenueOverTime": [
            {
                "period": m,
                "revenue": revenue.get((cust, m), 0),
                "cost": att.by_customer.get((cust, m), 0),
            }
            for m in (shift_month(period, -k) for k in range(months - 1, -1, -1))
        ],
        "modelBreakdown": [
            {"model": name, "cost": v[0], "requestCount": v[1]}
            for name, v in sorted(models.items(), key=lambda kv: (-kv[1][0], kv[0]))
        ],
    }


def unmatched_report(
    customers: Iterable[StripeCustomer],
    revenue: Mapping[tuple[str, str], int],
    costs: Iterable[CostRecord],
    mappings: Iterable[CustomerMapping] = (),
) -> dict[str, Any]:
    """The seeds/003 GET /api/margins/unmatched `data`: totals over all the months given.

    pendingAutoMatches holds stored pending auto mappings plus fresh proposals for unmapped tags.
    """
    customers = list(customers)
    mappings = list(mappings)
    costs = list(costs)
    att = _attribute(costs, mappings)
    mapped_customers = set(att.tag_to_customer.values())
    rev_total: dict[str, int] = {}
    for (cust, _m), micros in revenue.items():
        rev_total[cust] = rev_total.get(cust, 0) + micros
    by_id = {c.id: c for c in customers}
    unmatched = [
        {
            "stripeCustomerId": cid,
            "customerName": by_id[cid].name if cid in by_id else None,
            "customerEmail": by_id[cid].email if cid in by_id else None,
            "totalRevenueMicrodollars": rev_total.get(cid, 0),
        }
        for cid in set(by_id) | set(rev_total)
        if cid not in mapped_customers
    ]
    unmatched.sort(key=lambda r: (-r["totalRevenueMicrodollars"], r["stripeCustomerId"]))
    unmapped = [
        {
            "tagValue": tag,
            "totalCostMicrodollars": sum(u.values()),
            "requestCount": att.unmapped_requests.get(tag, 0),
        }
        for tag, u in att.unmapped.items()
    ]
    unmapped.sort(key=lambda r: (-r["totalCostMicrodollars"], r["tagValue"]))
    pending = [
        AutoMatchProposal(
            m.id or str(uuid.uuid5(_AUTO_MATCH_NS, f"{m.stripe_customer_id}\x1f{m.tag_value}")),
            m.stripe_customer_id,
            by_id[m.stripe_customer_id].name if m.stripe_customer_id in by_id else None,
            m.tag_value,
            m.confidence if m.confidence is not None else 0.0,
        )
        for m in mappings
        if m.match_type == "auto"
        and m.status == "pending"
        and m.tag_value not in att.tag_to_customer
    ]
    pending += propose_auto_matches(customers, att.unmapped.keys(), mappings)
    return {
        "unmatchedStripeCustomers": unmatched,
        "unmappedTagValues": unmapped,
        "pendingAutoMatches": [p.to_dict() for p in pending],
        "customerNames": {c.id: c.name for c in sorted(customers, key=lambda c: c.id) if c.name},
    }


CSV_COLUMNS = (
    "Customer",
    "Stripe ID",
    "Tag Value",
    "Revenue ($)",
    "Cost ($)",
    "Margin (%)",
    "Margin ($)",
    "Health Tier",
)


def render_margins_csv(table: Mapping[str, Any]) -> str:
    """The seeds/003 CSV export of a margin_table result (amounts in whole units, 2 decimals)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(CSV_COLUMNS)
    for r in table["customers"]:
        pct = r["marginPercent"]
        w.writerow(
            [
                r["customerName"] or r["stripeCustomerId"],
                r["stripeCustomerId"],
                r["tagValue"] or "",
                micros_to_decimal(r["revenueMicrodollars"]),
                micros_to_decimal(r["costMicrodollars"]),
                "" if pct is None else f"{pct:.2f}",
                micros_to_decimal(r["marginMicrodollars"]),
                r["healthTier"],
            ]
        )
    return buf.getvalue()


def csv_filename(period: str) -> str:
    """Download name of the CSV export, as in seeds/003."""
    return f"margins-{validate_period(period)}.csv"


def tier_changes(
    previous_rows: Iterable[Mapping[str, Any]],
    current_rows: Iterable[Mapping[str, Any]],
    period: str = "",
) -> list[TierChange]:
    """Customers whose healthTier differs between two margin_table `customers` lists.

    A customer absent from `previous_rows` gets from_tier None; one absent from `current_rows` is
    not reported (it has no tier to cross into).
    """
    before = {r["stripeCustomerId"]: r["healthTier"] for r in previous_rows}
    changes = []
    for r in current_rows:
        prev = before.get(r["stripeCustomerId"])
        if prev != r["healthTier"]:
            changes.append(
                TierChange(
                    stripe_customer_id=r["stripeCustomerId"],
                    customer_name=r.get("customerName"),
                    tag_value=r.get("tagValue"),
                    period=period,
                    from_tier=prev,
                    to_tier=r["healthTier"],
                    margin_percent=r.get("marginPercent"),
                )
            )
    return sorted(changes, key=lambda c: c.stripe_customer_id)
