"""CFO metrics over the rolling 30 local days ending `as_of` (docs/metrics.md §9, v1 API names).

Input is core.ledger rows (§7) as `LedgerEntry` (or any object with the same attributes). Sign
convention of the ledger: revenue kinds are positive, refunds are stored negative, expenses and fees
are positive costs. Amounts are exact micro-units; every `*_cents` output is rounded once from the
exact micro total (money.micros_to_cents).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any, Protocol

from finance_pipeline.lib.money import micros_to_cents, round_half_away
from finance_pipeline.lib.timeutil import local_day

WINDOW_DAYS = 30

REVENUE_KINDS = frozenset({"gross_revenue", "manual_revenue"})
REFUND_KINDS = frozenset({"refund"})
EXPENSE_KINDS = frozenset({"expense", "fee"})
# Only these expense subtypes are left out of recurring burn: an unknown subtype counts as recurring
# so that runway errs on the short (safe) side.
ONE_TIME_EXPENSE_SUBTYPES = frozenset({"one_time_expense", "one_time"})


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One money movement of core.ledger (§7) on its local day, in native and reporting currency.

    kind: gross_revenue | refund | manual_revenue | expense | fee. subtype: recurring/one_time for
    manual revenue, recurring_expense/one_time_expense for expenses. `amount_micros_reporting` is
    None when the FX rate of the entry's day was missing (the entry is then skipped and counted).
    """

    workspace_id: str
    entry_id: str
    day: date
    kind: str
    amount_micros_native: int
    currency: str
    amount_micros_reporting: int | None
    subtype: str | None = None
    customer_id: str | None = None
    category: str | None = None

    @classmethod
    def from_instant(cls, ts: int | datetime, tz: str, **fields: Any) -> LedgerEntry:
        """Build an entry whose local `day` is the day containing instant `ts` in zone `tz` (§1)."""
        return cls(day=local_day(ts, tz), **fields)


class LedgerRow(Protocol):
    """The attributes the analytics read from a ledger row (LedgerEntry satisfies it)."""

    day: date
    kind: str
    subtype: str | None
    currency: str
    amount_micros_reporting: int | None


MrrSource = Callable[[date], int] | Mapping[date, int] | int


def window_days(as_of: date, days: int = WINDOW_DAYS) -> tuple[date, date]:
    """The inclusive local-day window of `days` days ending `as_of` (§1: D-29 .. D)."""
    return as_of - timedelta(days=days - 1), as_of


def is_one_time_expense(entry: LedgerRow) -> bool:
    """True when an expense/fee is a one-time cost (excluded from recurring burn and runway)."""
    return entry.kind == "expense" and (entry.subtype or "") in ONE_TIME_EXPENSE_SUBTYPES


@dataclass(slots=True)
class LedgerTotals:
    """Exact micro totals of ledger entries over a window, plus entries skipped for missing FX."""

    gross_revenue: int = 0
    refunds: int = 0
    total_expenses: int = 0
    recurring_expenses: int = 0
    one_time_expenses: int = 0
    skipped_currencies: dict[str, int] | None = None

    @property
    def net_revenue(self) -> int:
        """Gross revenue plus (negative) refunds."""
        return self.gross_revenue + self.refunds


def ledger_totals(entries: Iterable[LedgerRow], start: date, end: date) -> LedgerTotals:
    """Sum ledger entries with start <= day <= end by §7/§9 bucket, skipping unconverted amounts."""
    totals = LedgerTotals(skipped_currencies={})
    skipped: dict[str, int] = {}
    for e in entries:
        if not (start <= e.day <= end):
            continue
        if e.amount_micros_reporting is None:
            cur = (e.currency or "").lower()
            skipped[cur] = skipped.get(cur, 0) + 1
            continue
        amount = int(e.amount_micros_reporting)
        if e.kind in REVENUE_KINDS:
            totals.gross_revenue += amount
        elif e.kind in REFUND_KINDS:
            totals.refunds += amount
        elif e.kind in EXPENSE_KINDS:
            totals.total_expenses += amount
            if is_one_time_expense(e):
                totals.one_time_expenses += amount
            else:
                totals.recurring_expenses += amount
        else:
            raise ValueError(f"unknown ledger kind {e.kind!r} on entry for {e.day}")
    totals.skipped_currencies = dict(sorted(skipped.items()))
    return totals


def _mrr_on(mrr_micros: MrrSource, day: date) -> int:
    if isinstance(mrr_micros, int):
        return mrr_micros
    if isinstance(mrr_micros, Mapping):
        return int(mrr_micros.get(day, 0))
    return int(mrr_micros(day))


def runway(cash_micros: int | None, recurring_burn_micros: int) -> Fraction | None:
    """Exact runway in months (cash / 30-day recurring burn); None without cash or without burn."""
    if cash_micros is None or recurring_burn_micros <= 0:
        return None
    return Fraction(cash_micros, recurring_burn_micros)


def two_places(value: Fraction | int) -> Decimal:
    """An exact value reported with 2 decimals, rounded half away from zero (months, ratios)."""
    return Decimal(round_half_away(Fraction(value) * 100)).scaleb(-2)


def cfo_metrics(
    as_of: date,
    ledger_entries: Iterable[LedgerRow],
    mrr_micros: MrrSource,
    cash_on_hand_cents: int | None,
    currency: str,
) -> dict[str, Any]:
    """The v1 API metrics object for the 30 local days ending `as_of` (§9), plus runway_days.

    `mrr_micros` is MRR in reporting micro-units (§4, already including manual recurring revenue) as
    an int, a mapping day -> micros (a missing day is 0) or a callable. Percent-like outputs
    (runway_months, runway_days) are Decimals with 2 places; money is integer cents.
    """
    start, end = window_days(as_of)
    t = ledger_totals(ledger_entries, start, end)
    mrr = _mrr_on(mrr_micros, as_of)
    burn = t.total_expenses - t.net_revenue
    recurring_burn = t.recurring_expenses - t.net_revenue
    cash_micros = None if cash_on_hand_cents is None else int(cash_on_hand_cents) * 10_000
    months = runway(cash_micros, recurring_burn)

    warnings: list[dict[str, str]] = []
    if cash_on_hand_cents is None:
        warnings.append(
            {
                "code": "missing_cash",
                "message": "cash_on_hand_cents is not set on the workspace, so runway is null.",
            }
        )
    skipped = t.skipped_currencies or {}
    if skipped:
        listed = ", ".join(f"{cur.upper()} ({n})" for cur, n in skipped.items())
        warnings.append(
            {
                "code": "missing_fx_rate",
                "message": f"Entries without an FX rate were left out of the totals: {listed}.",
            }
        )

    return {
        "as_of": as_of.isoformat(),
        "currency": currency.upper(),
        "gross_revenue_cents_30d": micros_to_cents(t.gross_revenue),
        "refunds_cents_30d": micros_to_cents(t.refunds),
        "net_revenue_cents_30d": micros_to_cents(t.net_revenue),
        "mrr_cents": micros_to_cents(mrr),
        # ARR is rounded from the exact 12 x MRR, not 12 x rounded MRR (§2).
        "arr_cents": micros_to_cents(12 * mrr),
        "burn_cents_30d": micros_to_cents(burn),
        "recurring_burn_cents_30d": micros_to_cents(recurring_burn),
        "one_time_expenses_cents_30d": micros_to_cents(t.one_time_expenses),
        "cash_on_hand_cents": cash_on_hand_cents,
        "runway_months": None if months is None else two_places(months),
        "runway_days": None if months is None else two_places(months * WINDOW_DAYS),
        "warnings": warnings,
        "total_expenses_cents_30d": micros_to_cents(t.total_expenses),
        "recurring_expenses_cents_30d": micros_to_cents(t.recurring_expenses),
        "skipped_currencies": skipped,
    }
