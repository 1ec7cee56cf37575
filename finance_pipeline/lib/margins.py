"""Customer margins per month (docs/metrics.md §11, margins API shapes and names).

Revenue is recognized revenue per (stripe customer, "YYYY-MM") in reporting micro-units (§8, see
recognition.recognized_by_customer_month). Costs are records tagged with a cost tag value; a tag
resolves to a Stripe customer through mappings (manual wins over accepted auto matches; pending
auto matches do not count until accepted). Untagged and unmapped costs are reported separately and
never spread over customers.

Decisions:
- Tiers are decided on the exact margin percent (49.999 % is at_risk even though it prints 50.00).
- Negative revenue (a month of refunds) is `critical` with a null margin percent.
- The projection is clamped at 100 % (costs are never negative, so a margin cannot exceed it).
- Auto-match signals and confidence (a pair scores its strongest signal, `MATCH_CONFIDENCE`):
  `exact_id` tag == Stripe id, 1.0; `metadata` the customer's Stripe metadata under the tag key
  ("customer") equals the tag, 0.95; `email` tag == customer email (case-insensitive), 0.9;
  `name` normalized name equality, 0.8, where normalizing keeps only lower-cased letters and digits
  ("Acme Corp" ~ "acme-corp"); `email_domain` the tag is the email's domain or its company label
  ("beta.co", "beta" for billing@beta.co; free-mail domains never count), 0.7.
- A pair is proposed only when each side is the other's single best candidate. Ties are
  ambiguous and propose nothing (a person maps by hand), so no cost can be attributed twice.
- Never proposed: a tag already mapped manually or by an accepted auto match, a customer already
  holding such a mapping for the tag key (one mapping per customer and key, margins API upsert key),
  a (customer, tag) pair someone rejected. Pending rows are the proposer's own output and are
  recomputed, so re-running with the same inputs gives the same proposals and ids.
"""

from __future__ import annotations

import math
import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from finance_pipeline.lib.money import percent, round_half_away

TIER_ORDER = {"healthy": 0, "at_risk": 1, "critical": 2}
_PERIOD_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_AUTO_MATCH_NS = uuid.UUID("6f0c8f1e-5a37-4d7e-9a51-3c1b1f9e2a10")
DEFAULT_TAG_KEY = "customer"
# Confidence of each auto-match signal (docs/metrics.md §11: exact id 1.0, email and name lower).
MATCH_CONFIDENCE: dict[str, float] = {
    "exact_id": 1.0,
    "metadata": 0.95,
    "email": 0.9,
    "name": 0.8,
    "email_domain": 0.7,
}
# Shared mailbox providers: their domain says nothing about which company a customer is.
FREE_MAIL_DOMAINS = frozenset(
    {
        "aol.com",
        "fastmail.com",
        "gmail.com",
        "gmx.com",
        "gmx.de",
        "googlemail.com",
        "hey.com",
        "hotmail.com",
        "icloud.com",
        "live.com",
        "mail.com",
        "me.com",
        "msn.com",
        "outlook.com",
        "pm.me",
        "proton.me",
        "protonmail.com",
        "qq.com",
        "yahoo.com",
        "yandex.ru",
        "zoho.com",
    }
)
# Leading labels of a mail host that are not the company ("billing.acme.com" -> "acme").
_GENERIC_LABELS = frozenset({"www", "mail", "email", "billing", "accounts", "info", "corp"})


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
    metadata: Mapping[str, Any] | None = None


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
    tag_key: str = DEFAULT_TAG_KEY
    match_reason: str | None = None

    @property
    def decided(self) -> bool:
        """True for a mapping a person owns (manual, or an accepted auto match)."""
        return self.match_type == "manual" or self.status == "accepted"


@dataclass(frozen=True, slots=True)
class AutoMatchProposal:
    """A proposed (pending) auto match of a cost tag to a Stripe customer, with its confidence."""

    id: str
    stripe_customer_id: str
    customer_name: str | None
    tag_value: str
    confidence: float
    match_reason: str | None = None
    tag_key: str = DEFAULT_TAG_KEY

    def to_dict(self) -> dict[str, Any]:
        """The margins API pendingAutoMatches item (plus matchReason: which signal matched)."""
        return {
            "id": self.id,
            "stripeCustomerId": self.stripe_customer_id,
            "customerName": self.customer_name,
            "tagValue": self.tag_value,
            "confidence": self.confidence,
            "matchReason": self.match_reason,
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
    """Lower-cased letters and digits only, for name/tag matching ("Acme Corp" -> "acmecorp").

    Accents are folded first ("Müller" -> "muller") so a tag typed without them still matches.
    """
    folded = unicodedata.normalize("NFKD", value or "").lower()
    return re.sub(r"[^0-9a-z]", "", folded)


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


def proposal_id(
    stripe_customer_id: str, tag_value: str, tag_key: str = DEFAULT_TAG_KEY, scope: str = ""
) -> str:
    """Deterministic id of an auto-match proposal: a UUID5 of (scope, key, customer, tag).

    `scope` is the workspace id for stored rows, so two workspaces never share an id.
    """
    name = "\x1f".join((scope, tag_key, stripe_customer_id, tag_value))
    return str(uuid.uuid5(_AUTO_MATCH_NS, name))


def _domain_keys(email: str | None) -> set[str]:
    """Normalized forms of an email's domain that a tag may equal ("beta.co" -> betaco, beta)."""
    if not email or "@" not in email:
        return set()
    domain = email.strip().lower().rpartition("@")[2].strip(".")
    if not domain or domain in FREE_MAIL_DOMAINS:
        return set()
    keys = {normalize_name(domain)}
    # Every label but the top-level one, skipping mail-host prefixes and 1-2 letter labels
    # ("co" of acme.co.uk), so "acme" matches billing@mail.acme.co.uk.
    keys |= {
        normalize_name(label)
        for label in domain.split(".")[:-1]
        if label not in _GENERIC_LABELS and len(normalize_name(label)) >= 3
    }
    keys.discard("")
    return keys


def match_signal(
    customer: StripeCustomer, tag_value: str, tag_key: str = DEFAULT_TAG_KEY
) -> tuple[float, str] | None:
    """The strongest signal tying a cost tag to a Stripe customer: (confidence, reason) or None."""
    tag = tag_value.strip()
    if not tag:
        return None
    if customer.id == tag:
        return MATCH_CONFIDENCE["exact_id"], "exact_id"
    meta = (customer.metadata or {}).get(tag_key)
    if isinstance(meta, str) and meta.strip() and meta.strip() == tag:
        return MATCH_CONFIDENCE["metadata"], "metadata"
    if customer.email and customer.email.strip().lower() == tag.lower():
        return MATCH_CONFIDENCE["email"], "email"
    norm_tag = normalize_name(tag)
    if norm_tag and normalize_name(customer.name) == norm_tag:
        return MATCH_CONFIDENCE["name"], "name"
    if norm_tag and norm_tag in _domain_keys(customer.email):
        return MATCH_CONFIDENCE["email_domain"], "email_domain"
    return None


def _unique_best(scores: Mapping[str, float]) -> str | None:
    """The single key with the highest score, or None when the best score is shared."""
    if not scores:
        return None
    best = max(scores.values())
    winners = [k for k, v in scores.items() if v == best]
    return winners[0] if len(winners) == 1 else None


def propose_auto_matches(
    customers: Iterable[StripeCustomer],
    tag_values: Iterable[str],
    mappings: Iterable[CustomerMapping] = (),
    rejected: Iterable[tuple[str, str]] = (),
    *,
    tag_key: str = DEFAULT_TAG_KEY,
    scope: str = "",
) -> list[AutoMatchProposal]:
    """Pending auto-match proposals (docs/metrics.md §11), sorted by tag then customer.

    Candidates exclude tags and customers that a decided mapping (manual or accepted) of `tag_key`
    already holds, and the (customer id, tag) pairs in `rejected`; pending mappings are ignored
    (they are this function's earlier output). A pair is proposed when the customer is the tag's
    single best candidate and the tag is the customer's single best candidate (see the module
    docstring for the signals). Pure and deterministic: same inputs, same proposals and ids.
    """
    decided = [m for m in mappings if m.decided and m.tag_key == tag_key]
    taken_tags = {m.tag_value for m in decided}
    taken_customers = {m.stripe_customer_id for m in decided}
    refused = set(rejected)
    custs = {c.id: c for c in customers if c.id and c.id not in taken_customers}
    tags = {t for t in tag_values if t and t.strip() and t not in taken_tags}
    by_tag: dict[str, dict[str, float]] = {}
    by_customer: dict[str, dict[str, float]] = {}
    reasons: dict[tuple[str, str], str] = {}
    for tag in sorted(tags):
        for cid in sorted(custs):
            if (cid, tag) in refused:
                continue
            signal = match_signal(custs[cid], tag, tag_key)
            if signal is None:
                continue
            by_tag.setdefault(tag, {})[cid] = signal[0]
            by_customer.setdefault(cid, {})[tag] = signal[0]
            reasons[(cid, tag)] = signal[1]
    proposals: list[AutoMatchProposal] = []
    for tag in sorted(by_tag):
        cid = _unique_best(by_tag[tag])
        if cid is None or _unique_best(by_customer[cid]) != tag:
            continue
        proposals.append(
            AutoMatchProposal(
                proposal_id(cid, tag, tag_key, scope),
                cid,
                custs[cid].name,
                tag,
                by_tag[tag][cid],
                reasons[(cid, tag)],
                tag_key,
            )
        )
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
    """The margins API GET /api/margins `data` object for month `period` ("YYYY-MM").

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
    """The margins API GET /api/margins/:customer `data`; None (a 404) if the tag is not mapped."""
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
    rejected: Iterable[tuple[str, str]] = (),
    *,
    scope: str = "",
) -> dict[str, Any]:
    """The margins API GET /api/margins/unmatched `data`: totals over all the months given.

    pendingAutoMatches holds stored pending auto mappings plus fresh proposals for unmapped tags
    (never a rejected (customer id, tag) pair).
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
            m.id or proposal_id(m.stripe_customer_id, m.tag_value, m.tag_key, scope),
            m.stripe_customer_id,
            by_id[m.stripe_customer_id].name if m.stripe_customer_id in by_id else None,
            m.tag_value,
            m.confidence if m.confidence is not None else 0.0,
            m.match_reason,
            m.tag_key,
        )
        for m in sorted(mappings, key=lambda m: (m.tag_value, m.stripe_customer_id))
        if not m.decided and m.tag_value not in att.tag_to_customer
    ]
    # Fresh proposals only where no stored pending row speaks for the tag or the customer.
    pending_tags = {p.tag_value for p in pending}
    pending_customers = {p.stripe_customer_id for p in pending}
    pending += [
        p
        for p in propose_auto_matches(
            customers, att.unmapped.keys(), mappings, rejected, scope=scope
        )
        if p.tag_value not in pending_tags and p.stripe_customer_id not in pending_customers
    ]
    return {
        "unmatchedStripeCustomers": unmatched,
        "unmappedTagValues": unmapped,
        "pendingAutoMatches": [p.to_dict() for p in pending],
        "customerNames": {c.id: c.name for c in sorted(customers, key=lambda c: c.id) if c.name},
    }


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
