"""Customer margins (docs/metrics.md §11): tiers, sparkline, mapping, unmatched lists, CSV."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finance_pipeline.lib.margins import (
    CostRecord,
    CustomerMapping,
    MarginThresholds,
    StripeCustomer,
    budget_suggestion,
    customer_detail,
    health_tier,
    linear_projection,
    margin_table,
    propose_auto_matches,
    resolve_tags,
    shift_month,
    tier_changes,
    unmatched_report,
)

M = 1_000_000
P = "2026-04"

CUSTOMERS = [
    StripeCustomer("cus_acme", "Acme Corp", "billing@acme.com"),
    StripeCustomer("cus_beta", "BetaCo", "billing@beta.co"),
    StripeCustomer("cus_delta", "Delta LLC"),
    StripeCustomer("cus_gamma", "Gamma Inc", "Billing@Gamma.io"),
    StripeCustomer("cus_crit", "Crit Co"),
    StripeCustomer("cus_risk", "Risky"),
    StripeCustomer("cus_eps", "Epsilon LLC"),
]
MAPPINGS = [
    CustomerMapping("cus_acme", "acme-corp"),
    CustomerMapping("cus_beta", "acme-corp", "auto", "accepted", confidence=0.8),  # manual wins
    CustomerMapping("cus_crit", "crit"),
    CustomerMapping("cus_risk", "risky", "auto", "accepted", confidence=0.8),
    CustomerMapping("cus_gamma", "billing@gamma.io", "auto", "pending", id="m1", confidence=0.9),
]
REVENUE = {
    ("cus_acme", "2026-02"): 90 * M,
    ("cus_acme", "2026-03"): 95 * M,
    ("cus_acme", "2026-04"): 100 * M,
    ("cus_beta", "2026-04"): 50 * M,
    ("cus_delta", "2026-04"): 10 * M,
    ("cus_crit", "2026-03"): 10 * M,
    **{("cus_risk", f"2026-0{m}"): 100 * M for m in (1, 2, 3, 4)},
}
COSTS = [
    CostRecord("acme-corp", "2026-02", 25 * M),
    CostRecord("acme-corp", "2026-03", 28 * M),
    CostRecord("acme-corp", "2026-04", 20 * M, "gpt-4o", 150),
    CostRecord("acme-corp", "2026-04", 10 * M, "gpt-4o-mini", 800),
    CostRecord("crit", "2026-03", 2 * M),
    CostRecord("crit", "2026-04", 5 * M),
    *[CostRecord("risky", f"2026-0{m}", c * M) for m, c in ((1, 45), (2, 55), (3, 65), (4, 75))],
    CostRecord("cus_delta", "2026-04", 15 * M, "gpt-4o", 200),
    CostRecord("billing@gamma.io", "2026-04", 3 * M),
    CostRecord("epsilon-llc", "2026-03", 1 * M, None, 10),
    CostRecord(None, "2026-04", 7 * M),
    CostRecord("", "2026-04", 1),
]


def D(text: str) -> Decimal:
    return Decimal(text)


@pytest.mark.parametrize(
    ("revenue", "cost", "tier"),
    [
        (100 * M, 50 * M, "healthy"),  # exactly 50 %
        (100 * M, 50 * M + 1, "at_risk"),  # 49.999999 %
        (100 * M, 80 * M, "at_risk"),  # exactly 20 %
        (100 * M, 80 * M + 1, "critical"),
        (100 * M, 0, "healthy"),
        (100 * M, 150 * M, "critical"),
        (0, 1, "critical"),
        (0, 0, None),
        (-5, 0, "critical"),
    ],
)
def test_health_tier_boundaries(revenue: int, cost: int, tier: str | None) -> None:
    assert health_tier(revenue, cost) == tier


def test_configurable_thresholds() -> None:
    t = MarginThresholds(healthy_min_pct=60, at_risk_min_pct=30)
    assert health_tier(100 * M, 45 * M, t) == "at_risk"
    assert health_tier(100 * M, 40 * M, t) == "healthy"
    assert health_tier(100 * M, 70 * M, t) == "at_risk"
    assert budget_suggestion(100 * M, 45 * M, t) == 40 * M


def test_budget_suggestion() -> None:
    assert budget_suggestion(100 * M, 60 * M) == 50 * M
    assert budget_suggestion(3, 3) == 1  # 1.5 micros floors: spending 1 is healthy, 2 is not
    assert budget_suggestion(100 * M, 50 * M) is None  # healthy
    assert budget_suggestion(0, 5) == 0
    assert budget_suggestion(0, 0) is None


def test_linear_projection_exact() -> None:
    pts = [(-2, Fraction(65)), (-1, Fraction(68)), (0, Fraction(70))]
    assert linear_projection(pts, 1) == Fraction(218, 3)  # 67.67 + 2.5 x 2 = 72.67
    assert linear_projection([(-1, Fraction(80))], 1) == 80
    assert linear_projection([], 1) is None


def test_margin_table_seed_shape_and_values() -> None:
    table = margin_table(
        P,
        REVENUE,
        COSTS,
        CUSTOMERS,
        MAPPINGS,
        last_sync_at=datetime(2026, 4, 5, 10, tzinfo=UTC),
        sync_status="active",
        skipped_currencies={"eur": 3},
    )
    assert table["summary"] == {
        "blendedMarginPercent": D("57.69"),  # (260 - 110) / 260
        "totalRevenueMicrodollars": 260 * M,
        "totalCostMicrodollars": 110 * M,
        "criticalCount": 1,
        "atRiskCount": 1,
        "lastSyncAt": "2026-04-05T10:00:00.000Z",
        "syncStatus": "active",
        "skippedCurrencies": {"eur": 3},
        "untaggedCostMicrodollars": 7 * M + 1,
        "unmappedCostMicrodollars": 18 * M,
    }
    rows = {r["stripeCustomerId"]: r for r in table["customers"]}
    assert [r["stripeCustomerId"] for r in table["customers"]] == [
        "cus_acme",
        "cus_risk",
        "cus_beta",
        "cus_delta",
        "cus_crit",
    ]
    # Acme: Feb 65/90, Mar 67/95, Apr 70/100. Projection over three equally spaced points:
    # mean + slope x 2, slope = (last - first) / 2.
    feb, mar, apr = Fraction(6500, 90), Fraction(6700, 95), Fraction(70)
    proj = (feb + mar + apr) / 3 + (apr - feb) / 2 * 2
    assert round(float(proj), 2) == 68.69
    assert rows["cus_acme"] == {
        "stripeCustomerId": "cus_acme",
        "customerName": "Acme Corp",
        "avatarUrl": None,
        "tagValue": "acme-corp",
        "tagValues": ["acme-corp"],
        "revenueMicrodollars": 100 * M,
        "costMicrodollars": 30 * M,
        "marginMicrodollars": 70 * M,
        "marginPercent": D("70.00"),
        "healthTier": "healthy",
        "sparkline": [
            {"period": "2026-02", "marginPercent": D("72.22")},
            {"period": "2026-03", "marginPercent": D("70.53")},
            {"period": "2026-04", "marginPercent": D("70.00")},
            {"period": "2026-05", "marginPercent": D("68.69"), "projected": True},
        ],
        "projectedTierWorsening": False,
        "budgetSuggestionMicrodollars": None,
    }
    risk = rows["cus_risk"]  # 55, 45, 35, 25 % -> projected 15 % (critical)
    assert (risk["healthTier"], risk["marginPercent"]) == ("at_risk", D("25.00"))
    assert risk["sparkline"][-1] == {
        "period": "2026-05",
        "marginPercent": D("15.00"),
        "projected": True,
    }
    assert risk["projectedTierWorsening"] is True
    assert risk["budgetSuggestionMicrodollars"] == 50 * M
    crit = rows["cus_crit"]  # no revenue in April, 5 of cost
    assert (crit["healthTier"], crit["marginPercent"], crit["marginMicrodollars"]) == (
        "critical",
        None,
        -5 * M,
    )
    assert [p["marginPercent"] for p in crit["sparkline"]] == [None, D("80.00"), None, D("80.00")]
    assert crit["projectedTierWorsening"] is False
    assert crit["budgetSuggestionMicrodollars"] == 0
    beta = rows["cus_beta"]  # unmatched: the accepted auto mapping lost to acme's manual one
    assert (beta["tagValue"], beta["costMicrodollars"], beta["healthTier"]) == (None, 0, "healthy")


def test_projection_is_clamped_at_100_percent() -> None:
    rev = {("c", shift_month(P, -k)): 100 * M for k in range(3)}
    costs = [CostRecord("t", shift_month(P, -2), 2 * M), CostRecord("t", shift_month(P, -1), M)]
    row = margin_table(P, rev, costs, mappings=[CustomerMapping("c", "t")])["customers"][0]
    assert row["sparkline"][-1]["marginPercent"] == D("100.00")


def test_empty_inputs() -> None:
    table = margin_table(P, {}, [])
    assert table["customers"] == []
    assert table["summary"]["blendedMarginPercent"] is None
    assert table["summary"]["totalRevenueMicrodollars"] == 0
    assert (table["summary"]["criticalCount"], table["summary"]["atRiskCount"]) == (0, 0)
    assert unmatched_report([], {}, []) == {
        "unmatchedStripeCustomers": [],
        "unmappedTagValues": [],
        "pendingAutoMatches": [],
        "customerNames": {},
    }


def test_invalid_period() -> None:
    for bad in ("2026-4", "2026-13", "April", "2026-04-01"):
        with pytest.raises(ValueError, match="YYYY-MM"):
            margin_table(bad, {}, [])


def test_customer_detail() -> None:
    detail = customer_detail("acme-corp", P, REVENUE, COSTS, CUSTOMERS, MAPPINGS)
    assert detail == {
        "stripeCustomerId": "cus_acme",
        "customerName": "Acme Corp",
        "avatarUrl": None,
        "tagValue": "acme-corp",
        "healthTier": "healthy",
        "marginPercent": D("70.00"),
        "revenueMicrodollars": 100 * M,
        "costMicrodollars": 30 * M,
        "marginMicrodollars": 70 * M,
        "revenueOverTime": [
            {"period": "2026-02", "revenue": 90 * M, "cost": 25 * M},
            {"period": "2026-03", "revenue": 95 * M, "cost": 28 * M},
            {"period": "2026-04", "revenue": 100 * M, "cost": 30 * M},
        ],
        "modelBreakdown": [
            {"model": "gpt-4o", "cost": 20 * M, "requestCount": 150},
            {"model": "gpt-4o-mini", "cost": 10 * M, "requestCount": 800},
        ],
    }
    assert customer_detail("cus_delta", P, REVENUE, COSTS, CUSTOMERS, MAPPINGS) is None
    assert customer_detail("nope", P, REVENUE, COSTS, CUSTOMERS, MAPPINGS) is None


def test_resolve_tags_manual_wins_and_pending_ignored() -> None:
    assert resolve_tags(MAPPINGS) == {
        "acme-corp": "cus_acme",
        "crit": "cus_crit",
        "risky": "cus_risk",
    }
    # Two manual mappings of one tag resolve to the smallest id whatever the order.
    two = [CustomerMapping("cus_b", "t"), CustomerMapping("cus_a", "t")]
    assert resolve_tags(two) == resolve_tags(two[::-1]) == {"t": "cus_a"}


def test_unmatched_report_and_proposals() -> None:
    report = unmatched_report(CUSTOMERS, REVENUE, COSTS, MAPPINGS)
    assert report["unmatchedStripeCustomers"] == [
        {
            "stripeCustomerId": "cus_beta",
            "customerName": "BetaCo",
            "customerEmail": "billing@beta.co",
            "totalRevenueMicrodollars": 50 * M,
        },
        {
            "stripeCustomerId": "cus_delta",
            "customerName": "Delta LLC",
            "customerEmail": None,
            "totalRevenueMicrodollars": 10 * M,
        },
        {
            "stripeCustomerId": "cus_eps",
            "customerName": "Epsilon LLC",
            "customerEmail": None,
            "totalRevenueMicrodollars": 0,
        },
        {
            "stripeCustomerId": "cus_gamma",
            "customerName": "Gamma Inc",
            "customerEmail": "Billing@Gamma.io",
            "totalRevenueMicrodollars": 0,
        },
    ]
    assert report["unmappedTagValues"] == [
        {"tagValue": "cus_delta", "totalCostMicrodollars": 15 * M, "requestCount": 200},
        {"tagValue": "billing@gamma.io", "totalCostMicrodollars": 3 * M, "requestCount": 0},
        {"tagValue": "epsilon-llc", "totalCostMicrodollars": 1 * M, "requestCount": 10},
    ]
    pending = report["pendingAutoMatches"]
    assert [(p["stripeCustomerId"], p["tagValue"], p["confidence"]) for p in pending] == [
        ("cus_gamma", "billing@gamma.io", 0.9),  # stored pending mapping
        ("cus_delta", "cus_delta", 1.0),  # exact id
        ("cus_eps", "epsilon-llc", 0.8),  # normalized name
    ]
    assert pending[0]["id"] == "m1"
    assert uuid.UUID(pending[1]["id"]).version == 5
    assert report["customerNames"]["cus_acme"] == "Acme Corp"


def test_proposals_confidence_and_ties() -> None:
    customers = [
        StripeCustomer("cus_1", "Acme Corp", "ops@acme.com"),
        StripeCustomer("cus_2", "ACME-CORP"),
        StripeCustomer("ops@acme.com", "Whatever"),
    ]
    props = propose_auto_matches(customers, ["acme corp", "OPS@acme.com", "ops@acme.com", "zzz"])
    got = [(p.tag_value, p.stripe_customer_id, p.confidence, p.match_reason) for p in props]
    # "acme corp" ties cus_1 and cus_2 (0.8); cus_1's email matches two tags (0.9 each): both
    # ambiguous. The exact id beats cus_1's email match on "ops@acme.com".
    assert got == [("ops@acme.com", "ops@acme.com", 1.0, "exact_id")]
    again = propose_auto_matches(customers[::-1], ["zzz", "ops@acme.com"])
    assert [p.id for p in again] == [props[0].id]
    # A tag with a decided mapping is not proposed again; a pending one is recomputed.
    decided = [CustomerMapping("x", "ops@acme.com")]
    assert propose_auto_matches(customers, ["ops@acme.com"], decided) == []
    pending = [CustomerMapping("ops@acme.com", "ops@acme.com", "auto", "pending")]
    assert propose_auto_matches(customers, ["ops@acme.com"], pending) == props


def test_tier_changes() -> None:
    before = [
        {"stripeCustomerId": "a", "healthTier": "healthy"},
        {"stripeCustomerId": "r", "healthTier": "healthy"},
        {"stripeCustomerId": "c", "healthTier": "at_risk"},
        {"stripeCustomerId": "gone", "healthTier": "critical"},
    ]
    after = [
        {"stripeCustomerId": "a", "healthTier": "healthy"},
        {"stripeCustomerId": "r", "healthTier": "at_risk", "marginPercent": D("30.00")},
        {"stripeCustomerId": "c", "healthTier": "critical", "customerName": "C"},
        {"stripeCustomerId": "n", "healthTier": "healthy"},
    ]
    got = [(c.stripe_customer_id, c.from_tier, c.to_tier) for c in tier_changes(before, after, P)]
    assert got == [
        ("c", "at_risk", "critical"),
        ("n", None, "healthy"),
        ("r", "healthy", "at_risk"),
    ]
    assert tier_changes(before, after, P)[2].margin_percent == D("30.00")


@settings(max_examples=80, deadline=None)
@given(
    revenue=st.integers(min_value=1, max_value=10**12),
    cost=st.integers(min_value=0, max_value=2 * 10**12),
)
def test_budget_puts_customer_exactly_on_healthy_boundary(revenue: int, cost: int) -> None:
    budget = budget_suggestion(revenue, cost)
    tier = health_tier(revenue, cost)
    if tier == "healthy":
        assert budget is None
    else:
        # The budget is the largest whole-micro cost that is still healthy.
        assert budget is not None and budget < cost
        assert health_tier(revenue, budget) == "healthy"
        assert health_tier(revenue, budget + 1) != "healthy"
