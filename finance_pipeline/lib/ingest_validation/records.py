"""Ingest records, their vocabulary and limits, content ids, and formatting back to CSV rows."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final

from finance_pipeline.lib.money import MICROS_PER_UNIT, minor_unit_exponent

# --------------------------------------------------------------------------------------------------
# Vocabulary and limits
# --------------------------------------------------------------------------------------------------

KINDS: Final = ("costs", "expenses", "usage_costs", "revenue", "fx_rates")

COST_CATEGORIES: Final = (
    "INFRASTRUCTURE",
    "THIRD_PARTY",
    "MARKETING",
    "TOOLS",
    "OTHER",
    "PAYMENT_FEES",
    "COGS",
)
EXPENSE_SUBTYPES: Final = ("recurring_expense", "one_time_expense")
REVENUE_TYPES: Final = (
    "subscription",
    "one_time",
    "lifetime",
    "advertising",
    "enterprise",
    "affiliate",
    "refund",
    "other",
)
REVENUE_SUBTYPES: Final = ("recurring", "one_time")

MAX_ROWS: Final = 100_000
MIN_DATE: Final = dt.date(2000, 1, 1)
MAX_DATE: Final = dt.date(2100, 12, 31)
MAX_AMOUNT_UNITS: Final = 10**12  # exclusive bound, keeps micros inside int64
MAX_AMOUNT_MICROS: Final = MAX_AMOUNT_UNITS * MICROS_PER_UNIT
MAX_REQUEST_COUNT: Final = 10**12
MAX_RATE_DIGITS: Final = 12
MIN_RATE: Final = Decimal("1e-9")
MAX_RATE: Final = Decimal("1e9")
MAX_ID_LENGTH: Final = 255
MAX_TEXT_LENGTH: Final = 255
MAX_NOTE_LENGTH: Final = 2000
AUTO_ID_PREFIX: Final = "auto_"

# The exact headers the simulator writes; `format_csv` writes them too.
CSV_HEADERS: Final[dict[str, tuple[str, ...]]] = {
    "costs": (
        "external_id",
        "name",
        "amount",
        "currency",
        "category",
        "is_recurring",
        "note",
        "date",
        "customer_tag",
    ),
    "expenses": ("external_id", "subtype", "amount_cents", "currency", "occurred_at", "vendor"),
    "usage_costs": (
        "external_id",
        "customer_tag",
        "model",
        "cost_microdollars",
        "request_count",
        "occurred_at",
        "currency",
    ),
    "revenue": (
        "external_id",
        "type",
        "subtype",
        "amount",
        "currency",
        "date",
        "customer_id",
        "source",
        "note",
    ),
    "fx_rates": ("date", "currency", "rate", "base"),
}

# Every column each kind understands (canonical snake_case names). Revenue takes both vocabularies.
KIND_COLUMNS: Final[dict[str, frozenset[str]]] = {
    **{k: frozenset(v) for k, v in CSV_HEADERS.items()},
    "revenue": frozenset(CSV_HEADERS["revenue"]) | {"amount_cents", "occurred_at", "description"},
}
# Each inner tuple is a set of alternatives: at least one of them must be a column.
REQUIRED_COLUMNS: Final[dict[str, tuple[tuple[str, ...], ...]]] = {
    "costs": (("name",), ("amount",), ("category",), ("date",)),
    "expenses": (("subtype",), ("amount_cents",), ("occurred_at",)),
    "usage_costs": (("customer_tag",), ("model",), ("cost_microdollars",), ("occurred_at",)),
    "revenue": (("type", "subtype"), ("amount", "amount_cents"), ("date", "occurred_at")),
    "fx_rates": (("date",), ("currency",), ("rate",), ("base",)),
}
# Alternative spellings seen in the seeds' exports (after camelCase -> snake_case).
COLUMN_ALIASES: Final[dict[str, str]] = {"id": "external_id", "tag_value": "customer_tag"}
# Read-only columns of the seeds' exports, dropped without complaint.
IGNORED_COLUMNS: Final = frozenset({"created_at"})


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CostRecord:
    """A cost (products API cost object): money spent on `name`, optionally tagged to a customer."""

    external_id: str
    name: str
    amount_micros: int
    currency: str
    category: str
    is_recurring: bool
    date: dt.date
    note: str | None = None
    customer_tag: str | None = None


@dataclass(frozen=True, slots=True)
class ExpenseEvent:
    """An expense (v1 API): recurring ones count in recurring burn and runway."""

    external_id: str
    subtype: str
    amount_micros: int
    currency: str
    date: dt.date
    vendor: str | None = None

    @property
    def is_recurring(self) -> bool:
        """True for recurring_expense, which counts in recurring_burn and runway."""
        return self.subtype == "recurring_expense"


@dataclass(frozen=True, slots=True)
class UsageCostEvent:
    """A metered cost (margins API): what serving `customer_tag` with `model` cost, for margins."""

    external_id: str
    customer_tag: str
    model: str
    amount_micros: int
    currency: str
    request_count: int
    date: dt.date
    occurred_at: dt.datetime | None = None  # UTC instant when given; `date` is its UTC day


@dataclass(frozen=True, slots=True)
class ManualRevenue:
    """A manual revenue entry (products API types, v1 API subtypes); refunds are negative."""

    external_id: str
    type: str
    subtype: str
    amount_micros: int
    currency: str
    date: dt.date
    customer_id: str | None = None
    source: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class FxRate:
    """One unit of `currency` is worth `rate` units of `base` (the reporting currency) on `date`."""

    date: dt.date
    currency: str
    base: str
    rate: Decimal


Record = CostRecord | ExpenseEvent | UsageCostEvent | ManualRevenue | FxRate

RECORD_TYPES: Final[dict[str, type]] = {
    "costs": CostRecord,
    "expenses": ExpenseEvent,
    "usage_costs": UsageCostEvent,
    "revenue": ManualRevenue,
    "fx_rates": FxRate,
}
_KIND_OF_TYPE: Final[dict[type, str]] = {v: k for k, v in RECORD_TYPES.items()}


@dataclass(frozen=True, slots=True)
class RowError:
    """One problem with one input row (or the header/file): where, which field, and what to do."""

    line: int
    field: str | None
    code: str
    message: str
    value: str | None = None  # the offending input as text, for reports

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"

    def as_api_error(self) -> dict[str, object]:
        """The inner object of the v1 API's 422 error envelope (the API adds request_id)."""
        return {
            "type": "invalid_request",
            "code": self.code,
            "message": self.message,
            "param": self.field,
        }


@dataclass(frozen=True, slots=True)
class DuplicateRow:
    """A row skipped because an identical record with the same key came earlier in the input."""

    line: int
    key: str
    first_line: int


@dataclass(slots=True)
class ValidationResult:
    """Outcome of validating one file or request: the valid records and every problem found."""

    kind: str | None
    records: list[Record] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    duplicates: list[DuplicateRow] = field(default_factory=list)
    rows_read: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing is wrong; the file/request should be ingested only then."""
        return not self.errors

    @property
    def duplicate_count(self) -> int:
        """Rows skipped as exact repeats (the API's `duplicates` count within the request)."""
        return len(self.duplicates)


class KindDetectionError(ValueError):
    """Neither the file name nor the header tells which kind of rows a file holds."""


# --------------------------------------------------------------------------------------------------
# Content ids and formatting (the inverse of parsing)
# --------------------------------------------------------------------------------------------------


def _canonical_value(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return value


def content_external_id(record: Record) -> str:
    """Deterministic id from a record's normalized content (all fields but external_id)."""
    kind = _KIND_OF_TYPE[type(record)]
    payload: dict[str, object] = {"kind": kind}
    for f in dataclasses.fields(record):
        if f.name != "external_id":
            payload[f.name] = _canonical_value(getattr(record, f.name))
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return AUTO_ID_PREFIX + hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def format_units(amount_micros: int, currency: str) -> str:
    """Micro-units -> whole-unit decimal text with the currency's minor digits ("20.00", "1500")."""
    places = minor_unit_exponent(currency)
    value = Decimal(amount_micros).scaleb(-6).normalize()
    if value.as_tuple().exponent > -places:  # type: ignore[operator]
        # Only pads zeros. A value finer than the currency keeps its digits (and fails parsing)
        # rather than being rounded here.
        value = value.quantize(Decimal(1).scaleb(-places))
    return format(value, "f")


def _format_instant(instant: dt.datetime) -> str:
    text = instant.astimezone(dt.UTC).replace(tzinfo=None).isoformat()
    return text + "Z"


def record_to_row(record: Record) -> dict[str, str]:
    """A record as the CSV row (column -> text) the simulator writes; parsing it gives it back."""
    if isinstance(record, CostRecord):
        return {
            "external_id": record.external_id,
            "name": record.name,
            "amount": format_units(record.amount_micros, record.currency),
            "currency": record.currency,
            "category": record.category,
            "is_recurring": "true" if record.is_recurring else "false",
            "note": record.note or "",
            "date": record.date.isoformat(),
            "customer_tag": record.customer_tag or "",
        }
    if isinstance(record, ExpenseEvent):
        cents, rest = divmod(record.amount_micros, 10_000)
        if rest:
            raise ValueError(f"{record.amount_micros} micros is not a whole number of cents")
        return {
            "external_id": record.external_id,
            "subtype": record.subtype,
            "amount_cents": str(cents),
            "currency": record.currency,
            "occurred_at": record.date.isoformat(),
            "vendor": record.vendor or "",
        }
    if isinstance(record, UsageCostEvent):
        when = record.occurred_at
        return {
            "external_id": record.external_id,
            "customer_tag": record.customer_tag,
            "model": record.model,
            "cost_microdollars": str(record.amount_micros),
            "request_count": str(record.request_count),
            "occurred_at": _format_instant(when) if when else record.date.isoformat(),
            "currency": record.currency,
        }
    if isinstance(record, ManualRevenue):
        return {
            "external_id": record.external_id,
            "type": record.type,
            "subtype": record.subtype,
            "amount": format_units(abs(record.amount_micros), record.currency),
            "currency": record.currency,
            "date": record.date.isoformat(),
            "customer_id": record.customer_id or "",
            "source": record.source or "",
            "note": record.note or "",
        }
    if isinstance(record, FxRate):
        return {
            "date": record.date.isoformat(),
            "currency": record.currency,
            "rate": format(record.rate.normalize(), "f"),
            "base": record.base,
        }
    raise TypeError(f"not an ingest record: {record!r}")


def format_csv(kind: str, records: Iterable[Record]) -> str:
    """Records of one kind as CSV text with the simulator's header (UTF-8 text, no BOM)."""
    header = CSV_HEADERS[_check_kind(kind)]
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    for record in records:
        if _KIND_OF_TYPE.get(type(record)) != kind:
            raise TypeError(f"{type(record).__name__} is not a {kind} record")
        writer.writerow(record_to_row(record))
    return out.getvalue()


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    return kind
