"""Row validators per kind, and rows -> records with external ids and in-input deduplication."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Final

from finance_pipeline.lib.ingest_validation.fields import (
    _EXPECT,
    _amount_cents,
    _amount_units,
    _bool,
    _choice,
    _currency,
    _date,
    _date_or_instant,
    _decimal,
    _exclusive,
    _external_id,
    _integer,
    _json_type,
    _Row,
    _shown,
    _text,
)
from finance_pipeline.lib.ingest_validation.records import (
    AUTO_ID_PREFIX,
    COLUMN_ALIASES,
    COST_CATEGORIES,
    EXPENSE_SUBTYPES,
    IGNORED_COLUMNS,
    KIND_COLUMNS,
    MAX_AMOUNT_MICROS,
    MAX_ID_LENGTH,
    MAX_NOTE_LENGTH,
    MAX_RATE,
    MAX_RATE_DIGITS,
    MAX_REQUEST_COUNT,
    MAX_ROWS,
    MIN_RATE,
    REVENUE_SUBTYPES,
    REVENUE_TYPES,
    CostRecord,
    DuplicateRow,
    ExpenseEvent,
    FxRate,
    ManualRevenue,
    Record,
    RowError,
    UsageCostEvent,
    ValidationResult,
    _check_kind,
    content_external_id,
)

_Validator = Callable[[_Row], Record | None]

# --------------------------------------------------------------------------------------------------
# Row validators, one per kind
# --------------------------------------------------------------------------------------------------


def _validate_cost(row: _Row) -> CostRecord | None:
    external_id = _external_id(row)
    name = _text(row, "name", required=True)
    currency = _currency(row)
    amount = _amount_units(row, "amount", currency, hint="give the cost as a positive amount")
    category = _choice(row, "category", COST_CATEGORIES, upper=True, what="a cost category")
    is_recurring = _bool(row, "is_recurring", default=False)
    note = _text(row, "note", max_len=MAX_NOTE_LENGTH, multiline=True)
    day = _date(row, "date")
    customer_tag = _text(row, "customer_tag", max_len=MAX_ID_LENGTH)
    if row.errors:
        return None
    return CostRecord(
        external_id=external_id,
        name=name,  # type: ignore[arg-type]
        amount_micros=amount,  # type: ignore[arg-type]
        currency=currency,  # type: ignore[arg-type]
        category=category,  # type: ignore[arg-type]
        is_recurring=is_recurring,  # type: ignore[arg-type]
        date=day,  # type: ignore[arg-type]
        note=note,
        customer_tag=customer_tag,
    )


def _validate_expense(row: _Row) -> ExpenseEvent | None:
    external_id = _external_id(row)
    subtype = _choice(row, "subtype", EXPENSE_SUBTYPES, upper=False, what="an expense subtype")
    currency = _currency(row)
    amount = _amount_cents(row, "amount_cents", currency)
    day = _date(row, "occurred_at")
    vendor = _text(row, "vendor")
    if row.errors:
        return None
    return ExpenseEvent(
        external_id=external_id,
        subtype=subtype,  # type: ignore[arg-type]
        amount_micros=amount,  # type: ignore[arg-type]
        currency=currency,  # type: ignore[arg-type]
        date=day,  # type: ignore[arg-type]
        vendor=vendor,
    )


def _validate_usage(row: _Row) -> UsageCostEvent | None:
    external_id = _external_id(row)
    customer_tag = _text(row, "customer_tag", required=True, max_len=MAX_ID_LENGTH)
    model = _text(row, "model", required=True)
    currency = _currency(row)
    raw_cost = row.get("cost_microdollars")
    cost: int | None = None
    if raw_cost is None:
        row.missing("cost_microdollars")
    else:
        cost = _integer(
            row,
            "cost_microdollars",
            raw_cost,
            minimum=0,
            upper=MAX_AMOUNT_MICROS,
            expect=_EXPECT["cost_microdollars"],
            unit="micro-units",
        )
    raw_count = row.get("request_count")
    count: int | None = 1
    if raw_count is not None:
        count = _integer(
            row,
            "request_count",
            raw_count,
            minimum=0,
            upper=MAX_REQUEST_COUNT,
            expect=_EXPECT["request_count"],
            unit="requests",
        )
    when = _date_or_instant(row, "occurred_at")
    if row.errors or when is None:
        return None
    return UsageCostEvent(
        external_id=external_id,
        customer_tag=customer_tag,  # type: ignore[arg-type]
        model=model,  # type: ignore[arg-type]
        amount_micros=cost,  # type: ignore[arg-type]
        currency=currency,  # type: ignore[arg-type]
        request_count=count,  # type: ignore[arg-type]
        date=when[0],
        occurred_at=when[1],
    )


def _validate_revenue(row: _Row) -> ManualRevenue | None:
    external_id = _external_id(row)
    both_types = row.get("type") is not None and row.get("subtype") is not None
    rtype: str | None = None
    subtype: str | None = None
    if row.get("type") is not None:
        rtype = _choice(row, "type", REVENUE_TYPES, upper=False, what="a revenue type")
    if row.get("subtype") is not None:
        subtype = _choice(row, "subtype", REVENUE_SUBTYPES, upper=False, what="a revenue subtype")
    if row.get("type") is None and row.get("subtype") is None:
        row.missing(
            "type", "one of " + ", ".join(REVENUE_TYPES) + " (or subtype recurring|one_time)"
        )
    if both_types and rtype is not None and subtype is not None:
        derived = "recurring" if rtype == "subscription" else "one_time"
        if subtype != derived:
            row.fail(
                "subtype",
                "conflicting_fields",
                f"subtype '{subtype}' contradicts type '{rtype}': only type subscription is "
                f"recurring, so type {rtype} needs subtype {derived}; leave subtype empty to "
                "derive it",
                row.get("subtype"),
            )
    if rtype is None and subtype is not None and not both_types:
        rtype = "subscription" if subtype == "recurring" else "one_time"
    if rtype is not None and subtype is None and not both_types:
        subtype = "recurring" if rtype == "subscription" else "one_time"

    currency = _currency(row)
    amount: int | None = None
    if _exclusive(row, "amount", "amount_cents"):
        if row.get("amount_cents") is not None:
            amount = _amount_cents(row, "amount_cents", currency)
        else:
            amount = _amount_units(
                row,
                "amount",
                currency,
                hint="give the positive amount; type refund is stored as negative",
            )
    day: dt.date | None = None
    if _exclusive(row, "date", "occurred_at"):
        day = _date(row, "occurred_at" if row.get("occurred_at") is not None else "date")
    note: str | None = None
    if _exclusive(row, "note", "description"):
        key = "description" if row.get("description") is not None else "note"
        note = _text(row, key, max_len=MAX_NOTE_LENGTH, multiline=True)
    customer_id = _text(row, "customer_id", max_len=MAX_ID_LENGTH)
    source = _text(row, "source")
    if row.errors:
        return None
    signed = -amount if rtype == "refund" else amount  # type: ignore[operator]
    return ManualRevenue(
        external_id=external_id,
        type=rtype,  # type: ignore[arg-type]
        subtype=subtype,  # type: ignore[arg-type]
        amount_micros=signed,  # type: ignore[arg-type]
        currency=currency,  # type: ignore[arg-type]
        date=day,  # type: ignore[arg-type]
        customer_id=customer_id,
        source=source,
        note=note,
    )


def _validate_fx(row: _Row) -> FxRate | None:
    day = _date(row, "date")
    currency = _currency(row, "currency", required=True)
    base = _currency(row, "base", required=True)
    rate: Decimal | None = None
    raw = row.get("rate")
    if raw is None:
        row.missing("rate")
    else:
        value = _decimal(row, "rate", raw, money=False, expect=_EXPECT["rate"])
        if value is not None:
            digits = len(value.normalize().as_tuple().digits)
            if value <= 0:
                row.fail("rate", "invalid_value", f"rate {_shown(raw)} must be greater than 0", raw)
            elif digits > MAX_RATE_DIGITS:
                row.fail(
                    "rate",
                    "invalid_value",
                    f"rate {_shown(raw)} has {digits} significant digits; at most "
                    f"{MAX_RATE_DIGITS} are allowed",
                    raw,
                )
            elif not MIN_RATE <= value <= MAX_RATE:
                row.fail(
                    "rate",
                    "invalid_value",
                    f"rate {_shown(raw)} is outside the plausible range 0.000000001 to 1000000000",
                    raw,
                )
            else:
                rate = value.normalize()
    if currency is not None and base is not None and currency == base:
        row.fail(
            "base",
            "invalid_value",
            f"base '{base.upper()}' is the same as currency '{currency.upper()}'; a rate converts "
            "one currency into a different one",
            row.get("base"),
        )
    if row.errors:
        return None
    return FxRate(date=day, currency=currency, base=base, rate=rate)  # type: ignore[arg-type]


_VALIDATORS: Final[dict[str, _Validator]] = {
    "costs": _validate_cost,
    "expenses": _validate_expense,
    "usage_costs": _validate_usage,
    "revenue": _validate_revenue,
    "fx_rates": _validate_fx,
}

# Input names of record fields, for "differs in ..." messages.
_INPUT_NAMES: Final[dict[str, dict[str, str]]] = {
    "costs": {"amount_micros": "amount"},
    "expenses": {"amount_micros": "amount_cents", "date": "occurred_at"},
    "usage_costs": {"amount_micros": "cost_microdollars", "date": "occurred_at"},
    "revenue": {"amount_micros": "amount"},
    "fx_rates": {},
}
# --------------------------------------------------------------------------------------------------
# Rows -> records
# --------------------------------------------------------------------------------------------------


def canonical_column(name: str) -> str:
    """A header or JSON key in canonical snake_case: 'isRecurring' -> 'is_recurring', 'id' -> ..."""
    text = name.strip().lstrip("\ufeff").strip()
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", text)
    text = re.sub(r"[\s\-]+", "_", text).lower()
    return COLUMN_ALIASES.get(text, text)


def _row_values(
    kind: str, line: int, raw_row: object, errors: list[RowError]
) -> dict[str, object] | None:
    """Canonical field -> value for an API/DictReader row; unknown or repeated keys are errors."""
    if not isinstance(raw_row, Mapping):
        errors.append(
            RowError(
                line, None, "invalid_type", f"each row must be an object; got {_json_type(raw_row)}"
            )
        )
        return None
    known = KIND_COLUMNS[kind]
    values: dict[str, object] = {}
    origin: dict[str, str] = {}
    ok = True
    for key, value in raw_row.items():
        if key is None:  # csv.DictReader puts surplus cells under None
            extra = len(value) if isinstance(value, list) else 1
            errors.append(
                RowError(
                    line,
                    None,
                    "invalid_value",
                    f"the row has {extra} more value(s) than the header has columns; quote values "
                    "that contain commas",
                )
            )
            ok = False
            continue
        if not isinstance(key, str):
            errors.append(
                RowError(line, str(key), "invalid_type", f"field name {key!r} is not a string")
            )
            ok = False
            continue
        name = canonical_column(key)
        if name in IGNORED_COLUMNS:
            continue
        if name not in known:
            errors.append(
                RowError(
                    line,
                    key,
                    "unknown_field",
                    f"unknown field '{key}'; {kind} rows take {', '.join(sorted(known))}",
                )
            )
            ok = False
            continue
        if name in origin:
            errors.append(
                RowError(
                    line,
                    name,
                    "duplicate",
                    f"both '{origin[name]}' and '{key}' are given; they mean the same field, "
                    "give only one",
                )
            )
            ok = False
            continue
        origin[name] = key
        values[name] = value
    return values if ok else None


def _key(record: Record) -> str:
    if isinstance(record, FxRate):
        return f"{record.date.isoformat()}/{record.currency}/{record.base}"
    return record.external_id


def _duplicate_error(
    kind: str, line: int, first_line: int, first: Record, record: Record
) -> RowError:
    names = _INPUT_NAMES[kind]
    differing = [
        names.get(f.name, f.name)
        for f in dataclasses.fields(record)
        if getattr(record, f.name) != getattr(first, f.name)
    ]
    differs = ", ".join(dict.fromkeys(differing))
    if isinstance(record, FxRate):
        return RowError(
            line,
            "rate",
            "duplicate",
            f"the {record.currency.upper()}->{record.base.upper()} rate for {record.date} is "
            f"already given on line {first_line} with a different rate; give one rate per "
            "currency, base and day",
            format(record.rate, "f"),
        )
    return RowError(
        line,
        "external_id",
        "duplicate",
        f"external_id '{record.external_id}' is already used on line {first_line} by a row with "
        f"different content (differs in: {differs}); each external_id must be unique within a file",
        record.external_id,
    )


def _validate(
    kind: str,
    rows: Iterable[tuple[int, object]],
    result: ValidationResult,
    *,
    canonical: bool,
    max_rows: int,
) -> None:
    validator = _VALIDATORS[kind]
    seen: dict[str, tuple[int, Record]] = {}
    for line, raw_row in rows:
        if result.rows_read >= max_rows:
            result.errors.append(
                RowError(
                    line,
                    None,
                    "too_many_rows",
                    f"more than {max_rows:,} rows; split the data into files (or requests) of at "
                    f"most {max_rows:,} rows",
                )
            )
            return
        result.rows_read += 1
        if canonical:
            values = raw_row
        else:
            values = _row_values(kind, line, raw_row, result.errors)
            if values is None:
                continue
        row = _Row(kind, line, values)  # type: ignore[arg-type]
        record = validator(row)
        if record is None:
            result.errors.extend(row.errors)
            continue
        if not isinstance(record, FxRate):
            derived = content_external_id(record)
            if not record.external_id:
                record = dataclasses.replace(record, external_id=derived)
            elif record.external_id.startswith(AUTO_ID_PREFIX) and record.external_id != derived:
                result.errors.append(
                    RowError(
                        line,
                        "external_id",
                        "invalid_value",
                        f"external_id '{record.external_id}' starts with the reserved prefix "
                        f"'{AUTO_ID_PREFIX}' but is not this row's content id; leave external_id "
                        "empty to derive it, or use your own id",
                        record.external_id,
                    )
                )
                continue
        key = _key(record)
        if key in seen:
            first_line, first = seen[key]
            if first == record:
                result.duplicates.append(DuplicateRow(line, key, first_line))
            else:
                result.errors.append(_duplicate_error(kind, line, first_line, first, record))
            continue
        seen[key] = (line, record)
        result.records.append(record)


def validate_rows(
    kind: str,
    rows: Iterable[Mapping[str, object]],
    *,
    start_line: int = 2,
    max_rows: int = MAX_ROWS,
) -> ValidationResult:
    """Validate and normalize rows of one kind (CSV dicts of strings or JSON items) into records."""
    _check_kind(kind)
    result = ValidationResult(kind=kind)
    _validate(
        kind,
        ((start_line + i, row) for i, row in enumerate(rows)),
        result,
        canonical=False,
        max_rows=max_rows,
    )
    return result
