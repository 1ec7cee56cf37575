"""Customer change rows, movements, company roll-forward (docs/metrics.md §1, §4-5, §15 E3/E4).

The hypothesis tests compare the breakpoint engine with a brute-force day-by-day evaluation written
here, on random histories (three time zones across DST switches, random FX with gaps).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from finance_pipeline.lib import mrr_timeline
from finance_pipeline.lib.close_pack import (
    subscriber_churn_30d,
    subscriber_churn_30d_from_changes,
)
from finance_pipeline.lib.mrr import (
    DiscountSpec,
    PriceSpec,
    Settings,
    SubscriptionState,
    counts_at,
    subscription_value,
)
from finance_pipeline.lib.mrr_timeline import (
    MANUAL_CUSTOMER,
    ManualRecurring,
    Movement,
    MrrChange,
    company_daily,
    company_days,
    company_totals,
    customer_mrr_changes,
    customer_mrr_window,
    customers_with_mrr_before,
    daily_movements,
    period_movements,
    plan_daily,
    plan_days,
    plan_totals,
)
from finance_pipeline.lib.timeutil import day_start_ts, in_force_on

CENT = 10_000
ONE = timedelta(days=1)


def ts(text: str, tz: str = "UTC") -> int:
    """Local wall-clock time in `tz` -> Unix seconds."""
    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp())


def price(amount: int, interval: str = "month", currency: str = "usd", pid: str = "") -> PriceSpec:
    return PriceSpec(
        currency,
        str(amount),
        interval=interval,
        price_id=pid or f"price_{amount}",  # type: ignore[arg-type]
    )


def sub(
    sub_id: str,
    customer: str,
    start: int,
    end: int | None,
    p: PriceSpec,
    qty: int = 1,
    status: str = "active",
    **kw: object,
) -> SubscriptionState:
    return SubscriptionState(
        "ws",
        sub_id,
        customer,
        p.currency,
        start,
        end,
        status,
        (("si_" + sub_id, p, qty),),
        **kw,  # type: ignore[arg-type]
    )


def no_fx(currency: str, day: date) -> Fraction | None:
    return None


def day_range(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def run(
    states: list[SubscriptionState],
    first: date,
    last: date,
    cfg: Settings | None = None,
    manual: list[ManualRecurring] | None = None,
    fx=no_fx,  # type: ignore[no-untyped-def]
    reporting: str = "usd",
) -> tuple[list[MrrChange], list[Movement], dict[date, mrr_timeline.CompanyDay]]:
    changes = customer_mrr_changes(states, manual or [], cfg or Settings(), None, last)
    movements = daily_movements(changes, fx, reporting, end=last)
    days = company_daily(changes, movements, day_range(first, last), fx, reporting)
    assert all(d.identity_holds() for d in days)
    return changes, movements, {d.day: d for d in days}


def moves(movements: list[Movement]) -> list[tuple[str, str, int]]:
    """(day, kind, cents) for compact exact comparisons."""
    return [(m.day.isoformat(), m.kind, int(m.amount / CENT)) for m in movements]


# ---------------------------------------------------------------------------------------------
# §15 E3 / E4
# ---------------------------------------------------------------------------------------------


def test_e3_lifecycle_every_day_and_every_movement_metrics_15() -> None:
    """§15 E3: MRR on every day 01-09..03-10 and the five movements, exactly."""
    p1 = price(10000)
    a, b, c, cancel = (
        ts("2024-01-10T09:00:00"),
        ts("2024-01-20T15:00:00"),
        ts("2024-02-05T10:00:00"),
        ts("2024-02-12T08:00:00"),
    )
    states = [
        sub("S1", "C1", a, b, p1, 1, started_at=a),
        sub("S1", "C1", b, c, p1, 3, started_at=a),
        sub("S1", "C1", c, cancel, p1, 2, started_at=a),
        sub("S1", "C1", cancel, None, p1, 2, "canceled", started_at=a, ended_at=cancel),
        sub("S2", "C1", ts("2024-03-01T12:00:00"), None, price(15000)),
    ]
    changes, movements, days = run(states, date(2024, 1, 9), date(2024, 3, 10))

    def expected(d: date) -> int:
        if d < date(2024, 1, 10):
            return 0
        if d < date(2024, 1, 20):
            return 10000
        if d < date(2024, 2, 5):
            return 30000
        if d < date(2024, 2, 12):
            return 20000
        if d < date(2024, 3, 1):
            return 0
        return 15000

    assert {d: v.mrr for d, v in days.items()} == {d: expected(d) * CENT for d in days}
    assert moves(movements) == [
        ("2024-01-10", "new", 10000),
        ("2024-01-20", "expansion", 20000),
        ("2024-02-05", "contraction", 10000),
        ("2024-02-12", "churn", 20000),
        ("2024-03-01", "reactivation", 15000),
    ]
    assert [m.reason for m in movements if m.kind == "churn"] == ["voluntary"]
    assert [(r.day, r.mrr / CENT) for r in changes] == [
        (date(2024, 1, 10), 10000),
        (date(2024, 1, 20), 30000),
        (date(2024, 2, 5), 20000),
        (date(2024, 2, 12), 0),
        (date(2024, 3, 1), 15000),
    ]
    assert days[date(2024, 2, 12)].churned_customers == 1
    assert days[date(2024, 3, 1)].reactivated_customers == 1
    assert days[date(2024, 2, 20)].paying_customers == 0


def test_e4_several_subscriptions_same_day_netting_end_at_midnight_metrics_15() -> None:
    """§15 E4: one `new 26000` on 04-01; contraction (not churn) on 04-15; churn on 2025-04-01."""
    states = [
        sub(
            "S3", "C2", ts("2024-04-01T00:00:00"), ts("2025-04-01T00:00:00"), price(240000, "year")
        ),
        sub("S4", "C2", ts("2024-04-01T00:30:00"), ts("2024-04-15T12:00:00"), price(6000)),
    ]
    _, movements, days = run(states, date(2024, 3, 31), date(2025, 4, 2))
    assert days[date(2024, 4, 1)].mrr == 26000 * CENT
    assert days[date(2024, 4, 14)].mrr == 26000 * CENT
    assert days[date(2024, 4, 15)].mrr == 20000 * CENT
    assert days[date(2025, 3, 31)].mrr == 20000 * CENT
    assert days[date(2025, 4, 1)].mrr == 0
    assert days[date(2024, 4, 1)].active_subscriptions == 2
    assert days[date(2024, 4, 15)].active_subscriptions == 1
    assert moves(movements) == [
        ("2024-04-01", "new", 26000),
        ("2024-04-15", "contraction", 6000),
        ("2025-04-01", "churn", 20000),
    ]


# ---------------------------------------------------------------------------------------------
# §1 time zones and DST
# ---------------------------------------------------------------------------------------------


def test_dst_new_york_change_at_2330_local_on_switch_days_metrics_1() -> None:
    """§1: days are local and DST-aware. 23:30 EDT on 2024-03-10 (a 23-hour day) is 03:30Z on
    03-11; 23:30 EST on 2024-11-03 (a 25-hour day) is 04:30Z on 11-04."""
    start = ts("2024-03-10T23:30:00", "America/New_York")
    end = ts("2024-11-03T23:30:00", "America/New_York")
    assert start == ts("2024-03-11T03:30:00") and end == ts("2024-11-04T04:30:00")
    states = [sub("S", "C", start, end, price(10000))]
    ny = Settings(tz="America/New_York")
    rows = customer_mrr_changes(states, [], ny, None, date(2024, 12, 31))
    assert [(r.day, r.mrr / CENT) for r in rows] == [
        (date(2024, 3, 10), 10000),  # in force at the end of local 03-10
        (date(2024, 11, 3), 0),  # S(11-04) = 05:00Z is after the 04:30Z end
    ]
    utc_rows = customer_mrr_changes(states, [], Settings(), None, date(2024, 12, 31))
    assert [r.day for r in utc_rows] == [date(2024, 3, 11), date(2024, 11, 4)]


def test_dst_trial_end_and_grace_on_switch_day_new_york_metrics_1() -> None:
    """§1/§3: inner instants (trial_end) map to local days too, on the spring-forward day."""
    trial_end = ts("2024-03-10T23:30:00", "America/New_York")
    s = sub("S", "C", ts("2024-03-01T00:00:00"), None, price(10000), trial_end=trial_end)
    ny = Settings(tz="America/New_York")
    rows = customer_mrr_changes([s], [], ny, None, date(2024, 4, 1))
    assert [(r.day, r.mrr / CENT) for r in rows] == [(date(2024, 3, 10), 10000)]


def test_dst_paris_end_at_local_midnight_metrics_1() -> None:
    """§1: a state ending exactly at local midnight (00:00 CEST 04-01 = 22:00Z 03-31) keeps 03-31
    in Paris but not in UTC; a start at 00:30 local on the switch day is that local day."""
    tz = "Europe/Paris"
    start = ts("2024-03-31T00:30:00", tz)  # 23:30Z on 03-30
    end = ts("2024-04-01T00:00:00", tz)
    states = [sub("S", "C", start, end, price(10000))]
    paris = customer_mrr_changes(states, [], Settings(tz=tz), None, date(2024, 4, 30))
    assert [(r.day, r.mrr / CENT) for r in paris] == [
        (date(2024, 3, 31), 10000),
        (date(2024, 4, 1), 0),
    ]
    utc = customer_mrr_changes(states, [], Settings(), None, date(2024, 4, 30))
    assert [(r.day, r.mrr / CENT) for r in utc] == [
        (date(2024, 3, 30), 10000),
        (date(2024, 3, 31), 0),
    ]


# ---------------------------------------------------------------------------------------------
# §3-4 rules over time
# ---------------------------------------------------------------------------------------------


def test_converted_trial_counts_from_trial_end_metrics_3() -> None:
    """§3: a trial that converts counts from trial_end, even if the history saw `active` later;
    a trial that does not convert never counts."""
    trial_end = ts("2024-03-15T10:00:00")
    seen = ts("2024-03-20T08:00:00")  # the sync that first saw the conversion
    p = price(10000)
    converted = [
        sub("T1", "A", ts("2024-03-01T10:00:00"), seen, p, status="trialing", trial_end=trial_end),
        sub("T1", "A", seen, None, p, trial_end=trial_end),
    ]
    lapsed = [
        sub("T2", "B", ts("2024-03-01T10:00:00"), seen, p, status="trialing", trial_end=trial_end),
        sub("T2", "B", seen, None, p, status="canceled", trial_end=trial_end, ended_at=seen),
    ]
    changes, movements, days = run(converted + lapsed, date(2024, 3, 1), date(2024, 3, 31))
    assert [(r.customer_id, r.day) for r in changes] == [("A", date(2024, 3, 15))]
    assert moves(movements) == [("2024-03-15", "new", 10000)]
    assert days[date(2024, 3, 14)].active_subscriptions == 0
    assert days[date(2024, 3, 15)].active_subscriptions == 1


def test_cmrr_change_row_without_mrr_movement_metrics_4() -> None:
    """§4: scheduling a cancellation drops CMRR at once; MRR (and movements) wait for the end."""
    p = price(10000)
    sched, end = ts("2024-03-05T09:00:00"), ts("2024-03-20T00:00:00")
    states = [
        sub("S", "C", ts("2024-03-01T00:00:00"), sched, p),
        sub("S", "C", sched, end, p, cancel_scheduled=True),
        sub("S", "C", end, None, p, status="canceled", ended_at=end),
    ]
    changes, movements, days = run(states, date(2024, 3, 1), date(2024, 3, 31))
    assert [(r.day, r.mrr / CENT, r.cmrr / CENT) for r in changes] == [
        (date(2024, 3, 1), 10000, 10000),
        (date(2024, 3, 5), 10000, 0),
        (date(2024, 3, 20), 0, 0),
    ]
    assert moves(movements) == [("2024-03-01", "new", 10000), ("2024-03-20", "churn", 10000)]
    assert days[date(2024, 3, 10)].cmrr == 0 and days[date(2024, 3, 10)].mrr == 10000 * CENT


def test_manual_recurring_revenue_counts_for_30_days_metrics_4() -> None:
    """§4: a manual recurring entry is one month of MRR on days D..D+29; no customer -> `manual`."""
    manual = [
        ManualRecurring("ws", None, date(2024, 3, 1), "usd", 2_500 * 1_000_000),
        ManualRecurring("ws", "C", date(2024, 3, 10), "usd", 100 * 1_000_000, plan_id="retainer"),
    ]
    states = [sub("S", "C", ts("2024-03-01T00:00:00"), None, price(10000))]
    changes, movements, days = run(states, date(2024, 3, 1), date(2024, 4, 15), manual=manual)
    by_customer = defaultdict(list)
    for r in changes:
        by_customer[r.customer_id].append((r.day, r.mrr / 1_000_000, r.active_subscriptions))
    assert by_customer[MANUAL_CUSTOMER] == [(date(2024, 3, 1), 2500, 0), (date(2024, 3, 31), 0, 0)]
    assert by_customer["C"] == [
        (date(2024, 3, 1), 100, 1),
        (date(2024, 3, 10), 200, 1),
        (date(2024, 4, 9), 100, 1),
    ]
    assert days[date(2024, 3, 30)].mrr == 2700 * 1_000_000
    assert days[date(2024, 3, 31)].mrr == 200 * 1_000_000
    c_row = next(r for r in changes if r.customer_id == "C" and r.day == date(2024, 3, 10))
    assert c_row.by_plan == {"price_10000": 100 * 1_000_000, "retainer": 100 * 1_000_000}
    assert ("2024-03-31", "churn", 250000) in moves(movements)


@pytest.mark.parametrize(
    ("name", "second", "cfg", "reason"),
    [
        ("unpaid", {"status": "unpaid"}, Settings(), "delinquent"),
        ("dunning_cancel", {"status": "canceled", "cancellation_reason": "payment_failed"},
         Settings(), "delinquent"),
        ("voluntary_cancel", {"status": "canceled", "cancellation_reason": "cancellation_requested"},
         Settings(), "voluntary"),
        ("full_coupon", {"discounts": (DiscountSpec("free", percent_off=Decimal(100)),)},
         Settings(), "voluntary"),
        ("pause", {"pause_collection": True}, Settings(), "voluntary"),
    ],
)  # fmt: skip
def test_churn_tagged_delinquent_or_voluntary_metrics_5(
    name: str, second: dict[str, object], cfg: Settings, reason: str
) -> None:
    """§5: a move to 0 is churn, `delinquent` from non-payment and `voluntary` otherwise."""
    p = price(10000)
    t0, t1 = ts("2024-03-01T00:00:00"), ts("2024-03-10T12:00:00")
    first = sub("S", name, t0, t1, p)
    states = [first, replace(first, valid_from=t1, valid_to=None, **second)]  # type: ignore[arg-type]
    changes, movements, days = run(states, date(2024, 3, 1), date(2024, 3, 31), cfg)
    assert [(m.day, m.kind, m.reason) for m in movements][-1] == (
        date(2024, 3, 10),
        "churn",
        reason,
    )
    assert changes[-1].churn_reason == reason
    assert days[date(2024, 3, 10)].delinquent_churned_customers == (reason == "delinquent")


def test_past_due_then_canceled_and_grace_expiry_are_delinquent_metrics_5() -> None:
    """§3/§5: grace expiry (no state change) and a past_due subscription ending are delinquent."""
    p = price(10000)
    t0, due, end = ts("2024-03-01T00:00:00"), ts("2024-03-05T06:00:00"), ts("2024-03-06T00:00:00")
    dunning = [
        sub("S1", "A", t0, due, p),
        sub("S1", "A", due, end, p, status="past_due", past_due_since=due),
        sub("S1", "A", end, None, p, status="canceled", ended_at=end, past_due_since=due),
    ]
    grace = [
        sub("S2", "B", t0, due, p),
        sub("S2", "B", due, None, p, status="past_due", past_due_since=due),
    ]
    cfg = Settings(past_due_grace_days=2)
    _, movements, _ = run(dunning + grace, date(2024, 3, 1), date(2024, 3, 31), cfg)
    churn = [(m.customer_id, m.day, m.reason) for m in movements if m.kind == "churn"]
    # A is cancelled by dunning on 03-06; B's 2-day grace from 03-05T06:00 expires on 03-07.
    assert churn == [("A", date(2024, 3, 6), "delinquent"), ("B", date(2024, 3, 7), "delinquent")]


def test_plan_breakdown_discount_split_and_plan_swap_metrics_4() -> None:
    """Per-plan MRR sums to the customer's MRR (discounts split pro rata); a same-price plan swap
    is a change row for the plan summary but no MRR movement."""
    a, b = price(6000, pid="plan_a"), price(2000, pid="plan_b")
    c = price(8000, pid="plan_c")
    half = (DiscountSpec("half", percent_off=Decimal(50)),)
    t0, t1 = ts("2024-03-01T00:00:00"), ts("2024-03-10T00:00:00")
    states = [
        SubscriptionState("ws", "S", "C", "usd", t0, t1, "active",
                          (("i1", a, 1), ("i2", b, 1)), discounts=half),
        SubscriptionState("ws", "S", "C", "usd", t1, None, "active", (("i3", c, 1),),
                          discounts=half),
    ]  # fmt: skip
    changes, movements, _ = run(states, date(2024, 3, 1), date(2024, 3, 31))
    assert [(r.day, r.by_plan, r.plan_subscriptions) for r in changes] == [
        (
            date(2024, 3, 1),
            {"plan_a": 3000 * CENT, "plan_b": 1000 * CENT},
            {"plan_a": 1, "plan_b": 1},
        ),
        (date(2024, 3, 10), {"plan_c": 4000 * CENT}, {"plan_c": 1}),
    ]
    assert moves(movements) == [("2024-03-01", "new", 4000)]
    plans = plan_daily(changes, [date(2024, 3, 9), date(2024, 3, 10)], no_fx, "usd")
    assert [(p.day.day, p.plan, p.mrr / CENT, p.subscriptions) for p in plans] == [
        (9, "plan_a", 3000, 1),
        (9, "plan_b", 1000, 1),
        (10, "plan_c", 4000, 1),
    ]


# ---------------------------------------------------------------------------------------------
# §2 / §5 FX
# ---------------------------------------------------------------------------------------------


def test_fx_movements_and_missing_rate_metrics_5() -> None:
    """§5: fx = p x (r - r') on rate-change days; §2: a missing rate leaves the amount out (listed
    in skipped_currencies, never treated as USD) and its edges show as fx `rate_gap`."""
    rates = {
        date(2024, 2, 29): Fraction(1),
        date(2024, 3, 1): Fraction(11, 10),
        date(2024, 3, 2): Fraction(12, 10),
        date(2024, 3, 3): None,
        date(2024, 3, 4): Fraction(12, 10),
        date(2024, 3, 5): Fraction(12, 10),
        date(2024, 3, 6): Fraction(1),
    }

    def fx(currency: str, day: date) -> Fraction | None:
        assert currency == "eur"
        return rates.get(day)

    eur = price(10000, currency="eur")
    states = [
        sub("S", "C", ts("2024-03-01T08:00:00"), ts("2024-03-06T08:00:00"), eur),
        sub("S", "C", ts("2024-03-06T08:00:00"), None, eur, qty=2),
    ]
    changes, movements, days = run(states, date(2024, 3, 1), date(2024, 3, 6), fx=fx)
    assert [(m.day.day, m.kind, m.amount / CENT, m.reason) for m in movements] == [
        (1, "new", 11000, None),
        (2, "fx", 1000, None),
        (3, "fx", -12000, "rate_gap"),
        (4, "fx", 12000, "rate_gap"),
        (6, "expansion", 10000, None),  # (2 - 1) x 10000 at r = 1
        (6, "fx", -2000, None),  # p x (r - r') = 10000 x (1 - 1.2)
    ]
    assert [days[date(2024, 3, d)].mrr / CENT for d in range(1, 7)] == [
        11000, 12000, 0, 12000, 12000, 20000,
    ]  # fmt: skip
    assert days[date(2024, 3, 3)].skipped_currencies == ("eur",)
    assert days[date(2024, 3, 3)].paying_customers == 1  # still a paying customer natively
    assert days[date(2024, 3, 4)].skipped_currencies == ()
    (plan,) = plan_daily(changes, [date(2024, 3, 3)], fx, "usd")
    assert (plan.mrr, plan.subscriptions, plan.skipped_currencies) == (0, 1, ("eur",))


def test_cost_grows_with_changes_not_days(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cost grows with the number of changes, not customers x days. A 100-year subscription with
    three state changes is evaluated on a handful of days, not ~36,500."""
    calls = 0
    real = mrr_timeline.day_start_ts

    def counting(day: date, tz: str = "UTC") -> int:
        nonlocal calls
        calls += 1
        return real(day, tz)

    monkeypatch.setattr(mrr_timeline, "day_start_ts", counting)
    p = price(10000)
    t = [ts(f"{y}-06-01T12:00:00") for y in (1990, 2000, 2050, 2089)]
    states = [
        sub("S", "C", t[0], t[1], p, 1),
        sub("S", "C", t[1], t[2], p, 2),
        sub("S", "C", t[2], t[3], p, 3),
    ]
    rows = customer_mrr_changes(states, [], Settings(tz="Europe/Paris"), None, date(2090, 1, 1))
    assert [r.mrr / CENT for r in rows] == [10000, 20000, 30000, 0]
    assert calls <= 8
    movements = daily_movements(rows, no_fx, "usd", end=date(2090, 1, 1))
    assert len(movements) == 4


# ---------------------------------------------------------------------------------------------
# Random histories vs brute force (§1, §3-5 invariants)
# ---------------------------------------------------------------------------------------------

D0 = date(2024, 3, 1)  # the window spans the US (03-10) and EU (03-31) DST switches
NDAYS = 40
D1 = D0 + timedelta(days=NDAYS - 1)
STATUSES = ["active"] * 4 + ["past_due"] * 2 + [
    "trialing", "unpaid", "canceled", "incomplete", "paused",
]  # fmt: skip
PRICES = {
    cur: [
        PriceSpec(cur, "1000", price_id=f"{cur}_m"),
        PriceSpec(cur, "30000", interval="year", price_id=f"{cur}_y"),
        PriceSpec(cur, "700", interval="week", interval_count=2, price_id=f"{cur}_w"),
        PriceSpec(cur, "5", usage_type="metered", price_id=f"{cur}_metered"),
    ]
    for cur in ("usd", "eur")
}


@st.composite
def instants(draw: st.DrawFn, tz: str) -> int:
    """An instant in the window, biased to local midnight, one second after it, and 23:30."""
    day = D0 + timedelta(days=draw(st.integers(0, NDAYS + 2)))
    offset = draw(st.sampled_from([0, 1, 23 * 3600 + 1800, None]))
    if offset is None:
        offset = draw(st.integers(0, 86_399))
    return day_start_ts(day, tz) + offset


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[list[SubscriptionState], list[ManualRecurring], Settings, dict]:
    tz = draw(st.sampled_from(["UTC", "America/New_York", "Europe/Paris"]))
    cfg = Settings(
        discount_mode=draw(st.sampled_from(["all_active", "forever_only", "none"])),
        count_paused=draw(st.booleans()),
        past_due_grace_days=draw(st.none() | st.integers(0, 4)),
        tz=tz,
    )
    when = instants(tz)
    customers = [f"c{i}" for i in range(draw(st.integers(1, 4)))]
    states: list[SubscriptionState] = []
    for customer in customers:
        for n in range(draw(st.integers(1, 3))):
            currency = draw(st.sampled_from(["usd", "usd", "eur"]))
            cuts = sorted(set(draw(st.lists(when, min_size=1, max_size=5))))
            last_end = None if draw(st.booleans()) else cuts[-1] + draw(st.integers(1, 5 * 86_400))
            ends: list[int | None] = [*cuts[1:], last_end]
            for vf, vt in zip(cuts, ends, strict=True):
                if draw(st.integers(0, 5)) == 0:
                    continue  # a gap in the history
                items = tuple(
                    (f"si{k}", draw(st.sampled_from(PRICES[currency])), draw(st.integers(0, 4)))
                    for k in range(draw(st.integers(1, 2)))
                )
                discounts = tuple(
                    DiscountSpec(
                        f"d{k}",
                        percent_off=draw(st.none() | st.sampled_from([Decimal(10), Decimal(100)])),
                        amount_off=draw(st.none() | st.sampled_from([100, 50000])),
                        currency=currency,
                        duration=draw(st.sampled_from(["forever", "repeating", "once"])),
                        start=draw(when),
                        end=draw(st.none() | when),
                    )
                    for k in range(draw(st.integers(0, 2)))
                )
                states.append(
                    SubscriptionState(
                        "ws",
                        f"{customer}_s{n}",
                        customer,
                        currency,
                        vf,
                        vt,
                        draw(st.sampled_from(STATUSES)),
                        items,
                        trial_end=draw(st.none() | when),
                        pause_collection=draw(st.integers(0, 4)) == 0,
                        cancel_scheduled=draw(st.integers(0, 3)) == 0,
                        discounts=discounts,
                        past_due_since=draw(st.none() | when),
                        started_at=draw(st.none() | when),
                        ended_at=draw(st.none() | when),
                        cancellation_reason=draw(st.none() | st.just("payment_failed")),
                    )
                )
    manual = [
        ManualRecurring(
            "ws",
            draw(st.sampled_from([None, *customers])),
            D0 + timedelta(days=draw(st.integers(0, NDAYS - 1))),
            draw(st.sampled_from(["usd", "eur"])),
            draw(st.integers(1, 10**9)),
        )
        for _ in range(draw(st.integers(0, 3)))
    ]
    rate_values = st.sampled_from(
        [None, Fraction(1), Fraction(11, 10), Fraction(9, 10), Fraction(4, 3)]
    )
    rates: dict[date, Fraction | None] = {}
    current = draw(rate_values)
    for day in [D0 - ONE, *day_range(D0, D1)]:
        if draw(st.integers(0, 3)) == 0:
            current = draw(rate_values)
        rates[day] = current
    return states, manual, cfg, rates


Values = tuple[Fraction, Fraction, int, dict[str, Fraction], dict[str, int]]


def brute_daily(
    states: list[SubscriptionState], manual: list[ManualRecurring], cfg: Settings
) -> dict[date, dict[tuple[str, str, str], Values]]:
    """Day-by-day evaluation straight from the definitions (§1 in_force_on, §3, §4)."""
    by_sub: dict[str, list[SubscriptionState]] = defaultdict(list)
    for s in states:
        by_sub[s.subscription_id].append(s)
    for seq in by_sub.values():
        seq.sort(key=lambda s: s.valid_from)
    out: dict[date, dict[tuple[str, str, str], Values]] = {}
    for day in day_range(D0, D1):
        end_of_day = day_start_ts(day + ONE, cfg.tz)
        acc: dict[tuple[str, str, str], list] = defaultdict(
            lambda: [Fraction(0), Fraction(0), 0, defaultdict(Fraction), defaultdict(int)]
        )
        for seq in by_sub.values():
            live = [s for s in seq if in_force_on(s.valid_from, s.valid_to, day, cfg.tz)]
            assert len(live) <= 1
            if not live:
                continue
            s = live[0]
            i = seq.index(s)
            nxt = seq[i + 1] if i + 1 < len(seq) else None
            if (
                s.status == "trialing" and s.trial_end is not None and s.valid_to is not None
                and s.valid_from < s.trial_end < s.valid_to and s.trial_end < end_of_day
                and nxt is not None and nxt.valid_from == s.valid_to
                and nxt.status in ("active", "past_due")
            ):  # fmt: skip
                s = replace(s, status=nxt.status, past_due_since=nxt.past_due_since)
            v = subscription_value(s, day, cfg)
            if not v.counts:
                continue
            a = acc[(s.workspace_id, s.customer_id, s.currency)]
            a[0] += v.mrr
            a[1] += v.cmrr
            a[2] += 1
            for plan, amount in v.by_plan.items():
                a[3][plan] += amount
            for plan in v.plans:
                a[4][plan] += 1
        for m in manual:
            if m.day <= day <= m.day + timedelta(days=29):
                a = acc[(m.workspace_id, m.customer_id or MANUAL_CUSTOMER, m.currency)]
                a[0] += m.amount_micros
                a[1] += m.amount_micros
                a[3]["manual"] += m.amount_micros
        out[day] = {
            k: (v[0], v[1], v[2], {p: x for p, x in v[3].items() if x}, dict(v[4]))
            for k, v in acc.items()
        }
    return out


def brute_rows(daily: dict[date, dict[tuple[str, str, str], Values]]) -> list[tuple]:
    zero: Values = (Fraction(0), Fraction(0), 0, {}, {})
    rows = []
    keys = {k for per_day in daily.values() for k in per_day}
    for key in sorted(keys):
        prev = zero
        for day in day_range(D0, D1):
            cur = daily[day].get(key, zero)
            if cur != prev:
                rows.append((*key, day, *cur))
            prev = cur
    return rows


def engine_rows(changes: list[MrrChange]) -> list[tuple]:
    return [
        (r.workspace_id, r.customer_id, r.currency, r.day, r.mrr, r.cmrr,
         r.active_subscriptions, r.by_plan, r.plan_subscriptions)
        for r in changes
    ]  # fmt: skip


def brute_movements(daily, fx) -> list[tuple]:  # type: ignore[no-untyped-def]
    """§5 literally, per customer and day, summing a customer's currencies in reporting currency."""
    out = []
    customers = sorted({(k[0], k[1]) for per_day in daily.values() for k in per_day})
    for ws, customer in customers:
        had = False
        for day in day_range(D0, D1):
            today = {k[2]: v[0] for k, v in daily[day].items() if k[:2] == (ws, customer)}
            yesterday = (
                {k[2]: v[0] for k, v in daily[day - ONE].items() if k[:2] == (ws, customer)}
                if day > D0
                else {}
            )
            p_r = q_r = p_prev = Fraction(0)
            for cur in set(today) | set(yesterday):
                p, q = yesterday.get(cur, 0), today.get(cur, 0)
                r, r_prev = fx(cur, day), fx(cur, day - ONE)
                if r is not None:
                    p_r += p * r
                    q_r += q * r
                if r_prev is not None:
                    p_prev += p * r_prev
            p_any = any(v > 0 for v in yesterday.values())
            q_any = any(v > 0 for v in today.values())
            if not p_any and q_any:
                out.append((day, customer, "reactivation" if had else "new", q_r))
            elif p_any and not q_any:
                out.append((day, customer, "churn", p_r))
            elif p_any and q_r > p_r:
                out.append((day, customer, "expansion", q_r - p_r))
            elif p_any and q_r < p_r:
                out.append((day, customer, "contraction", p_r - q_r))
            if p_r != p_prev:
                out.append((day, customer, "fx", p_r - p_prev))
            had = had or q_any
    return sorted(out, key=lambda t: (t[0], t[1], t[2]))


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenario=scenarios(), data=st.data())
def test_engine_matches_brute_force_and_section5_invariants_metrics_5(scenario, data) -> None:  # type: ignore[no-untyped-def]
    """§1/§3/§4: change rows equal a day-by-day evaluation; §5: movements equal a literal
    evaluation, the identity holds every day, and the listed invariants hold."""
    states, manual, cfg, rates = scenario

    def fx(currency: str, day: date) -> Fraction | None:
        return Fraction(1) if currency == "usd" else rates.get(day)

    changes = customer_mrr_changes(states, manual, cfg, None, D1)
    daily = brute_daily(states, manual, cfg)
    assert engine_rows(changes) == brute_rows(daily)

    # Minimal rows: no two consecutive identical rows per customer and currency, none all-zero first.
    streams: dict[tuple[str, str, str], list[MrrChange]] = defaultdict(list)
    for r in changes:
        streams[(r.workspace_id, r.customer_id, r.currency)].append(r)
    for rows in streams.values():
        assert (
            rows[0].mrr
            or rows[0].cmrr
            or rows[0].active_subscriptions
            or rows[0].plan_subscriptions
        )
        assert all(not a.same_values(b) and a.day < b.day for a, b in itertools.pairwise(rows))
        for r in rows:
            assert sum(r.by_plan.values(), Fraction(0)) == r.mrr
            assert (r.churn_reason is not None) == (r.mrr == 0 and r is not rows[0] and
                                                    rows[rows.index(r) - 1].mrr > 0)  # fmt: skip

    # A window restates exactly the full history's rows in that window.
    a = data.draw(st.sampled_from(day_range(D0, D1)), label="window start")
    assert customer_mrr_changes(states, manual, cfg, a, D1) == [r for r in changes if r.day >= a]
    # The windowed engine (opening state on a-1, "had MRR before") gives the same rows, the same
    # non-fx movements and the same company days as the full history, on the window's days.
    window = customer_mrr_window(states, manual, cfg, a, D1)
    window.had_mrr_before |= customers_with_mrr_before(states, manual, cfg, a - ONE)
    assert window.rows == [r for r in changes if r.day >= a]
    full_moves = daily_movements(changes, fx, "usd", start=a, end=D1, include_fx=False)
    opened = window.opening + window.rows
    moves = daily_movements(
        opened, fx, "usd", start=a, end=D1, include_fx=False, had_mrr_before=window.had_mrr_before
    )
    assert moves == full_moves
    assert company_daily(opened, moves, day_range(a, D1), fx, "usd") == company_daily(
        changes, full_moves, day_range(a, D1), fx, "usd"
    )
    assert plan_daily(opened, day_range(a, D1), fx, "usd") == plan_daily(
        changes, day_range(a, D1), fx, "usd"
    )
    # As the marts read it: only intervals in force from the start of a-1, plus the full history
    # of the customers who gain MRR in the window without having it on a-1.
    cut = day_start_ts(a - ONE, cfg.tz)
    recent = [st for st in states if st.valid_to is None or st.valid_to > cut]
    narrow = customer_mrr_window(recent, manual, cfg, a, D1)
    gaining = {
        r.customer_id
        for r in narrow.rows
        if r.mrr > 0 and (r.workspace_id, r.customer_id) not in narrow.had_mrr_before
    }
    narrow.had_mrr_before |= customers_with_mrr_before(
        [st for st in states if st.customer_id in gaining],
        [m for m in manual if (m.customer_id or MANUAL_CUSTOMER) in gaining],
        cfg,
        a - ONE,
    )
    assert (narrow.rows, narrow.opening) == (window.rows, window.opening)
    narrow_moves = daily_movements(
        narrow.opening + narrow.rows, fx, "usd", start=a, end=D1, include_fx=False,
        had_mrr_before=narrow.had_mrr_before,
    )  # fmt: skip
    assert narrow_moves == full_moves

    movements = daily_movements(changes, fx, "usd", end=D1)
    for kind in sorted({m.kind for m in movements} | {m.reason or "" for m in movements} - {""}):
        event(f"has {kind}")
    got = sorted(((m.day, m.customer_id, m.kind, m.amount) for m in movements), key=lambda t: t[:3])
    assert got == brute_movements(daily, fx)

    for m in movements:
        assert m.kind == "fx" or m.amount >= 0
        assert m.kind != "fx" or m.amount != 0
    firsts: dict[str, list[str]] = defaultdict(list)
    for m in movements:
        if m.kind in ("new", "reactivation", "churn"):
            firsts[m.customer_id].append(m.kind)
    for kinds in firsts.values():
        assert kinds[0] == "new" and kinds.count("new") == 1
        # Logo movements alternate: new, churn, reactivation, churn, ...
        assert all(k == ("churn" if i % 2 else ("new" if i == 0 else "reactivation"))
                   for i, k in enumerate(kinds))  # fmt: skip
    for m in movements:
        if m.kind == "churn":
            yesterday = {
                k[2]: v[0] for k, v in daily.get(m.day - ONE, {}).items() if k[1] == m.customer_id
            }
            converted = [q * r for cur, q in yesterday.items() if (r := fx(cur, m.day)) is not None]
            assert m.amount == sum(converted, Fraction(0))  # the MRR just before, at today's rate

    days = company_daily(changes, movements, day_range(D0, D1), fx, "usd")
    by_day = {d.day: d for d in days}
    for d in days:
        assert d.identity_holds(), d
        expected = Fraction(0)
        skipped = set()
        for (_, _, cur), v in daily[d.day].items():
            r = fx(cur, d.day)
            if r is None and (v[0] or v[1]):
                skipped.add(cur)
            elif r is not None:
                expected += v[0] * r
        assert d.mrr == expected
        assert set(d.skipped_currencies) == skipped
        assert d.active_subscriptions == sum(v[2] for v in daily[d.day].values())
        assert d.paying_customers == len({k[:2] for k, v in daily[d.day].items() if v[0] > 0})

    # Any split of the customers, totalled apart and added up, gives the same summaries (the
    # marts compute them a batch of customers at a time).
    customers = sorted({c.customer_id for c in changes})
    group = (
        set(data.draw(st.lists(st.sampled_from(customers), unique=True))) if customers else set()
    )
    halves = [[c for c in changes if (c.customer_id in group) == side] for side in (True, False)]
    half_moves = [
        [m for m in movements if (m.customer_id in group) == side] for side in (True, False)
    ]
    company = company_totals(halves[0], half_moves[0], day_range(D0, D1))
    company.add(company_totals(halves[1], half_moves[1], day_range(D0, D1)))
    assert company_days(company, fx, "usd") == days
    plan_parts = plan_totals(halves[0], day_range(D0, D1))
    plan_parts.add(plan_totals(halves[1], day_range(D0, D1)))
    assert plan_days(plan_parts, fx, "usd") == plan_daily(changes, day_range(D0, D1), fx, "usd")

    # Per-plan summaries add up to the company MRR and subscriptions every day.
    plans = plan_daily(changes, day_range(D0, D1), fx, "usd")
    for d in days:
        todays = [p for p in plans if p.day == d.day]
        assert sum((p.mrr for p in todays), Fraction(0)) == d.mrr
        assert {c for p in todays for c in p.skipped_currencies} <= set(d.skipped_currencies)

    # Period movements are sums of daily movements, and MRR is a balance that telescopes.
    lo, hi = sorted(data.draw(st.lists(st.sampled_from(day_range(D0, D1)), min_size=2, max_size=2)))
    period = period_movements(movements, lo, hi)
    for kind in period:
        assert period[kind] == sum(
            (getattr(by_day[d], kind) for d in day_range(lo, hi)), Fraction(0)
        )
    if lo < hi:
        left, right = period_movements(movements, lo, lo), period_movements(movements, lo + ONE, hi)
        assert all(period[k] == left[k] + right[k] for k in period)
    net = (period["new"] + period["expansion"] + period["reactivation"] - period["contraction"]
           - period["churn"] + period["fx"])  # fmt: skip
    assert by_day[hi].mrr == by_day[lo].previous_mrr + net


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios(), data=st.data())
def test_counting_changes_give_stripe_30_day_churn(scenario, data) -> None:
    """The stored counting changes of two consecutive windows decide Stripe's 30-day subscriber
    churn (§6) on every day exactly as evaluating each subscription on each of the 31 days."""
    states, manual, cfg, _ = scenario
    a = data.draw(st.sampled_from(day_range(D0 + ONE, D1)), label="second window start")
    first = customer_mrr_window(states, manual, cfg, D0, a - ONE)
    cut = day_start_ts(a - ONE, cfg.tz)
    recent = [s for s in states if s.valid_to is None or s.valid_to > cut]
    second = customer_mrr_window(recent, manual, cfg, a, D1)
    stored = [(c.subscription_id, c.day, c.counts) for c in first.counting + second.counting]
    # A change is stored only where counting flips: consecutive rows of a subscription alternate.
    by_sub: dict[str, list[tuple[date, bool]]] = defaultdict(list)
    for sub, day, counts in sorted(stored):
        by_sub[sub].append((day, counts))
    assert all(x[1] != y[1] for seq in by_sub.values() for x, y in itertools.pairwise(seq))

    expanded: dict[str, list[SubscriptionState]] = defaultdict(list)
    for s in mrr_timeline.expand_converted_trials(states):
        expanded[s.subscription_id].append(s)

    def counts_on(sub: str, day: date) -> bool:
        at = day_start_ts(day + ONE, cfg.tz)
        return any(counts_at(s, at, cfg) for s in expanded[sub])

    subs = sorted(expanded)
    for day in day_range(D0, D1):
        assert subscriber_churn_30d_from_changes(stored, day) == subscriber_churn_30d(
            subs, counts_on, day
        ), day
