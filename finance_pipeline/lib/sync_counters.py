"""The margins API's revenue-sync counters (GET /api/stripe/revenue-sync, docs/requests.md) from
the invoices one Stripe sync wrote. Pure: the caller reads the rows and the FX rates.

Definitions (one workspace, one sync):
- invoicesFetched: invoices the sync wrote (listed or refreshed by id), each counted once;
- customersProcessed: distinct Stripe customers of those invoices (an invoice without a customer
  counts none);
- periodsUpdated: distinct (customer, month) revenue periods of those invoices, the month being
  the local month (workspace time zone) of the invoice's rate day: its paid day, else its creation
  day, the day recognized revenue converts it at (docs/metrics.md §8);
- invoicesSkipped / skippedCurrencies: those invoices whose currency has no FX rate to the
  reporting currency on that rate day, so recognized revenue and the margins leave them out
  (docs/metrics.md §2 skipped_currencies), in total and per lower-case currency;
- autoMatchesCreated and durationMs are not read from invoices: the caller passes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from typing import Any

from finance_pipeline.lib.timeutil import local_day

RateLookup = Callable[[str, date], Fraction | None]


@dataclass(frozen=True, slots=True)
class SyncCounters:
    """What one Stripe sync did for a workspace, in the margins API's revenue-sync terms."""

    invoices_fetched: int
    customers_processed: int
    periods_updated: int
    invoices_skipped: int
    skipped_currencies: dict[str, int]
    auto_matches_created: int
    duration_ms: int

    def as_api(self) -> dict[str, Any]:
        """The seed's camelCase fields (stored as the request's result_json)."""
        return {
            "customersProcessed": self.customers_processed,
            "periodsUpdated": self.periods_updated,
            "autoMatchesCreated": self.auto_matches_created,
            "invoicesFetched": self.invoices_fetched,
            "invoicesSkipped": self.invoices_skipped,
            "skippedCurrencies": dict(self.skipped_currencies),
            "durationMs": self.duration_ms,
        }


def rate_day(invoice: Mapping[str, Any], tz: str) -> date:
    """The local day an invoice's amounts convert at: paid day, else creation day (§8)."""
    return local_day(int(invoice["paid_at"] or invoice["created"]), tz)


def sync_counters(
    invoices: Iterable[Mapping[str, Any]],
    rate: RateLookup,
    tz: str,
    *,
    auto_matches_created: int,
    duration_ms: int,
) -> SyncCounters:
    """Counters of the invoices a sync wrote (rows with id, customer, currency, paid_at, created);
    `rate(currency, day)` is the reporting-currency rate lookup (None: no rate that day)."""
    seen: set[str] = set()
    customers: set[str] = set()
    periods: set[tuple[str, str]] = set()
    skipped: dict[str, int] = {}
    for inv in invoices:
        if inv["id"] in seen:  # listed and then refreshed in the same sync: one invoice
            continue
        seen.add(inv["id"])
        day = rate_day(inv, tz)
        customer = inv["customer"]
        if customer:
            customers.add(customer)
            periods.add((customer, f"{day.year:04d}-{day.month:02d}"))
        currency = str(inv["currency"] or "").lower()
        if rate(currency, day) is None:
            skipped[currency] = skipped.get(currency, 0) + 1
    return SyncCounters(
        invoices_fetched=len(seen),
        customers_processed=len(customers),
        periods_updated=len(periods),
        invoices_skipped=sum(skipped.values()),
        skipped_currencies=dict(sorted(skipped.items())),
        auto_matches_created=auto_matches_created,
        duration_ms=duration_ms,
    )
