"""Pure computations of the month-end close pack (docs/metrics.md §6): the net-MRR cohort table
and the churn conventions finance compares against, as exact ratios."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction

ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class CohortRow:
    """Customers who first paid in `month`, their MRR at that month's end and its retention.

    `retention[k]` is the cohort's MRR at the end of the k-th month after `month` divided by its
    MRR at the end of `month` (net of expansion, so it can exceed 1); None without starting MRR.
    """

    month: str
    customers: int
    starting_mrr: Fraction
    mrr: tuple[Fraction, ...]
    retention: tuple[Fraction | None, ...]


def cohort_retention(
    first_paid: Mapping[str, str],
    month_end_mrr: Mapping[str, Mapping[str, Fraction]],
    months: Sequence[str],
) -> list[CohortRow]:
    """Net-MRR retention by first-paid month over `months` (ascending "YYYY-MM").

    `first_paid` maps a customer to the month it first had MRR; `month_end_mrr` maps a customer to
    its MRR at each month's end in the reporting currency (missing = 0). Cohorts before the first
    of `months` are left out; each row has one value per month from its cohort month to the last.
    """
    order = {m: i for i, m in enumerate(months)}
    members: dict[str, list[str]] = {}
    for customer, month in first_paid.items():
        if month in order:
            members.setdefault(month, []).append(customer)
    rows = []
    for month in months:
        cohort = members.get(month, [])
        if not cohort:
            continue
        series = tuple(
            sum((month_end_mrr.get(c, {}).get(m, Fraction(0)) for c in cohort), Fraction(0))
            for m in months[order[month] :]
        )
        start = series[0]
        rows.append(
            CohortRow(
                month=month,
                customers=len(cohort),
                starting_mrr=start,
                mrr=series,
                retention=tuple(None if start == 0 else v / start for v in series),
            )
        )
    return rows


def customer_churn_rate(churn_events: int, customers_at_start: int) -> Fraction | None:
    """ChartMogul-style customer churn: churn events in the period / customers at its start.

    Every churn event counts, even one reactivated later in the period; None without customers.
    """
    return None if customers_at_start == 0 else Fraction(churn_events, customers_at_start)


def subscriber_churn_30d(
    subscriptions: Iterable[str], counts_on: Callable[[str, date], bool], day: date
) -> tuple[int, int, Fraction | None]:
    """Stripe Billing's 30-day subscriber churn on `day`: (churned, base, rate).

    The base is the subscriptions counting 30 days before `day`; a churned subscriber stopped
    counting on one of the 30 days ending `day` and does not count on `day` (a pause that ends
    within the window is no churn). Counts subscriptions, not customers; None without a base.
    """
    start = day - timedelta(days=30)
    base = churned = 0
    for sub in subscriptions:
        counted = [counts_on(sub, start + timedelta(days=i)) for i in range(31)]
        base += counted[0]
        stopped = any(counted[i - 1] and not counted[i] for i in range(1, 31))
        churned += stopped and not counted[-1]
    return churned, base, None if base == 0 else Fraction(churned, base)


def subscriber_churn_30d_from_changes(
    changes: Iterable[tuple[str, date, bool]], day: date
) -> tuple[int, int, Fraction | None]:
    """`subscriber_churn_30d` on `day` from each subscription's starts and stops of counting.

    `changes` are (subscription, day, counts) rows, a subscription's counting changing on that
    day (mart.subscription_counting). A subscription counts on a day iff its latest change on or
    before it is a start. It churned iff its latest change up to `day` is a stop within the 30
    days ending `day`: it counted the day before that stop, inside the window, and not on `day`.
    """
    start = day - timedelta(days=30)
    at_start: dict[str, tuple[date, bool]] = {}
    at_day: dict[str, tuple[date, bool]] = {}
    for sub, changed, counts in changes:
        for latest, limit in ((at_start, start), (at_day, day)):
            if changed <= limit and (sub not in latest or latest[sub][0] < changed):
                latest[sub] = (changed, counts)
    base = sum(1 for _, counts in at_start.values() if counts)
    churned = sum(1 for changed, counts in at_day.values() if not counts and changed > start)
    return churned, base, None if base == 0 else Fraction(churned, base)


def month_key(day: date) -> str:
    """The local calendar month of a day, "YYYY-MM" (docs/metrics.md §1)."""
    return f"{day.year:04d}-{day.month:02d}"


def month_end(month: str) -> date:
    """The last day of a "YYYY-MM" month."""
    y, m = int(month[:4]), int(month[5:7])
    nxt = date(y + (m == 12), m % 12 + 1, 1)
    return nxt - ONE_DAY


def shift_month(month: str, n: int) -> str:
    """The month `n` months after (negative: before) a "YYYY-MM" month."""
    y, m = int(month[:4]), int(month[5:7])
    idx = y * 12 + (m - 1) + n
    return f"{idx // 12:04d}-{idx % 12 + 1:02d}"


def trailing_months(month: str, count: int) -> list[str]:
    """The `count` months ending with `month`, oldest first."""
    return [shift_month(month, -i) for i in range(count - 1, -1, -1)]
