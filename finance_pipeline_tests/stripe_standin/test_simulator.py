"""The seeded Stripe history simulator and its independent truth (docs/metrics.md §3-5, §15)."""

from __future__ import annotations

import ast
import csv
import dataclasses
import functools
import json
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import stripe
from finance_pipeline_dev.simulator import LANDING_HEADERS, Simulation, simulate
from finance_pipeline_dev.simulator.model import (
    CouponModel,
    DiscountSpan,
    ItemState,
    PriceModel,
    SubState,
    SubTimeline,
    Tier,
)
from finance_pipeline_dev.simulator.truth import (
    COUNTING_STATUSES,
    GroundTruth,
    compute_ground_truth,
    item_mrr_micros,
    item_period_amount_minor,
    monthly_factor,
    state_at,
    sub_mrr_at,
)
from finance_pipeline_dev.standin.shapes import conformance_errors
from hypothesis import given, settings
from hypothesis import strategies as st

from finance_pipeline.lib.money import micros_per_minor, round_half_away
from finance_pipeline.lib.timeutil import day_start_ts

END = date(2025, 6, 30)
CENT = 10_000  # micro-units per cent


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return simulate(seed=7, customers=60, months=12, end=END)


def objs(sim: Simulation, kind: str) -> list[dict[str, Any]]:
    return [o for o in sim.objects() if o["object"] == kind]


def ts(s: str) -> int:
    return int(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp())


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_fixture_and_different_seed_differs() -> None:
    a = simulate(seed=11, customers=25, months=4, end=END)
    b = simulate(seed=11, customers=25, months=4, end=END)
    c = simulate(seed=12, customers=25, months=4, end=END)
    ja, jb, jc = (json.dumps(x.fixture, sort_keys=True) for x in (a, b, c))
    assert ja == jb
    assert ja != jc
    assert a.ground_truth.to_json() == b.ground_truth.to_json()
    assert a.landing == b.landing


def test_fixture_format(sim: Simulation, tmp_path: Path) -> None:
    fx = sim.fixture
    assert set(fx) == {"clock", "accounts"}
    assert fx["clock"] == day_start_ts(END + timedelta(days=1)) - 1
    (acct,) = fx["accounts"]
    assert acct.startswith("acct_")
    a = fx["accounts"][acct]
    assert set(a) == {"livemode", "keys", "connected_accounts", "objects"}
    assert a["livemode"] is False and a["connected_accounts"] == []
    ((key, perms),) = a["keys"].items()
    assert key.startswith("sk_test_") and perms == {"permissions": None}
    ids = [o["id"] for o in a["objects"]]
    assert len(ids) == len(set(ids))
    assert all(o["livemode"] is False for o in a["objects"] if "livemode" in o)
    two = simulate(seed=7, customers=10, months=2, end=END, accounts=2)
    assert len(two.fixture["accounts"]) == 2
    for acct_obj in two.fixture["accounts"].values():
        assert any(o["object"] == "customer" for o in acct_obj["objects"])
    assert json.loads(two.write_fixture(tmp_path / "two.json").read_text()) == two.fixture


# --------------------------------------------------------------------------- SDK shapes


_SDK = Path(stripe.__file__).parent
_CLASSES = {
    "customer": ("_customer", "Customer"),
    "product": ("_product", "Product"),
    "price": ("_price", "Price"),
    "coupon": ("_coupon", "Coupon"),
    "discount": ("_discount", "Discount"),
    "subscription": ("_subscription", "Subscription"),
    "subscription_item": ("_subscription_item", "SubscriptionItem"),
    "plan": ("_plan", "Plan"),
    "invoice": ("_invoice", "Invoice"),
    "line_item": ("_invoice_line_item", "InvoiceLineItem"),
    "invoice_payment": ("_invoice_payment", "InvoicePayment"),
    "charge": ("_charge", "Charge"),
    "refund": ("_refund", "Refund"),
    "credit_note": ("_credit_note", "CreditNote"),
    "credit_note_line_item": ("_credit_note_line_item", "CreditNoteLineItem"),
    "balance_transaction": ("_balance_transaction", "BalanceTransaction"),
    "event": ("_event", "Event"),
    "tax_rate": ("_tax_rate", "TaxRate"),
}


@functools.cache
def _annotations(kind: str) -> dict[str, bool]:
    """field -> is Optional, read by walking the SDK module's AST (get_type_hints fails there)."""
    module, cls = _CLASSES[kind]
    tree = ast.parse((_SDK / f"{module}.py").read_text(encoding="utf-8"))
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    out = {}
    for n in node.body:
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name):
            text = ast.unparse(n.annotation)
            if not text.startswith("ClassVar"):
                out[n.target.id] = text.startswith("Optional[")
    return out


def _own_check(obj: dict[str, Any], where: str) -> list[str]:
    fields = _annotations(obj["object"])
    errs = [f"{where}.{k} undeclared" for k in obj if k not in fields]
    errs += [f"{where}.{k} missing" for k, opt in fields.items() if not opt and k not in obj]
    return errs


def _embedded(o: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    if o["object"] == "subscription":
        for si in o["items"]["data"]:
            out += [si, si["price"], si["plan"], *si["tax_rates"]]
        out += o["default_tax_rates"]
    elif o["object"] == "invoice" or o["object"] == "credit_note":
        out += o["lines"]["data"]
    elif o["object"] == "event":
        out.append(o["data"]["object"])
        out += _embedded(o["data"]["object"])
    return out


def test_every_object_conforms_to_the_sdk_classes(sim: Simulation) -> None:
    kinds = Counter()
    errors: list[str] = []
    for o in sim.objects():
        kinds[o["object"]] += 1
        for inner in [o, *_embedded(o)]:
            errors += _own_check(inner, f"{o['object']}[{o['id']}]")
        errors += conformance_errors(o)  # the shared recursive checker (nested classes too)
    assert errors == []
    assert set(kinds) == {
        "customer",
        "product",
        "price",
        "coupon",
        "discount",
        "subscription",
        "invoice",
        "invoice_payment",
        "charge",
        "refund",
        "credit_note",
        "balance_transaction",
        "event",
    }
    # Negative control: the checkers do flag an undeclared key and a missing required one.
    bad = dict(objs(sim, "invoice")[0], subscription="sub_x")
    del bad["lines"]
    assert any("subscription" in e for e in _own_check(bad, "x"))
    assert any("lines" in e for e in _own_check(bad, "x"))
    assert any("subscription" in e for e in conformance_errors(bad))


def test_current_shapes(sim: Simulation) -> None:
    for inv in objs(sim, "invoice"):
        assert "subscription" not in inv and "charge" not in inv and "paid" not in inv
        assert inv["parent"]["subscription_details"]["subscription"].startswith("sub_")
        assert (
            inv["lines"]["has_more"] is False
            and len(inv["lines"]["data"]) == inv["lines"]["total_count"]
        )
        for line in inv["lines"]["data"]:
            det = line["parent"]["subscription_item_details"]
            assert det["subscription"] == inv["parent"]["subscription_details"]["subscription"]
            assert line["pricing"]["price_details"]["price"].startswith("price_")
            assert set(line["period"]) == {"start", "end"}
    for sub in objs(sim, "subscription"):
        for si in sub["items"]["data"]:
            assert si["current_period_start"] < si["current_period_end"]
            assert si["price"]["object"] == "price"
    for p in objs(sim, "invoice_payment"):
        assert p["payment"]["type"] == "charge" and p["payment"]["charge"].startswith("ch_")


# --------------------------------------------------------------------------- coverage


def test_dataset_covers_every_feature(sim: Simulation) -> None:
    subs = objs(sim, "subscription")
    invs = objs(sim, "invoice")
    lines = [ln for inv in invs for ln in inv["lines"]["data"]]
    statuses = Counter(s["status"] for s in subs)
    for status in ("active", "canceled", "trialing", "unpaid", "incomplete_expired"):
        assert statuses[status] >= 1, status
    assert any(s.status == "past_due" for tl in sim.timelines.values() for s in tl.states)
    assert {i["status"] for i in invs} >= {"paid", "open", "void", "uncollectible"}
    assert max(len(i["lines"]["data"]) for i in invs) > 10
    assert {i["currency"] for i in invs} >= {"usd", "eur", "gbp", "jpy"}
    jpy = [i for i in invs if i["currency"] == "jpy" and i["total"] > 0]
    assert jpy and all(i["total"] % 1 == 0 and i["total"] > 100 for i in jpy)  # whole yen
    prorations = [ln for ln in lines if ln["parent"]["subscription_item_details"]["proration"]]
    assert any(
        ln["amount"] < 0 and ln["description"].startswith("Unused time") for ln in prorations
    )
    assert any(
        ln["amount"] > 0 and ln["description"].startswith("Remaining time") for ln in prorations
    )
    assert all(ln["period"]["start"] < ln["period"]["end"] for ln in prorations)
    coupons = {c["id"]: c for c in objs(sim, "coupon")}
    used = {d["source"]["coupon"]["id"] for d in objs(sim, "discount")}
    durations = {coupons[c]["duration"] for c in used}
    assert durations == {"forever", "repeating", "once"}
    assert any(coupons[c]["amount_off"] for c in used) and any(
        coupons[c]["percent_off"] for c in used
    )
    assert any(s["cancel_at_period_end"] for s in subs)
    assert any(s["pause_collection"] for s in subs) or any(
        st.paused for tl in sim.timelines.values() for st in tl.states
    )
    assert any(s["trial_start"] for s in subs if s["status"] != "trialing")
    charges = objs(sim, "charge")
    assert {c["status"] for c in charges} == {"succeeded", "failed"}
    bts = {b["id"]: b for b in objs(sim, "balance_transaction")}
    assert all(
        bts[c["balance_transaction"]]["fee"] > 0 for c in charges if c["status"] == "succeeded"
    )
    refunds = objs(sim, "refund")
    by_charge = {c["id"]: c for c in charges}
    assert any(r["amount"] == by_charge[r["charge"]]["amount"] for r in refunds)  # full
    assert any(r["amount"] < by_charge[r["charge"]]["amount"] for r in refunds)  # partial
    cns = objs(sim, "credit_note")
    assert {c["type"] for c in cns} == {"post_payment", "pre_payment"}
    assert all(c["refunds"] for c in cns if c["type"] == "post_payment")
    assert any(i["total_taxes"] and i["total"] != i["total_excluding_tax"] for i in invs)
    assert any(t["tax_behavior"] == "inclusive" for i in invs for t in i["total_taxes"])
    metered = [ln for ln in lines if ln["quantity"] and ln["quantity"] > 1000]
    assert metered
    prices = objs(sim, "price")
    assert {p["recurring"]["interval"] for p in prices} >= {"month", "year", "week"}
    assert any(p["recurring"]["interval_count"] == 3 for p in prices)
    assert {p["tiers_mode"] for p in prices} >= {"graduated", "volume"}
    assert any(p["transform_quantity"] for p in prices)
    assert any(p["recurring"]["usage_type"] == "metered" for p in prices)
    assert any(p["tax_behavior"] == "inclusive" for p in prices)
    movements = Counter(m[3] for m in sim.ground_truth.movements)
    assert set(movements) == {"new", "expansion", "contraction", "churn", "reactivation", "fx"}
    tags = Counter(m[5] for m in sim.ground_truth.movements if m[3] == "churn")
    assert tags["delinquent"] >= 1 and tags["voluntary"] >= 1


def test_events_only_within_thirty_days(sim: Simulation) -> None:
    events = objs(sim, "event")
    clock = sim.fixture["clock"]
    assert events
    assert all(clock - 30 * 86_400 <= e["created"] <= clock for e in events)
    types = {e["type"] for e in events}
    assert {"customer.subscription.updated", "invoice.paid", "charge.succeeded"} <= types
    updates = [e for e in events if e["type"].endswith(".updated")]
    assert updates and all(e["data"].get("previous_attributes") for e in updates)
    # Older history is only visible through current objects and invoices.
    assert min(i["created"] for i in objs(sim, "invoice")) < clock - 300 * 86_400


def test_fx_rate_per_currency_per_day(sim: Simulation) -> None:
    gt = sim.ground_truth
    d = gt.first_day
    while d <= gt.last_day:
        for cur in ("eur", "gbp", "jpy"):
            rate = gt.fx_rates[(cur, d)]
            assert len(rate.as_tuple().digits) == 7 and rate > 0  # 7 significant digits
        assert ("usd", d) not in gt.fx_rates
        d += timedelta(days=1)
    assert gt.rate("usd", d) == 1


# --------------------------------------------------------------------------- docs/metrics.md §15


def price(pid: str, cents: int, interval: str = "month", count: int = 1, **kw: Any) -> PriceModel:
    return PriceModel(pid, "usd", interval, count, unit_amount_decimal=Decimal(cents), **kw)


def timeline(
    cust: str,
    sub: str,
    states: list[tuple[int, int | None, str, list[tuple[PriceModel, int]]]],
    discounts: list[DiscountSpan] | None = None,
) -> SubTimeline:
    tl = SubTimeline("acct_test", cust, sub, "usd", discounts=discounts or [])
    for i, (start, end, status, items) in enumerate(states):
        tl.states.append(
            SubState(
                start,
                end,
                status,
                tuple(ItemState(f"si_{sub}_{i}_{j}", p, q) for j, (p, q) in enumerate(items)),
            )
        )
    return tl


def truth(tls: list[SubTimeline], first: date, last: date, **kw: Any) -> GroundTruth:
    return compute_ground_truth(
        tls, fx_rates={}, reporting_currency="usd", first_day=first, last_day=last, **kw
    )


def test_e1_normalization_company_mrr_exact() -> None:
    start = ts("2024-01-01T00:00:00Z")
    spec = {
        "A": price("p_a", 5000),
        "B": price("p_b", 120000, "year"),
        "C": price("p_c", 30000, "month", 3),
        "D": price("p_d", 1000, "week"),
        "E": price("p_e", 3000, "week", 2),
        "F": price("p_f", 100, "day"),
        "G": price("p_g", 240000, "year", 2),
    }
    tls = [
        timeline(f"cus_{c}", f"sub_{c}", [(start, None, "active", [(p, 1)])])
        for c, p in spec.items()
    ]
    gt = truth(tls, date(2024, 3, 1), date(2024, 3, 31))
    day = date(2024, 3, 15)
    assert gt.company_mrr(day) == 48875 * CENT == 488_750_000
    assert 12 * gt.company_mrr(day) == 586500 * CENT
    assert sum(1 for c in spec if gt.daily_mrr("acct_test", f"cus_{c}", day) > 0) == 7
    assert gt.daily_mrr("acct_test", "cus_D", day) == Fraction(1000 * CENT * 52, 12)  # not integral
    assert round_half_away(gt.daily_mrr("acct_test", "cus_D", day), 100) == 433333 * 100  # 4333.33
    assert round_half_away(gt.daily_mrr("acct_test", "cus_F", day), 100) == 304167 * 100  # 3041.67
    # Three yearly 10000 customers: 833 each when rounded, but the company total is exactly 2500.
    yearly = [
        timeline(
            f"cus_y{i}", f"sub_y{i}", [(start, None, "active", [(price("p_y", 10000, "year"), 1)])]
        )
        for i in range(3)
    ]
    gy = truth(yearly, date(2024, 3, 1), date(2024, 3, 31))
    assert [
        round_half_away(gy.daily_mrr("acct_test", f"cus_y{i}", day), CENT) // CENT for i in range(3)
    ] == [833] * 3
    assert gy.company_mrr(day) == 2500 * CENT


def test_e2_tiers_and_tax() -> None:
    tiers = (
        Tier(5, Decimal(1000)),
        Tier(10, Decimal(800)),
        Tier(None, Decimal(500), Decimal(2000)),
    )
    grad = PriceModel(
        "g", "usd", "month", billing_scheme="tiered", tiers_mode="graduated", tiers=tiers
    )
    vol = PriceModel("v", "usd", "month", billing_scheme="tiered", tiers_mode="volume", tiers=tiers)
    assert item_period_amount_minor(grad, 12) == 12000
    assert item_period_amount_minor(vol, 12) == 8000
    assert item_period_amount_minor(grad, 10) == 9000
    assert item_period_amount_minor(vol, 10) == 8000
    seat = price("s", 1500)
    metered = price("m", 7, usage_type="metered")
    assert item_mrr_micros(seat, 12) + item_mrr_micros(metered, 9999) == 18000 * CENT
    incl = price("i", 12000, tax_behavior="inclusive", inclusive_tax_percent=Decimal(20))
    assert item_mrr_micros(incl, 1) == 10000 * CENT
    pack = price("t", 10000, transform_divide_by=5, transform_round="up")
    assert item_period_amount_minor(pack, 11) == 30000
    assert (
        item_period_amount_minor(
            PriceModel(
                "t2",
                "usd",
                "month",
                unit_amount_decimal=Decimal(10000),
                transform_divide_by=5,
                transform_round="down",
            ),
            11,
        )
        == 20000
    )
    jpy = PriceModel("j", "jpy", "month", unit_amount_decimal=Decimal(980))
    assert item_mrr_micros(jpy, 2) == 1960 * 1_000_000  # whole yen, never divided by 100


def _movements(gt: GroundTruth) -> list[tuple[str, str, int]]:
    return [(m[2].isoformat(), m[3], m[4] / CENT) for m in gt.movements]


def test_e3_lifecycle() -> None:
    p10 = price("p10", 10000)
    s1 = timeline(
        "C1",
        "S1",
        [
            (ts("2024-01-10T09:00:00Z"), ts("2024-01-20T15:00:00Z"), "active", [(p10, 1)]),
            (ts("2024-01-20T15:00:00Z"), ts("2024-02-05T10:00:00Z"), "active", [(p10, 3)]),
            (ts("2024-02-05T10:00:00Z"), ts("2024-02-12T08:00:00Z"), "active", [(p10, 2)]),
            (ts("2024-02-12T08:00:00Z"), None, "canceled", [(p10, 2)]),
        ],
    )
    s2 = timeline(
        "C1", "S2", [(ts("2024-03-01T12:00:00Z"), None, "active", [(price("p15", 15000), 1)])]
    )
    gt = truth([s1, s2], date(2024, 1, 1), date(2024, 3, 31))
    expected = {
        date(2024, 1, 9): 0,
        date(2024, 1, 10): 10000,
        date(2024, 1, 19): 10000,
        date(2024, 1, 20): 30000,
        date(2024, 2, 4): 30000,
        date(2024, 2, 5): 20000,
        date(2024, 2, 11): 20000,
        date(2024, 2, 12): 0,
        date(2024, 2, 29): 0,
        date(2024, 3, 1): 15000,
        date(2024, 3, 31): 15000,
    }
    for d, cents in expected.items():
        assert gt.daily_mrr("acct_test", "C1", d) == cents * CENT, d
    assert _movements(gt) == [
        ("2024-01-10", "new", 10000),
        ("2024-01-20", "expansion", 20000),
        ("2024-02-05", "contraction", 10000),
        ("2024-02-12", "churn", 20000),
        ("2024-03-01", "reactivation", 15000),
    ]
    assert [m[5] for m in gt.movements if m[3] == "churn"] == ["voluntary"]


def test_e4_netting_and_end_at_midnight() -> None:
    s3 = timeline(
        "C2",
        "S3",
        [
            (
                ts("2024-04-01T00:00:00Z"),
                ts("2025-04-01T00:00:00Z"),
                "active",
                [(price("y", 240000, "year"), 1)],
            ),
            (ts("2025-04-01T00:00:00Z"), None, "canceled", [(price("y", 240000, "year"), 1)]),
        ],
    )
    m6 = price("m", 6000)
    s4 = timeline(
        "C2",
        "S4",
        [
            (ts("2024-04-01T00:30:00Z"), ts("2024-04-15T12:00:00Z"), "active", [(m6, 1)]),
            (ts("2024-04-15T12:00:00Z"), None, "canceled", [(m6, 1)]),
        ],
    )
    gt = truth([s3, s4], date(2024, 3, 1), date(2025, 4, 30))
    assert gt.daily_mrr("acct_test", "C2", date(2024, 4, 1)) == 26000 * CENT
    assert gt.daily_mrr("acct_test", "C2", date(2024, 4, 15)) == 20000 * CENT
    assert gt.daily_mrr("acct_test", "C2", date(2025, 3, 31)) == 20000 * CENT
    assert gt.daily_mrr("acct_test", "C2", date(2025, 4, 1)) == 0
    assert _movements(gt) == [
        ("2024-04-01", "new", 26000),
        ("2024-04-15", "contraction", 6000),
        ("2025-04-01", "churn", 20000),
    ]


def test_discounts_trial_pause_and_delinquent_churn() -> None:
    p = price("p", 10000)
    t0 = ts("2024-01-01T10:00:00Z")
    tl = timeline(
        "C3",
        "S5",
        [
            (t0, ts("2024-01-15T10:00:00Z"), "trialing", [(p, 1)]),
            (ts("2024-01-15T10:00:00Z"), ts("2024-02-20T10:00:00Z"), "active", [(p, 1)]),
            (ts("2024-02-20T10:00:00Z"), ts("2024-03-01T10:00:00Z"), "past_due", [(p, 1)]),
            (ts("2024-03-01T10:00:00Z"), None, "unpaid", [(p, 1)]),
        ],
        discounts=[
            DiscountSpan(
                "d1",
                CouponModel("c25", "repeating", percent_off=Decimal(25)),
                t0,
                ts("2024-02-01T10:00:00Z"),
            ),
            DiscountSpan(
                "d2",
                CouponModel("c5", "forever", amount_off=500, currency="usd"),
                ts("2024-02-10T00:00:00Z"),
                None,
            ),
        ],
    )
    tl.states[-1] = SubState(
        tl.states[-1].start, None, "unpaid", tl.states[-1].items, delinquent=True
    )
    gt = truth([tl], date(2024, 1, 1), date(2024, 3, 31))
    assert gt.daily_mrr("acct_test", "C3", date(2024, 1, 14)) == 0  # trial never counts
    assert gt.daily_mrr("acct_test", "C3", date(2024, 1, 15)) == 7500 * CENT
    assert gt.daily_mrr("acct_test", "C3", date(2024, 2, 1)) == 10000 * CENT
    assert gt.daily_mrr("acct_test", "C3", date(2024, 2, 10)) == 9500 * CENT
    assert gt.daily_mrr("acct_test", "C3", date(2024, 2, 25)) == 9500 * CENT  # past_due counts
    assert gt.daily_mrr("acct_test", "C3", date(2024, 3, 1)) == 0
    churn = [m for m in gt.movements if m[3] == "churn"]
    assert [(m[2], m[4], m[5]) for m in churn] == [(date(2024, 3, 1), 9500 * CENT, "delinquent")]
    paused = SubState(t0, None, "active", (ItemState("si", p, 1),), paused=True)
    assert sub_mrr_at(SubTimeline("a", "c", "s", "usd", [paused]), t0 + 10) == 0


def test_fx_conversion_and_movements() -> None:
    eur = PriceModel("pe", "eur", "month", unit_amount_decimal=Decimal(10000))
    tl = SubTimeline(
        "acct_test",
        "C4",
        "S6",
        "eur",
        [
            SubState(ts("2024-05-02T08:00:00Z"), None, "active", (ItemState("si", eur, 1),)),
        ],
    )
    rates = {("eur", date(2024, 5, d)): 1 + Decimal(d) / 100 for d in range(1, 6)}
    gt = compute_ground_truth(
        [tl],
        fx_rates=rates,
        reporting_currency="usd",
        first_day=date(2024, 5, 1),
        last_day=date(2024, 5, 4),
    )
    assert gt.customer_mrr_reporting(
        "acct_test", "C4", date(2024, 5, 3)
    ) == 10000 * CENT * Fraction("1.03")
    assert [(m[2].day, m[3], m[4]) for m in gt.movements] == [
        (2, "new", 10000 * CENT * Fraction("1.02")),
        (3, "fx", 10000 * CENT * Fraction("0.01")),
        (4, "fx", 10000 * CENT * Fraction("0.01")),
    ]


# --------------------------------------------------------------------------- invariants


def _signed(totals: dict[str, Fraction]) -> Fraction:
    sign = {"new": 1, "expansion": 1, "reactivation": 1, "contraction": -1, "churn": -1, "fx": 1}
    return sum((sign[k] * v for k, v in totals.items()), Fraction(0))


def test_movement_identity_holds_every_day(sim: Simulation) -> None:
    gt = sim.ground_truth
    prev = Fraction(0)
    d = gt.first_day
    days = 0
    while d <= gt.last_day:
        cur = gt.company_mrr(d)
        assert cur == prev + _signed(gt.movement_totals(d)), d
        prev = cur
        d += timedelta(days=1)
        days += 1
    assert days == 365 and prev > 0
    # The per-customer fx rows add up to the per-currency shortcut used above.
    fx_rows: dict[date, Fraction] = defaultdict(Fraction)
    for m in gt.movements:
        if m[3] == "fx":
            fx_rows[m[2]] += m[4]
    assert len(fx_rows) > 300
    d = gt.first_day
    while d <= gt.last_day:
        assert gt.fx_total(d) == fx_rows.get(d, 0), d
        d += timedelta(days=1)


def test_change_day_loop_equals_brute_force_day_loop(sim: Simulation) -> None:
    gt = sim.ground_truth
    brute = compute_ground_truth(
        gt.timelines.values(),
        fx_rates=gt.fx_rates,
        reporting_currency="usd",
        first_day=gt.first_day,
        last_day=gt.last_day,
        brute_force=True,
    )
    stripe_rows = [r for r in gt.mrr_changes if r[0] != ""]
    assert brute.mrr_changes == stripe_rows
    assert brute.churn_tags == {k: v for k, v in gt.churn_tags.items() if k[0] != ""}


def test_invoice_lines_reconcile_with_truth(sim: Simulation) -> None:
    """Each non-proration line group, normalized, equals the subscription's MRR at period start."""
    gt = sim.ground_truth
    checked = 0
    for inv in objs(sim, "invoice"):
        groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        for ln in inv["lines"]["data"]:
            det = ln["parent"]["subscription_item_details"]
            if not det["proration"]:
                groups[(det["subscription"], ln["period"]["start"])].append(ln)
        for (sid, start), lines in groups.items():
            tl = gt.timelines[sid]
            state = state_at(tl, start)
            if state is None or state.status not in COUNTING_STATUSES or state.paused:
                continue
            prices = {i.item_id: i.price for i in state.items}
            licensed = [
                ln
                for ln in lines
                if prices[ln["parent"]["subscription_item_details"]["subscription_item"]].usage_type
                == "licensed"
            ]
            if not licensed:
                continue  # metered usage billed in arrears
            total = Fraction(0)
            for ln in licensed:
                p = prices[ln["parent"]["subscription_item_details"]["subscription_item"]]
                net = ln["amount"] - sum(d["amount"] for d in ln["discount_amounts"])
                net -= sum(t["amount"] for t in ln["taxes"] if t["tax_behavior"] == "inclusive")
                total += (
                    net
                    * micros_per_minor(inv["currency"])
                    * monthly_factor(p.interval, p.interval_count)
                )
            assert total == sub_mrr_at(tl, start), (inv["id"], sid)
            checked += 1
    assert checked > 300


def test_objects_agree_with_the_timeline(sim: Simulation) -> None:
    clock = sim.fixture["clock"]
    for sub in objs(sim, "subscription"):
        tl = sim.timelines[sub["id"]]
        assert tl.states[0].start == sub["created"]
        last = tl.states[-1]
        assert last.end is None and last.status == sub["status"]
        assert {
            (i.item_id, i.quantity) for i in last.items if i.price.usage_type == "licensed"
        } == {
            (si["id"], si["quantity"]) for si in sub["items"]["data"] if si["quantity"] is not None
        }
        assert last.paused == (sub["pause_collection"] is not None)
        if sub["status"] in ("canceled", "incomplete_expired"):
            assert sub["ended_at"] == last.start <= clock
        if sub["trial_end"] and sub["status"] != "trialing":
            assert state_at(tl, sub["trial_end"] - 1).status == "trialing"
        for a, b in zip(tl.states, tl.states[1:], strict=False):
            assert a.end == b.start
    for e in objs(sim, "event"):
        if e["type"].startswith("customer.subscription."):
            o = e["data"]["object"]
            assert state_at(sim.timelines[o["id"]], e["created"]).status == o["status"]
    invoices = {i["id"]: i for i in objs(sim, "invoice")}
    for inv in invoices.values():
        tr = inv["status_transitions"]
        if inv["status"] != "draft":
            assert inv["created"] <= tr["finalized_at"]
        if inv["status"] == "paid":
            assert tr["finalized_at"] <= tr["paid_at"] <= clock and inv["amount_remaining"] == 0
        excl = sum(t["amount"] for t in inv["total_taxes"] if t["tax_behavior"] == "exclusive")
        disc = sum(d["amount"] for d in inv["total_discount_amounts"])
        assert inv["total"] == inv["subtotal"] - disc + excl >= 0
        assert inv["amount_due"] == inv["total"] - inv["pre_payment_credit_notes_amount"]
    charges = {c["id"]: c for c in objs(sim, "charge")}
    paid_by: dict[str, int] = defaultdict(int)
    for p in objs(sim, "invoice_payment"):
        ch = charges[p["payment"]["charge"]]
        assert (p["status"] == "paid") == (ch["status"] == "succeeded")
        assert ch["created"] >= invoices[p["invoice"]]["status_transitions"]["finalized_at"]
        if p["status"] == "paid":
            paid_by[p["invoice"]] += ch["amount"]
    for inv in invoices.values():
        if inv["amount_paid"]:
            assert paid_by[inv["id"]] == inv["amount_paid"]
    refunded: dict[str, int] = defaultdict(int)
    for r in objs(sim, "refund"):
        refunded[r["charge"]] += r["amount"]
    for cid, amount in refunded.items():
        assert charges[cid]["amount_refunded"] == amount <= charges[cid]["amount"]
    bts = {b["id"]: b for b in objs(sim, "balance_transaction")}
    for c in charges.values():
        if c["status"] == "succeeded":
            bt = bts[c["balance_transaction"]]
            assert bt["amount"] == c["amount"] and bt["net"] == c["amount"] - bt["fee"]
        else:
            assert c["balance_transaction"] is None


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 60 * 24),  # minutes between changes (can be 0 days: same-day netting)
            st.sampled_from(["active", "past_due", "trialing", "unpaid", "canceled"]),
            st.integers(1, 30),
            st.sampled_from([("month", 1), ("year", 1), ("week", 1), ("month", 3), ("day", 1)]),
            st.booleans(),
        ),
        min_size=1,
        max_size=12,
    ),
    st.sampled_from(["UTC", "America/New_York", "Asia/Tokyo"]),
)
def test_random_timelines_identity_and_brute_force(changes: list[Any], tz: str) -> None:
    t = ts("2024-03-05T13:00:00Z")
    tls = []
    for n, cur in enumerate(["usd", "eur"]):
        tl = SubTimeline("acct_h", f"cus_{n}", f"sub_{n}", cur)
        t_n = t + n * 7_919
        for minutes, status, qty, (interval, count), paused in changes:
            p = PriceModel(f"p_{interval}", cur, interval, count, unit_amount_decimal=Decimal(1999))
            if tl.states:
                tl.states[-1] = dataclasses.replace(tl.states[-1], end=t_n)
            tl.states.append(SubState(t_n, None, status, (ItemState("si", p, qty),), paused=paused))
            t_n += minutes * 60 * 37
        tls.append(tl)
    first, last = date(2024, 3, 1), date(2024, 12, 31)
    rates = {}
    d = first - timedelta(days=1)
    while d <= last:
        rates[("eur", d)] = Decimal("1.08") + Decimal(d.toordinal() % 17) / 1000
        d += timedelta(days=1)
    fast = compute_ground_truth(
        tls, fx_rates=rates, reporting_currency="usd", first_day=first, last_day=last, tz=tz
    )
    slow = compute_ground_truth(
        tls,
        fx_rates=rates,
        reporting_currency="usd",
        first_day=first,
        last_day=last,
        tz=tz,
        brute_force=True,
    )
    assert fast.mrr_changes == slow.mrr_changes
    prev = Fraction(0)
    d = first
    while d <= last:
        cur = fast.company_mrr(d)
        assert cur == prev + _signed(fast.movement_totals(d))
        prev = cur
        d += timedelta(days=1)


def test_other_time_zone_and_reporting_currency() -> None:
    s = simulate(
        seed=3, customers=25, months=3, end=END, tz="America/New_York", reporting_currency="eur"
    )
    gt = s.ground_truth
    assert gt.rate("eur", END) == 1 and ("usd", END) in gt.fx_rates
    assert s.fixture["clock"] == day_start_ts(END + timedelta(days=1), "America/New_York") - 1
    prev = Fraction(0)
    d = gt.first_day
    while d <= gt.last_day:
        cur = gt.company_mrr(d)
        assert cur == prev + _signed(gt.movement_totals(d))
        prev = cur
        d += timedelta(days=1)
    assert prev > 0


# --------------------------------------------------------------------------- files


def test_write_landing_csvs(sim: Simulation, tmp_path: Path) -> None:
    paths = sim.write_landing(tmp_path / "landing")
    assert set(paths) == set(LANDING_HEADERS)
    rows: dict[str, list[dict[str, str]]] = {}
    for kind, path in paths.items():
        assert path.name.startswith(f"{kind}_") and path.suffix == ".csv"
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            assert reader.fieldnames == LANDING_HEADERS[kind]
            rows[kind] = list(reader)
        assert rows[kind], kind
        ids = [r.get("external_id") for r in rows[kind] if "external_id" in r]
        assert len(ids) == len(set(ids))
    assert LANDING_HEADERS["costs"] == [
        "external_id",
        "name",
        "amount",
        "currency",
        "category",
        "is_recurring",
        "note",
        "date",
        "customer_tag",
    ]
    assert {r["category"] for r in rows["costs"]} == {
        "INFRASTRUCTURE",
        "THIRD_PARTY",
        "MARKETING",
        "TOOLS",
        "OTHER",
    }
    assert {r["is_recurring"] for r in rows["costs"]} == {"true", "false"}
    assert all(Decimal(r["amount"]) > 0 and len(r["date"]) == 10 for r in rows["costs"])
    assert any(r["customer_tag"] for r in rows["costs"]) and any(
        not r["customer_tag"] for r in rows["costs"]
    )
    assert {r["subtype"] for r in rows["expenses"]} == {"recurring_expense", "one_time_expense"}
    assert all(int(r["amount_cents"]) > 0 for r in rows["expenses"])
    customers = {c["id"]: c for c in objs(sim, "customer")}
    tags = Counter("id" if r["customer_tag"] in customers else "other" for r in rows["usage_costs"])
    assert tags["id"] > tags["other"] > 0
    slugs = {c["name"].lower().replace(" ", "-") for c in customers.values()}
    assert any(r["customer_tag"] in slugs for r in rows["usage_costs"])
    assert all(
        int(r["cost_microdollars"]) > 0 and int(r["request_count"]) > 0 for r in rows["usage_costs"]
    )
    types = {r["type"] for r in rows["revenue"]}
    assert types == {
        "subscription",
        "one_time",
        "lifetime",
        "advertising",
        "enterprise",
        "affiliate",
        "refund",
        "other",
    }
    assert all(
        (r["subtype"] == "recurring") == (r["type"] == "subscription") for r in rows["revenue"]
    )
    fx = rows["fx_rates"]
    gt = sim.ground_truth
    for r in fx:
        assert r["base"] == "USD"
        assert (
            Decimal(r["rate"])
            == gt.fx_rates[(r["currency"].lower(), date.fromisoformat(r["date"]))]
        )
    per_day = Counter(r["date"] for r in fx)
    assert set(per_day.values()) == {3}
    assert len(per_day) >= (gt.last_day - gt.first_day).days + 1


def test_manual_recurring_revenue_in_truth(sim: Simulation) -> None:
    gt = sim.ground_truth
    retainers = [r for r in sim.landing["revenue"] if r["type"] == "subscription"]
    first = date.fromisoformat(retainers[0]["date"])
    assert gt.daily_mrr("", "manual", first) == 2500 * 1_000_000
    assert gt.daily_mrr("", "manual", first - timedelta(days=1)) == 0
    assert gt.company_mrr(first) - gt.company_mrr(first, include_manual=False) == 2500 * 1_000_000


def test_write_fixture_and_ground_truth(sim: Simulation, tmp_path: Path) -> None:
    fx = json.loads(sim.write_fixture(tmp_path / "fixture.json").read_text())
    assert fx == json.loads(json.dumps(sim.fixture))
    doc = json.loads(sim.write_ground_truth(tmp_path / "truth.json").read_text())
    gt = sim.ground_truth
    assert len(doc["mrr_changes"]) == len(gt.mrr_changes)
    for row, (a, c, d, cur, v) in zip(doc["mrr_changes"], gt.mrr_changes, strict=True):
        assert row == [a, c, d.isoformat(), cur, row[4]] and Fraction(row[4]) == v
    assert any("/" in row[4] for row in doc["mrr_changes"]) or all(
        Fraction(v).denominator == 1 for *_, v in gt.mrr_changes
    )
    last = doc["company_mrr"][-1]
    assert last[0] == END.isoformat() and Fraction(last[1]) == gt.company_mrr(END)
    assert len(doc["movements"]) == len(gt.movements)


def test_clock_and_created_timestamps(sim: Simulation) -> None:
    clock = sim.fixture["clock"]
    start = day_start_ts(sim.first_day)
    assert datetime.fromtimestamp(clock + 1, UTC).date() == END + timedelta(days=1)
    for o in sim.objects():
        if o["object"] in (
            "customer",
            "subscription",
            "invoice",
            "charge",
            "refund",
            "credit_note",
        ):
            assert start <= o["created"] <= clock, o["id"]


def test_stand_in_serves_the_simulated_history(sim: Simulation) -> None:
    """End to end with the real SDK: status=all lists, sub-lists past 10 lines, events, payments."""
    from finance_pipeline_dev.standin.server import StandIn
    from finance_pipeline_dev.standin.store import Store

    acct = sim.accounts[0]
    key = next(iter(sim.fixture["accounts"][acct]["keys"]))
    standin = StandIn(Store.load(sim.fixture))
    standin.start()
    try:
        client = standin.client(key)
        subs = list(
            client.v1.subscriptions.list(params={"status": "all", "limit": 100}).auto_paging_iter()
        )
        assert len(subs) == len(objs(sim, "subscription"))
        big = max(objs(sim, "invoice"), key=lambda i: len(i["lines"]["data"]))
        inv = client.v1.invoices.retrieve(big["id"])
        assert len(inv.lines.data) == 10 and inv.lines.has_more
        lines = list(
            client.v1.invoices.line_items.list(big["id"], params={"limit": 100}).auto_paging_iter()
        )
        assert [ln.id for ln in lines] == [ln["id"] for ln in big["lines"]["data"]]
        events = list(client.v1.events.list(params={"limit": 100}).auto_paging_iter())
        assert len(events) == len(objs(sim, "event"))
    finally:
        standin.stop()
