"""Cash ledger: one entry per money movement (docs/metrics.md §7), native and reporting currency.

- gross revenue: each succeeded charge on its local day, tax-exclusive (scaled by the paid
  invoice's `total_excluding_tax / total`);
- refunds: each succeeded refund on its own creation day, scaled like its charge, negative; a refund
  a credit note created is still one refund object, so it counts once;
- processing fees (balance transaction `fee`) are an expense (category PAYMENT_FEES);
- manual revenue on its date (a `refund` type is negative), cost records, expense events and
  per-customer usage costs as expenses.

Every entry converts at its own local day's rate; with no rate, the reporting amount is None and the
entry is counted in `skipped_currencies`, never treated as the reporting currency (§2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction
from typing import Any

from finance_pipeline.lib.money import minor_to_micros, round_half_away
from finance_pipeline.lib.timeutil import local_day

Row = Mapping[str, Any]
# (currency, day) -> reporting units per unit, or None when unknown.
RateLookup = Callable[[str, date], Fraction | None]

# Each source object yields at most one entry, named `<prefix>:<source id>`: an incremental build
# deletes and rebuilds the entries of changed source objects by these names.
ENTRY_PREFIX: dict[str, str] = {
    "raw.stripe_charges": "gross",
    "raw.stripe_refunds": "refund",
    "raw.stripe_balance_transactions": "fee",
    "raw.manual_revenue": "manual_revenue",
    "raw.cost_records": "cost",
    "raw.expense_events": "expense",
    "raw.usage_costs": "usage",
}


def ledger_entry_id(source_table: str, source_id: str) -> str:
    """The ledger entry id of a source object (whether or not it yields an entry)."""
    return f"{ENTRY_PREFIX[source_table]}:{source_id}"


@dataclass(frozen=True)
class LedgerRow:
    """One money movement, as stored in core.ledger."""

    workspace_id: str
    entry_id: str
    day: date
    occurred_at: int | None
    kind: str  # gross_revenue | refund | manual_revenue | expense | fee
    subtype: str | None
    category: str | None
    customer_id: str | None
    amount_micros: int
    currency: str
    amount_reporting_micros: int | None
    reporting_currency: str
    fx_rate: str | None
    source_table: str
    source_id: str
    description: str | None = None


_ONE = Fraction(1)


def fx_lookup(rates: Iterable[Row], reporting_currency: str) -> RateLookup:
    """Daily rates (rows of base, currency, date, rate) into a lookup; the base itself is 1."""
    table: dict[tuple[str, date], Fraction] = {}
    for r in rates:
        if r["base"] == reporting_currency:
            day = r["date"] if isinstance(r["date"], date) else date.fromisoformat(str(r["date"]))
            table[(r["currency"], day)] = Fraction(Decimal(str(r["rate"])))

    def rate(currency: str, day: date) -> Fraction | None:
        if currency == reporting_currency:
            return _ONE  # immutable: one object serves every entry in the reporting currency
        return table.get((currency, day))

    return rate


def tax_exclusive_ratio(invoice: Row | None) -> Fraction:
    """Share of a payment that is revenue net of tax: total_excluding_tax / total (1 if no tax)."""
    if not invoice:
        return Fraction(1)
    total, excl = invoice.get("total"), invoice.get("total_excluding_tax")
    if not total or excl is None:
        return Fraction(1)
    return Fraction(int(excl), int(total))


class LedgerBuilder:
    """Collects ledger rows for one workspace."""

    def __init__(
        self,
        workspace_id: str,
        reporting_currency: str,
        tz: str,
        rate: RateLookup,
        *,
        sink: Callable[[list[LedgerRow]], None] | None = None,
        sink_every: int = 5000,
    ) -> None:
        """With `sink`, every `sink_every` rows are handed to it and dropped from `rows` (a full
        build parks them on disk: memory bounded by a chunk, not by the workspace)."""
        self.workspace_id = workspace_id
        self.reporting = reporting_currency
        self.tz = tz
        self.rate = rate
        self.rows: list[LedgerRow] = []
        self._sink = sink
        self._sink_every = sink_every
        # Rate texts per (currency, day): a tuple key hashes far cheaper than a Fraction.
        self._rate_texts: dict[tuple[str, date], str] = {}

    def add(
        self,
        *,
        entry_id: str,
        day: date,
        occurred_at: int | None,
        kind: str,
        amount: Fraction | int,
        currency: str,
        source_table: str,
        source_id: str,
        subtype: str | None = None,
        category: str | None = None,
        customer_id: str | None = None,
        description: str | None = None,
    ) -> None:
        """Add one entry; amounts are exact micro-units, rounded once here to whole micro-units."""
        rate = self.rate(currency, day)
        # Most amounts are whole micro-units already: no Fraction is built for them.
        exact = amount if type(amount) is int else Fraction(amount)
        native = round_half_away(exact)
        if rate is None:
            reporting = rate_text = None
        else:
            reporting = native if rate == 1 else round_half_away(exact * rate)
            rate_text = self._rate_texts.get((currency, day))
            if rate_text is None:
                # One rate per currency and day serves many entries.
                rate_text = self._rate_texts[(currency, day)] = _rate_text(rate)
        self.rows.append(
            LedgerRow(
                workspace_id=self.workspace_id,
                entry_id=entry_id,
                day=day,
                occurred_at=occurred_at,
                kind=kind,
                subtype=subtype,
                category=category,
                customer_id=customer_id,
                amount_micros=native,
                currency=currency,
                amount_reporting_micros=reporting,
                reporting_currency=self.reporting,
                fx_rate=rate_text,
                source_table=source_table,
                source_id=source_id,
                description=description,
            )
        )
        if self._sink is not None and len(self.rows) >= self._sink_every:
            self.flush()

    def flush(self) -> None:
        """Hand the rows collected so far to the sink (if any) and start a new list."""
        if self._sink is not None and self.rows:
            self._sink(self.rows)
            self.rows = []

    def stripe(
        self,
        charges: Iterable[Row],
        refunds: Iterable[Row],
        invoice_for_charge: Mapping[str, Row],
        balance_transactions: Iterable[Row],
        refunded_charges: Iterable[Row] = (),
    ) -> None:
        """Charges, refunds and fees from Stripe raw rows.

        `refunded_charges` are charges whose refunds are among `refunds` but which get no entry
        here themselves (an incremental build of a refund): they give the refund its tax ratio
        and customer, as every charge does in a full build.
        """
        charge_ratio: dict[str, Fraction] = {}
        charge_customer: dict[str, str | None] = {}
        for ch in refunded_charges:
            charge_ratio[ch["id"]] = tax_exclusive_ratio(invoice_for_charge.get(ch["id"]))
            charge_customer[ch["id"]] = ch.get("customer")
        for ch in charges:
            ratio = tax_exclusive_ratio(invoice_for_charge.get(ch["id"]))
            charge_ratio[ch["id"]] = ratio
            charge_customer[ch["id"]] = ch.get("customer")
            if ch.get("status") != "succeeded":
                continue
            self.add(
                entry_id=ledger_entry_id("raw.stripe_charges", ch["id"]),
                day=local_day(int(ch["created"]), self.tz),
                occurred_at=int(ch["created"]),
                kind="gross_revenue",
                amount=_times(minor_to_micros(int(ch["amount"]), ch["currency"]), ratio),
                currency=ch["currency"],
                customer_id=ch.get("customer"),
                source_table="raw.stripe_charges",
                source_id=ch["id"],
                subtype="stripe",
            )
        for rf in refunds:
            if rf.get("status") != "succeeded":
                continue
            ratio = charge_ratio.get(rf.get("charge") or "", Fraction(1))
            self.add(
                entry_id=ledger_entry_id("raw.stripe_refunds", rf["id"]),
                day=local_day(int(rf["created"]), self.tz),
                occurred_at=int(rf["created"]),
                kind="refund",
                amount=_times(-minor_to_micros(int(rf["amount"]), rf["currency"]), ratio),
                currency=rf["currency"],
                customer_id=charge_customer.get(rf.get("charge") or ""),
                source_table="raw.stripe_refunds",
                source_id=rf["id"],
                subtype="stripe",
            )
        for bt in balance_transactions:
            fee = int(bt.get("fee") or 0)
            if fee == 0:
                continue
            self.add(
                entry_id=ledger_entry_id("raw.stripe_balance_transactions", bt["id"]),
                day=local_day(int(bt["created"]), self.tz),
                occurred_at=int(bt["created"]),
                kind="fee",
                amount=minor_to_micros(fee, bt["currency"]),
                currency=bt["currency"],
                category="PAYMENT_FEES",
                subtype="recurring_expense",
                source_table="raw.stripe_balance_transactions",
                source_id=bt["id"],
            )

    def manual(
        self,
        revenue: Iterable[Row],
        cost_records: Iterable[Row],
        expense_events: Iterable[Row],
        usage_costs: Iterable[Row],
    ) -> None:
        """Manual revenue and every ingested expense."""
        for r in revenue:
            refund = r["type"] == "refund"
            self.add(
                entry_id=ledger_entry_id("raw.manual_revenue", r["external_id"]),
                day=_day(r["date"]),
                occurred_at=None,
                kind="refund" if refund else "manual_revenue",
                subtype=r["subtype"],
                category=r["type"],
                amount=int(r["amount_micros"]),
                currency=r["currency"],
                customer_id=r.get("customer_id"),
                source_table="raw.manual_revenue",
                source_id=r["external_id"],
                description=r.get("note"),
            )
        for c in cost_records:
            self.add(
                entry_id=ledger_entry_id("raw.cost_records", c["external_id"]),
                day=_day(c["date"]),
                occurred_at=None,
                kind="expense",
                subtype="recurring_expense" if c["is_recurring"] else "one_time_expense",
                category=c["category"],
                amount=int(c["amount_micros"]),
                currency=c["currency"],
                customer_id=c.get("customer_tag"),
                source_table="raw.cost_records",
                source_id=c["external_id"],
                description=c.get("name"),
            )
        for e in expense_events:
            self.add(
                entry_id=ledger_entry_id("raw.expense_events", e["external_id"]),
                day=_day(e["occurred_on"]),
                occurred_at=None,
                kind="expense",
                subtype=e["subtype"],
                category="OTHER",
                amount=int(e["amount_micros"]),
                currency=e["currency"],
                source_table="raw.expense_events",
                source_id=e["external_id"],
                description=e.get("vendor"),
            )
        for u in usage_costs:
            occurred = u.get("occurred_at")
            self.add(
                entry_id=ledger_entry_id("raw.usage_costs", u["external_id"]),
                day=local_day(int(occurred), self.tz) if occurred else _day(u["occurred_on"]),
                occurred_at=None if occurred is None else int(occurred),
                kind="expense",
                # Usage costs recur with usage every month: they count toward recurring burn.
                subtype="recurring_expense",
                category="USAGE",
                amount=int(u["cost_micros"]),
                currency=u["currency"],
                customer_id=u["customer_tag"],
                source_table="raw.usage_costs",
                source_id=u["external_id"],
                description=u.get("model"),
            )


def _times(micros: int, ratio: Fraction) -> Fraction | int:
    """micros x ratio, exactly; without tax (a ratio of 1) the whole micros themselves."""
    return micros if ratio == 1 else micros * ratio


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _rate_text(rate: Fraction) -> str:
    if rate.denominator == 1:
        return str(rate.numerator)
    dec = Decimal(rate.numerator) / Decimal(rate.denominator)
    return format(dec.normalize(), "f")
