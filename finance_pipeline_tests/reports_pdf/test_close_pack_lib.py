"""The close pack's pure computations (docs/metrics.md §6) on hand-made inputs, exactly."""

from __future__ import annotations

from datetime import date, timedelta
from fractions import Fraction

from finance_pipeline.lib.close_pack import (
    cohort_retention,
    customer_churn_rate,
    month_end,
    shift_month,
    subscriber_churn_30d,
    trailing_months,
)

F = Fraction


def test_cohorts_group_by_first_paid_month_and_keep_net_expansion() -> None:
    months = ["2026-01", "2026-02", "2026-03"]
    first_paid = {"a": "2026-01", "b": "2026-01", "c": "2026-02", "old": "2025-12"}
    mrr = {
        "a": {"2026-01": F(100), "2026-02": F(150), "2026-03": F(150)},
        "b": {"2026-01": F(200), "2026-02": F(0), "2026-03": F(100)},  # churned, came back
        "c": {"2026-02": F(1, 3), "2026-03": F(2, 3)},
        "old": {"2026-01": F(999), "2026-02": F(999), "2026-03": F(999)},
    }
    rows = cohort_retention(first_paid, mrr, months)
    assert [(r.month, r.customers) for r in rows] == [("2026-01", 2), ("2026-02", 1)]
    jan, feb = rows
    assert jan.mrr == (F(300), F(150), F(250))
    assert jan.retention == (F(1), F(1, 2), F(5, 6))
    assert feb.starting_mrr == F(1, 3) and feb.retention == (F(1), F(2))  # expansion: 200 %


def test_a_cohort_without_month_end_mrr_has_no_rate() -> None:
    # Paid mid-month and churned before its end: a cohort of one with nothing to retain.
    [row] = cohort_retention({"x": "2026-01"}, {}, ["2026-01", "2026-02"])
    assert row.starting_mrr == 0 and row.retention == (None, None)


def test_chartmogul_rate_counts_every_churn_event() -> None:
    assert customer_churn_rate(3, 40) == F(3, 40)
    assert customer_churn_rate(0, 0) is None


def test_stripe_subscriber_churn_counts_subscriptions_that_stay_stopped() -> None:
    day = date(2026, 10, 31)
    start = day - timedelta(days=30)
    stop = {
        "s_ok": None,  # counts throughout
        "s_gone": date(2026, 10, 20),  # stops in the window, stays stopped: churned
        "s_paused": date(2026, 10, 10),  # stops, counts again from Oct 15: not churned
        "s_new": None,  # starts in the window: not in the base
    }

    def counts(sub: str, d: date) -> bool:
        if sub == "s_new":
            return d >= date(2026, 10, 5)
        if sub == "s_paused":
            return not (date(2026, 10, 10) <= d < date(2026, 10, 15))
        return stop[sub] is None or d < stop[sub]

    churned, base, rate = subscriber_churn_30d(sorted(stop), counts, day)
    assert (churned, base, rate) == (1, 3, F(1, 3))
    assert counts("s_gone", start)  # the base is taken 30 days before `day`
    assert subscriber_churn_30d([], counts, day) == (0, 0, None)


def test_month_helpers() -> None:
    assert month_end("2024-02") == date(2024, 2, 29)
    assert month_end("2026-12") == date(2026, 12, 31)
    assert shift_month("2026-01", -1) == "2025-12" and shift_month("2026-11", 2) == "2027-01"
    assert trailing_months("2026-02", 3) == ["2025-12", "2026-01", "2026-02"]
