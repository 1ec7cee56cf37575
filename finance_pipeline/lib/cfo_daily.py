"""Daily series of the CFO metrics (§9) and daily revenue totals (§10) from per-day ledger sums.

The warehouse hands over the ledger already summed per (day, kind, subtype); those sums become
synthetic ledger entries, so the metric definitions stay in lib.cfo_metrics and a long window costs
days x groups, not days x entries. Unconverted entries (missing FX) stay one entry each, so the
skipped counts are counts of real entries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields
from datetime import date, timedelta
from fractions import Fraction
from typing import Any

from finance_pipeline.lib.alerts import AlertThresholds
from finance_pipeline.lib.cfo_metrics import (
    WINDOW_DAYS,
    LedgerEntry,
    cfo_metrics,
    ledger_totals,
    runway,
    two_places,
    window_days,
)
from finance_pipeline.lib.money import micros_to_cents


def as_date(value: date | str) -> date:
    """A DATE column value as a date (SQLite returns ISO text, PostgreSQL a date)."""
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def entries_by_day(groups: Iterable[Mapping[str, Any]]) -> dict[date, list[LedgerEntry]]:
    """Synthetic ledger entries per local day from summed ledger groups.

    Each group has day, kind, subtype, n (entries) and amount (their reporting sum, None when the
    group is the unconverted entries of `currency`).
    """
    out: dict[date, list[LedgerEntry]] = {}
    for g in groups:
        day = as_date(g["day"])
        base = {"workspace_id": "", "day": day, "kind": g["kind"], "subtype": g["subtype"]}
        bucket = out.setdefault(day, [])
        if g["amount"] is None:
            cur = g["currency"] or ""
            bucket.extend(
                LedgerEntry(
                    entry_id=f"skipped{i}",
                    amount_micros_native=0,
                    currency=cur,
                    amount_micros_reporting=None,
                    **base,
                )
                for i in range(int(g["n"]))
            )
        else:
            bucket.append(
                LedgerEntry(
                    entry_id="sum",
                    amount_micros_native=0,
                    currency="",
                    amount_micros_reporting=int(g["amount"]),
                    **base,
                )
            )
    return out


def revenue_day(day: date, entries: Iterable[LedgerEntry]) -> dict[str, Any]:
    """One mart.revenue_daily row (without workspace/currency) for the entries of one local day."""
    entries = list(entries)
    t = ledger_totals(entries, day, day)
    manual = sum(e.amount_micros_reporting or 0 for e in entries if e.kind == "manual_revenue")
    fees = sum(e.amount_micros_reporting or 0 for e in entries if e.kind == "fee")
    return {
        "day": day,
        "gross_revenue_micros": t.gross_revenue,
        "manual_revenue_micros": manual,
        "refunds_micros": t.refunds,
        "expenses_micros": t.total_expenses,
        "fees_micros": fees,
        "one_time_expenses_micros": t.one_time_expenses,
        "net_micros": t.gross_revenue - t.total_expenses,
        "net_revenue_micros": t.net_revenue,
        "skipped_currencies_json": t.skipped_currencies or {},
    }


def metrics_on(
    as_of: date,
    by_day: Mapping[date, list[LedgerEntry]],
    mrr_exact_micros: Fraction | int,
    cash_micros: int | None,
    currency: str,
) -> dict[str, Any]:
    """The cfo_metrics object for `as_of` with exact MRR/ARR and runway from exact cash micros.

    cfo_metrics takes whole-cent cash and integer MRR; the exact values are applied here so the only
    rounding is the one at the reported grain.
    """
    start, end = window_days(as_of)
    window = [e for i in range(WINDOW_DAYS) for e in by_day.get(start + timedelta(days=i), ())]
    cash_cents = None if cash_micros is None else micros_to_cents(cash_micros)
    m = cfo_metrics(as_of, window, 0, cash_cents, currency)
    mrr = Fraction(mrr_exact_micros)
    m["mrr_cents"] = micros_to_cents(mrr)
    m["arr_cents"] = micros_to_cents(12 * mrr)
    t = ledger_totals(window, start, end)
    months = runway(cash_micros, t.recurring_expenses - t.net_revenue)
    m["runway_months"] = None if months is None else two_places(months)
    m["runway_days"] = None if months is None else two_places(months * WINDOW_DAYS)
    return m


def revenue_entries(rows: Iterable[Mapping[str, Any]]) -> list[LedgerEntry]:
    """mart.revenue_daily rows as ledger entries, to bucket them with lib.revenue_analytics.

    Manual revenue and fees are already inside gross revenue and expenses, so they are not repeated.
    """
    out: list[LedgerEntry] = []
    for r in rows:
        day = as_date(r["day"])
        for kind, col in (
            ("gross_revenue", "gross_revenue_micros"),
            ("refund", "refunds_micros"),
            ("expense", "expenses_micros"),
        ):
            if r[col]:
                out.append(
                    LedgerEntry(
                        workspace_id=str(r.get("workspace_id", "")),
                        entry_id=f"{day}:{kind}",
                        day=day,
                        kind=kind,
                        amount_micros_native=int(r[col]),
                        currency=str(r.get("currency", "")),
                        amount_micros_reporting=int(r[col]),
                    )
                )
    return out


_THRESHOLD_FIELDS = {f.name for f in fields(AlertThresholds)}


def thresholds_from_settings(settings: Mapping[str, Any]) -> AlertThresholds:
    """Alert thresholds from a workspace's settings key "alert_thresholds" (defaults otherwise).

    Values are numbers or decimal strings, kept exact ("5.5" -> 11/2); unknown keys are an error so
    a typo does not silently fall back to a default.
    """
    raw = settings.get("alert_thresholds") or {}
    if not isinstance(raw, Mapping):
        raise ValueError("alert_thresholds must be an object of threshold name -> number")
    unknown = sorted(set(raw) - _THRESHOLD_FIELDS)
    if unknown:
        raise ValueError(
            f"unknown alert threshold(s) {', '.join(unknown)}; "
            f"expected {', '.join(sorted(_THRESHOLD_FIELDS))}"
        )
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"alert threshold {key} must be a number, got {value!r}")
        exact = Fraction(str(value)) if not isinstance(value, int) else Fraction(value)
        if exact < 0:
            raise ValueError(f"alert threshold {key} must not be negative")
        if key == "sync_delay_seconds":
            values[key] = int(exact)
        elif key == "refund_spike_min_cents":
            if exact.denominator != 1:
                raise ValueError(f"alert threshold {key} must be a whole number of cents")
            values[key] = int(exact)
        else:
            values[key] = int(exact) if exact.denominator == 1 else exact
    return AlertThresholds(**values)


# The v1 API metrics object's money fields, stored as they are in mart.cfo_metrics_daily
# (cash_on_hand_cents may be null), and the two totals the table keeps beside them.
SEED_CENTS_FIELDS = (
    "gross_revenue_cents_30d",
    "refunds_cents_30d",
    "net_revenue_cents_30d",
    "mrr_cents",
    "arr_cents",
    "burn_cents_30d",
    "recurring_burn_cents_30d",
    "one_time_expenses_cents_30d",
    "cash_on_hand_cents",
)
EXTRA_CENTS_FIELDS = ("total_expenses_cents_30d", "recurring_expenses_cents_30d")
