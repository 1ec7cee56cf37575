"""Churn and retention rates (docs/metrics.md §6) for any period, read from the MRR marts."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction

from finance_pipeline.lib.cfo_daily import as_date
from finance_pipeline.lib.ledger import RateLookup, fx_lookup
from finance_pipeline.lib.mrr_timeline import Movement
from finance_pipeline.lib.retention import (
    Balances,
    CustomerKey,
    RetentionRates,
    balances_on_days,
    retention_from_balances,
)
from finance_pipeline.warehouse.db import Warehouse


class PeriodNotMaterialized(ValueError):
    """The marts do not cover the days a period needs; a backfill must run first."""


def retention_for_period(
    wh: Warehouse,
    workspace_id: str,
    reporting_currency: str,
    start: date,
    end: date,
    *,
    balances: Mapping[date, Balances] | None = None,
    fx: RateLookup | None = None,
) -> RetentionRates:
    """Logo churn, GRR/NRR and MRR churn rates for [start, end] from mart.mrr_changes/movements.

    `balances` (`load_balances` on days including start-1 and `end`) and `fx` (`fx_lookup` of the
    reporting currency's rates) save a caller that computes several periods reading them again.
    """
    if end < start:
        raise ValueError(f"period end {end} is before its start {start}")
    needed = [start - timedelta(days=1), end]
    have = {
        str(r["day"])
        for r in wh.rows(
            "SELECT day FROM mart.mrr_daily WHERE workspace_id = :w AND (day = :a OR day = :b)",
            w=workspace_id,
            a=needed[0],
            b=needed[1],
        )
    }
    missing = [str(d) for d in needed if str(d) not in have]
    if missing:
        raise PeriodNotMaterialized(
            f"MRR marts of {workspace_id} do not cover {', '.join(missing)}; backfill those "
            "partitions (mart/mrr_daily) first"
        )
    if balances is None or not {needed[0], end} <= balances.keys():
        balances = load_balances(wh, workspace_id, needed).on
    movements = [
        Movement(
            workspace_id,
            r["customer_id"],
            r["day"],
            r["kind"],
            Fraction(r["amount_exact"]),
            r["reason"],
        )
        for r in wh.rows(
            "SELECT * FROM mart.mrr_movements WHERE workspace_id = :w AND day >= :a AND day <= :b",
            w=workspace_id,
            a=start,
            b=end,
        )
    ]
    if fx is None:
        fx = fx_lookup(
            wh.rows(
                "SELECT base, currency, date, rate FROM core.fx_rates WHERE base = :b",
                b=reporting_currency,
            ),
            reporting_currency,
        )
    return retention_from_balances(
        balances[needed[0]], balances[end], movements, fx, reporting_currency, start, end
    )


@dataclass(frozen=True)
class StoredBalances:
    """Customers' native MRR per currency on chosen days, and the day each first had MRR."""

    on: dict[date, Balances]
    first_paid: dict[str, date]


def load_balances(wh: Warehouse, workspace_id: str, days: Iterable[date]) -> StoredBalances:
    """Each customer's balances (`customer_balances`) on `days`, from one ordered read of the
    stored change rows up to the last of them: only the MRR column, each distinct exact value
    parsed once (a few prices times quantities repeat across thousands of customers)."""
    wanted = sorted(set(days))
    if not wanted:
        return StoredBalances({}, {})
    parsed: dict[str, Fraction] = {}
    first_paid: dict[str, date] = {}

    def rows() -> Iterator[tuple[CustomerKey, str, date, Fraction]]:
        for r in wh.rows(
            "SELECT customer_id, currency, day, mrr_exact FROM mart.mrr_changes"
            " WHERE workspace_id = :w AND day <= :b ORDER BY day",
            w=workspace_id,
            b=wanted[-1],
        ):
            text, customer, day = r["mrr_exact"], r["customer_id"], as_date(r["day"])
            mrr = parsed.get(text)
            if mrr is None:
                mrr = parsed[text] = Fraction(text)
            # MRR is never negative (§3), so "0" is the only text of no MRR.
            if text != "0" and customer not in first_paid:
                first_paid[customer] = day
            yield (workspace_id, customer), r["currency"], day, mrr

    return StoredBalances(balances_on_days(rows(), wanted), first_paid)


def logo_churn_counts(wh: Warehouse, workspace_id: str, start: date, end: date) -> tuple[int, int]:
    """(cohort, churned) of the logo churn of start..end (lib.retention.logo_churn_rate): the
    cohort is the customers with MRR above zero in some currency on start-1, churned those of
    them with MRR in no currency on `end`.

    Read in time proportional to the window's changes, not the workspace's history: the cohort's
    size is mart.mrr_daily.paying_customers of start-1 (the same count, customers with a positive
    balance, computed by the MRR run from the same change rows), and only a customer with a change
    row within start..end can have churned (any other keeps its start-1 balances to `end`), so the
    database counts them from the window's rows and a few index steps per candidate, in one
    statement. Without a stored start-1 it reads the full history
    (`logo_churn_counts_from_history`).
    """
    # mrr_exact is a canonical fraction ("0", "-7/3"), so its text tells zero and sign apart.
    # Candidates: customers each of whose currencies changed in the window ends it at zero (a
    # currency ending it above zero keeps the customer paying); only the window's rows are read.
    candidates = (
        "SELECT customer_id FROM (SELECT customer_id, mrr_exact, ROW_NUMBER() OVER ("
        " PARTITION BY customer_id, currency ORDER BY day DESC) AS n FROM mart.mrr_changes"
        " WHERE workspace_id = :w AND day >= :s AND day <= :e) t WHERE n = 1"
        " GROUP BY customer_id HAVING SUM(CASE WHEN mrr_exact <> '0' THEN 1 ELSE 0 END) = 0"
    )
    # A candidate churned if some currency was above zero on start-1 and none is non-zero on
    # `end` (a currency without a row in the window keeps its start-1 balance): for each of its
    # currencies the database picks the latest row before `start` and the latest up to `end`
    # (each one backward step of the primary key).
    latest = (
        "(SELECT m.mrr_exact FROM mart.mrr_changes m WHERE m.workspace_id = :w"
        " AND m.customer_id = k.customer_id AND m.currency = k.currency AND m.day {} :{}"
        " ORDER BY m.day DESC LIMIT 1)"
    )
    [row] = wh.rows(
        "SELECT (SELECT paying_customers FROM mart.mrr_daily"
        "  WHERE workspace_id = :w AND day = :before) AS cohort,"
        " (SELECT COUNT(*) FROM (SELECT b.customer_id FROM ("
        f"  SELECT k.customer_id, {latest.format('<', 's')} AS opening,"
        f"  {latest.format('<=', 'e')} AS closing FROM ("
        "   SELECT DISTINCT customer_id, currency FROM mart.mrr_changes"
        f"   WHERE workspace_id = :w AND customer_id IN ({candidates})) k) b"
        "  GROUP BY b.customer_id"
        "  HAVING SUM(CASE WHEN b.opening <> '0' AND b.opening NOT LIKE '-%' THEN 1 ELSE 0 END) > 0"
        "  AND SUM(CASE WHEN b.closing <> '0' THEN 1 ELSE 0 END) = 0) c) AS churned",
        w=workspace_id,
        before=start - timedelta(days=1),
        s=start,
        e=end,
    )
    if row["cohort"] is None:
        return logo_churn_counts_from_history(wh, workspace_id, start, end)
    return int(row["cohort"]), int(row["churned"])


def logo_churn_counts_from_history(
    wh: Warehouse, workspace_id: str, start: date, end: date
) -> tuple[int, int]:
    """`logo_churn_counts` from every change row of the workspace (for a start-1 that
    mart.mrr_daily does not hold).

    A (customer, currency) balance on a day is its latest change row on or before that day, and a
    zero balance is none, as in `customer_balances`. So only two sets of rows decide: each key's
    latest row before `start` (the database picks them; only the non-zero ones are returned) and
    each key's latest row within start..end (a key without one keeps its opening balance).
    """
    opening = {
        (r["customer_id"], r["currency"]): Fraction(r["mrr_exact"])
        for r in wh.rows(
            "SELECT c.customer_id, c.currency, c.mrr_exact FROM mart.mrr_changes c JOIN ("
            " SELECT customer_id, currency, MAX(day) AS day FROM mart.mrr_changes"
            " WHERE workspace_id = :w AND day < :s GROUP BY customer_id, currency) l"
            " ON c.customer_id = l.customer_id AND c.currency = l.currency AND c.day = l.day"
            " WHERE c.workspace_id = :w AND c.mrr_exact <> '0'",
            w=workspace_id,
            s=start,
        )
    }
    closing_in_window = {
        (r["customer_id"], r["currency"]): r["mrr_exact"] != "0"
        for r in wh.rows(
            "SELECT c.customer_id, c.currency, c.mrr_exact FROM mart.mrr_changes c JOIN ("
            " SELECT customer_id, currency, MAX(day) AS day FROM mart.mrr_changes"
            " WHERE workspace_id = :w AND day >= :s AND day <= :e GROUP BY customer_id, currency) l"
            " ON c.customer_id = l.customer_id AND c.currency = l.currency AND c.day = l.day"
            " WHERE c.workspace_id = :w",
            w=workspace_id,
            s=start,
            e=end,
        )
    }
    cohort = {customer for (customer, _currency), v in opening.items() if v > 0}
    paying = {key[0] for key, nonzero in closing_in_window.items() if nonzero}
    paying |= {key[0] for key in opening if key not in closing_in_window}
    return len(cohort), len(cohort - paying)
