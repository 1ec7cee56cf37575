"""GET /mrr's 30-day logo churn read from the window's changes (retention_io.logo_churn_counts)
gives lib.retention's answer on the full change history (docs/metrics.md §6)."""

from __future__ import annotations

from datetime import date, timedelta
from fractions import Fraction
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finance_pipeline.core.history_io import history_rows
from finance_pipeline.lib.cfo_daily import as_date
from finance_pipeline.lib.mrr import PriceSpec, SubscriptionItem, SubscriptionState
from finance_pipeline.lib.mrr_timeline import MrrChange
from finance_pipeline.lib.retention import churn_rate_percent, customer_balances, logo_churn_rate
from finance_pipeline.lib.timeutil import day_start_ts
from finance_pipeline.metrics.mrr_assets import mrr_marts
from finance_pipeline.metrics.mrr_queries import mrr_metrics
from finance_pipeline.metrics.retention_io import logo_churn_counts, logo_churn_counts_from_history
from finance_pipeline.tenancy import create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse
from finance_pipeline_tests.dagster_runs import materialize_days

FIRST, LAST = date(2026, 1, 1), date(2026, 4, 30)
USD = PriceSpec(currency="usd", unit_amount_decimal="10000", price_id="price_usd")
EUR = PriceSpec(currency="eur", unit_amount_decimal="9000", price_id="price_eur")


def _s(day: date) -> int:
    return day_start_ts(day)


# (customer, subscription, price, valid_from, valid_to): in force on D iff from < S(D+1) <= to.
SUBSCRIPTIONS: list[tuple[str, str, PriceSpec, date, date | None]] = [
    ("cus_steady", "a", USD, date(2026, 1, 5), None),
    # Pays in two currencies; drops the euro one on March 20, still paying in dollars.
    ("cus_multi", "b1", USD, date(2026, 1, 6), None),
    ("cus_multi", "b2", EUR, date(2026, 1, 6), date(2026, 3, 20)),
    # Churns on March 10 and comes back on March 25: retained in any window spanning both.
    ("cus_back", "c1", USD, date(2026, 1, 7), date(2026, 3, 10)),
    ("cus_back", "c2", USD, date(2026, 3, 25), None),
    # Churns on March 15 for good.
    ("cus_gone", "d", EUR, date(2026, 1, 8), date(2026, 3, 15)),
    # Both currencies end on April 5, on the same day: churned.
    ("cus_both", "e1", USD, date(2026, 2, 1), date(2026, 4, 5)),
    ("cus_both", "e2", EUR, date(2026, 2, 1), date(2026, 4, 5)),
    # New in March: never in a cohort before it.
    ("cus_new", "f", USD, date(2026, 3, 12), None),
]


def _history(ws: str) -> list[dict[str, Any]]:
    return history_rows(
        [
            SubscriptionState(
                workspace_id=ws,
                subscription_id=f"sub_{sub}",
                customer_id=customer,
                currency=price.currency,
                valid_from=_s(start),
                valid_to=None if end is None else _s(end),
                status="active",
                items=(SubscriptionItem(f"si_{sub}", price, 1),),
            )
            for customer, sub, price, start, end in SUBSCRIPTIONS
        ]
    )


def load_mrr_changes(wh: Warehouse, workspace_id: str, end: date) -> list[MrrChange]:
    """Every stored change row up to `end`, as lib.retention takes them (the full history)."""
    return [
        MrrChange(
            workspace_id=workspace_id,
            customer_id=r["customer_id"],
            currency=r["currency"],
            day=as_date(r["day"]),
            mrr=Fraction(r["mrr_exact"]),
            cmrr=Fraction(r["cmrr_exact"]),
            active_subscriptions=int(r["active_subscriptions"]),
            by_plan={},
            churn_reason=r["churn_reason"],
        )
        for r in wh.rows(
            "SELECT * FROM mart.mrr_changes WHERE workspace_id = :w AND day <= :b ORDER BY day",
            w=workspace_id,
            b=end,
        )
    ]


def test_window_churn_equals_the_full_history_on_every_day(warehouse: Warehouse) -> None:
    wh = warehouse
    create_organization(wh, "o", org_id="o")
    create_workspace(wh, "o", "one", workspace_id="ws1")
    days = [FIRST + timedelta(days=i) for i in range((LAST - FIRST).days + 1)]
    with wh.begin() as db:
        db.execute(sa.insert(wh.table("core.subscription_history")), _history("ws1"))
        db.execute(
            sa.insert(wh.table("core.fx_rates")),
            [{"base": "usd", "currency": "eur", "date": d, "rate": "1.1"} for d in days],
        )
    assert materialize_days([mrr_marts], wh, FIRST, LAST).success
    history = load_mrr_changes(wh, "ws1", LAST)
    # Every day whose start-1 is materialized reads the stored cohort and the window's changes.
    for day in days[30:]:
        start = day - timedelta(days=29)
        cohort, churned = logo_churn_counts(wh, "ws1", start, day)
        assert (cohort, churned) == logo_churn_counts_from_history(wh, "ws1", start, day)
        assert (Fraction(churned, cohort) if cohort else None) == logo_churn_rate(
            history, start, day
        ), day
        assert mrr_metrics(wh, "ws1", day)["churn_rate_percent"] == churn_rate_percent(history, day)
    # The worked cases. March 30 (cohort of February 28: steady, multi, back, gone, both):
    # cus_back churned on March 10 and came back on March 25, so it is retained, cus_multi still
    # pays dollars, cus_gone churned, cus_new is not in the cohort: 1 of 5.
    assert logo_churn_counts(wh, "ws1", date(2026, 3, 1), date(2026, 3, 30)) == (5, 1)
    # April 9 (cohort of March 10, without cus_back, whose last day was March 9): cus_gone and
    # cus_both (both currencies ended on April 5) churned: 2 of 4.
    assert logo_churn_counts(wh, "ws1", date(2026, 3, 11), date(2026, 4, 9)) == (4, 2)


# A random change history: a few customers in one or two currencies, each row setting the
# customer's MRR in that currency from that day (zero: no MRR), over 20 days.
_DAY0 = date(2026, 1, 1)
_rows = st.lists(
    st.tuples(
        st.sampled_from(["c1", "c2", "c3", "c4", "c5"]),
        st.sampled_from(["usd", "eur"]),
        st.integers(0, 19),
        st.sampled_from(["0", "0", "100", "250/3", "7"]),
    ),
    max_size=30,
    unique_by=lambda r: (r[0], r[1], r[2]),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(rows=_rows, start_at=st.integers(1, 19), length=st.integers(1, 10))
def test_window_churn_equals_lib_on_random_histories(
    sqlite_warehouse: Warehouse,
    rows: list[tuple[str, str, int, str]],
    start_at: int,
    length: int,
) -> None:
    wh = sqlite_warehouse
    start = _DAY0 + timedelta(days=start_at)
    end = min(start + timedelta(days=length - 1), _DAY0 + timedelta(days=19))
    changes = [
        {
            "workspace_id": "w",
            "customer_id": c,
            "currency": cur,
            "day": _DAY0 + timedelta(days=d),
            "mrr_micros": round(Fraction(v)),
            "cmrr_micros": round(Fraction(v)),
            "active_subscriptions": int(v != "0"),
            "mrr_exact": v,
            "cmrr_exact": v,
            "by_plan_json": {},
            "churn_reason": None,
        }
        for c, cur, d, v in rows
    ]
    with wh.begin() as db:
        db.execute(sa.delete(wh.table("mart.mrr_changes")))
        db.execute(sa.delete(wh.table("mart.mrr_daily")))
        if changes:
            db.execute(sa.insert(wh.table("mart.mrr_changes")), changes)
    history = load_mrr_changes(wh, "w", end)
    before = start - timedelta(days=1)
    # The MRR run's count on start-1: customers with a positive balance in some currency.
    paying = sum(
        1
        for amounts in customer_balances(history, before).values()
        if any(v > 0 for v in amounts.values())
    )
    with wh.begin() as db:
        db.execute(sa.insert(wh.table("mart.mrr_daily")), [_daily_row(before, paying)])
    cohort, churned = logo_churn_counts(wh, "w", start, end)
    assert (Fraction(churned, cohort) if cohort else None) == logo_churn_rate(history, start, end)
    assert (cohort, churned) == logo_churn_counts_from_history(wh, "w", start, end)


def _daily_row(day: date, paying: int) -> dict[str, Any]:
    money = dict.fromkeys(
        ["mrr", "cmrr", "arr", "new", "expansion", "reactivation", "contraction", "churn", "fx"], 0
    )
    return {
        "workspace_id": "w",
        "day": day,
        "currency": "usd",
        **{f"{k}_micros": v for k, v in money.items()},
        "active_subscriptions": 0,
        "paying_customers": paying,
        "new_customers": 0,
        "reactivated_customers": 0,
        "churned_customers": 0,
        "delinquent_churned_customers": 0,
        "skipped_currencies_json": [],
        "fx_by_currency_json": {},
        "exact_json": {},
    }


def test_a_start_without_a_stored_day_reads_the_history(sqlite_warehouse: Warehouse) -> None:
    wh = sqlite_warehouse
    rows = [("a", date(2026, 1, 1), 5), ("b", date(2026, 1, 1), 5), ("b", date(2026, 1, 10), 0)]
    with wh.begin() as db:
        db.execute(
            sa.insert(wh.table("mart.mrr_changes")),
            [
                {
                    "workspace_id": "w",
                    "customer_id": c,
                    "currency": "usd",
                    "day": d,
                    "mrr_micros": v,
                    "cmrr_micros": v,
                    "active_subscriptions": int(v > 0),
                    "mrr_exact": str(v),
                    "cmrr_exact": str(v),
                    "by_plan_json": {},
                    "churn_reason": None,
                }
                for c, d, v in rows
            ],
        )
    # No mart.mrr_daily row for January 4: the cohort {a, b} comes from the change rows.
    assert logo_churn_counts(wh, "w", date(2026, 1, 5), date(2026, 1, 20)) == (2, 1)
