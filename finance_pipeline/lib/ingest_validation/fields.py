"""Field parsers: one raw value (CSV text or JSON) -> a normalized value, or a precise RowError."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Final

from finance_pipeline.lib.ingest_validation.records import (
    COST_CATEGORIES,
    MAX_AMOUNT_UNITS,
    MAX_DATE,
    MAX_ID_LENGTH,
    MAX_RATE_DIGITS,
    MAX_TEXT_LENGTH,
    MIN_DATE,
    REVENUE_TYPES,
    RowError,
)
from finance_pipeline.lib.money import (
    ISO_4217_CURRENCIES,
    cents_to_micros,
    micros_per_minor,
    minor_unit_exponent,
    parse_decimal_amount,
)

# --------------------------------------------------------------------------------------------------
# Field parsing
# --------------------------------------------------------------------------------------------------

_PLAIN_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_PLAIN_INT = re.compile(r"[+-]?\d+")
_COMMA_DECIMAL = re.compile(r"[+-]?\d*,\d+")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_INSTANT = re.compile(
    r"(\d{4}-\d{2}-\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?(Z|z|[+-]\d{2}:?\d{2})?"
)
_CURRENCY = re.compile(r"[A-Za-z]{3}")
_CURRENCY_MARK = re.compile(r"^[$€£¥]|[$€£¥]$|^[A-Za-z]{3}\s*[\d.+-]|[\d.]\s*[A-Za-z]{3}$")
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})

# What a valid value looks like, quoted in "missing" and "invalid" messages.
_EXPECT: Final[dict[str, str]] = {
    "name": "the cost item's name, like Vercel Pro",
    "amount": "a positive decimal number in whole currency units, like 20.00",
    "amount_cents": "a positive whole number of cents, like 120000 for 1200.00",
    "cost_microdollars": "a whole number of micro-units (millionths) of the currency, 0 or more, "
    "like 1500000 for 1.50",
    "request_count": "a whole number of requests, 0 or more",
    "category": "one of " + ", ".join(COST_CATEGORIES),
    "subtype": "",  # per kind, see _SUBTYPE_EXPECT
    "type": "one of " + ", ".join(REVENUE_TYPES),
    "date": "a date in YYYY-MM-DD form, like 2024-01-15",
    "occurred_at": "a date in YYYY-MM-DD form, like 2026-02-01",
    "customer_tag": "the customer's cost tag value, like acme-corp",
    "model": "the model name, like gpt-4o",
    "currency": "a three-letter ISO 4217 code like USD",
    "base": "the reporting currency as a three-letter ISO 4217 code like USD",
    "rate": f"a positive decimal number with at most {MAX_RATE_DIGITS} significant digits, "
    "like 1.0842",
}
_USAGE_OCCURRED_AT = (
    "a date (YYYY-MM-DD) or an ISO 8601 timestamp with a time zone, like 2026-04-05T10:00:00Z"
)


class _Row:
    """One input row being validated: canonical values plus the errors found so far."""

    __slots__ = ("errors", "kind", "line", "values")

    def __init__(self, kind: str, line: int, values: Mapping[str, object]) -> None:
        self.kind = kind
        self.line = line
        self.values = values
        self.errors: list[RowError] = []

    def get(self, name: str) -> object | None:
        """The raw value, or None when absent, null or blank (blank means "not given")."""
        value = self.values.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return value

    def fail(self, name: str | None, code: str, message: str, raw: object = None) -> None:
        self.errors.append(RowError(self.line, name, code, message, _as_text(raw)))

    def missing(self, name: str, expect: str | None = None) -> None:
        self.fail(name, "missing_field", f"{name} is required: give {expect or _EXPECT[name]}")


def _as_text(raw: object) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, str):
        return raw.strip()
    return str(raw)


def _shown(raw: object) -> str:
    if isinstance(raw, str):
        return f"'{raw.strip()}'"
    return str(_as_text(raw))


def _json_type(raw: object) -> str:
    if isinstance(raw, bool):
        return f"the boolean {_as_text(raw)}"
    if isinstance(raw, int | Decimal):
        return f"the number {raw}"
    if isinstance(raw, float):
        return f"the floating-point number {raw!r}"
    if isinstance(raw, Mapping):
        return "an object"
    if isinstance(raw, list | tuple):
        return "a list"
    return f"a {type(raw).__name__}"


def _text(
    row: _Row,
    name: str,
    *,
    required: bool = False,
    max_len: int = MAX_TEXT_LENGTH,
    multiline: bool = False,
    expect: str | None = None,
) -> str | None:
    raw = row.get(name)
    if raw is None:
        if required:
            row.missing(name, expect)
        return None
    if not isinstance(raw, str):
        row.fail(name, "invalid_type", f"{name} must be a string; got {_json_type(raw)}", raw)
        return None
    text = raw.strip()
    if multiline:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    for ch in text:
        cat = unicodedata.category(ch)
        if (cat == "Cc" and not (multiline and ch in "\n\t")) or cat == "Cs":
            what = "line breaks and tabs are not allowed" if ch in "\n\t\r" else "remove it"
            row.fail(
                name,
                "invalid_value",
                f"{name} contains the control character U+{ord(ch):04X}; {what}",
                raw,
            )
            return None
    if len(text) > max_len:
        row.fail(
            name,
            "invalid_value",
            f"{name} is {len(text)} characters long; at most {max_len} are allowed",
            raw,
        )
        return None
    return text


def _external_id(row: _Row) -> str:
    """The given id, or "" meaning "derive it from the content"."""
    return _text(row, "external_id", max_len=MAX_ID_LENGTH) or ""


def _currency(row: _Row, name: str = "currency", *, required: bool = False) -> str | None:
    raw = row.get(name)
    if raw is None:
        if required:
            row.missing(name)
            return None
        return "usd"
    if not isinstance(raw, str):
        row.fail(
            name, "invalid_type", f'{name} must be a string like "USD"; got {_json_type(raw)}', raw
        )
        return None
    code = raw.strip()
    if not _CURRENCY.fullmatch(code):
        row.fail(
            name,
            "invalid_value",
            f"{name} {_shown(raw)} is not a currency code; use a three-letter ISO 4217 code "
            "like USD or EUR",
            raw,
        )
        return None
    if code.lower() not in ISO_4217_CURRENCIES:
        # A typo (USS, EUT) would be stored and then silently left out of every converted total.
        row.fail(
            name,
            "invalid_value",
            f"{name} {_shown(raw)} is not an ISO 4217 currency code; use one like USD, EUR or JPY",
            raw,
        )
        return None
    return code.lower()


def _decimal_problem(name: str, text: str, expect: str) -> str:
    """Why `text` is not a plain decimal number, phrased with the fix."""
    shown = f"'{text}'"
    if _THOUSANDS.fullmatch(text):
        return (
            f"{name} {shown} contains a thousands separator; write it without separators like "
            f"{text.replace(',', '')} (if the comma is a decimal separator, use a decimal point)"
        )
    if _COMMA_DECIMAL.fullmatch(text):
        return f"{name} {shown} is not a number; use a decimal point like {text.replace(',', '.')}"
    if _CURRENCY_MARK.search(text):
        return (
            f"{name} {shown} is not a number; write the bare number (like 12.50) and put the "
            "currency in the currency column"
        )
    lowered = text.lower()
    if lowered.lstrip("+-") in {"nan", "inf", "infinity", "snan"}:
        return f"{name} {shown} is not a finite number; expected {expect}"
    if "e" in lowered:
        try:
            plain = format(Decimal(text), "f")
        except InvalidOperation:
            pass
        else:
            return f"{name} {shown} uses exponent notation; write it as a plain number like {plain}"
    return f"{name} {shown} is not a number; expected {expect}"


def _decimal(row: _Row, name: str, raw: object, *, money: bool, expect: str) -> Decimal | None:
    """Parse a decimal from text, int or Decimal (float only when not money), or record why not."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | Decimal | float):
        row.fail(name, "invalid_type", f"{name} must be {expect}; got {_json_type(raw)}", raw)
        return None
    if isinstance(raw, float):
        if money:
            row.fail(
                name,
                "invalid_type",
                f"{name} {raw!r} is a floating-point JSON number, which cannot hold money exactly; "
                f'send it as a string like "{raw!r}" or as an integer',
                raw,
            )
            return None
        raw_text = repr(raw)
    elif isinstance(raw, int | Decimal):
        raw_text = str(raw)
    else:
        raw_text = raw.strip()
    if isinstance(raw, str) and not _PLAIN_DECIMAL.fullmatch(raw_text):
        row.fail(name, "invalid_value", _decimal_problem(name, raw_text, expect), raw)
        return None
    try:
        value = Decimal(raw_text)
    except InvalidOperation:
        row.fail(name, "invalid_value", _decimal_problem(name, raw_text, expect), raw)
        return None
    if not value.is_finite():
        row.fail(
            name,
            "invalid_value",
            f"{name} {_shown(raw)} is not a finite number; expected {expect}",
            raw,
        )
        return None
    return value


def _amount_units(row: _Row, name: str, currency: str | None, *, hint: str) -> int | None:
    """A positive decimal in whole units -> micro-units, exact to the currency's minor unit."""
    raw = row.get(name)
    if raw is None:
        row.missing(name)
        return None
    value = _decimal(row, name, raw, money=True, expect=_EXPECT["amount"])
    if value is None:
        return None
    if value <= 0:
        row.fail(name, "invalid_value", f"{name} {_shown(raw)} must be greater than 0; {hint}", raw)
        return None
    if value >= MAX_AMOUNT_UNITS:
        row.fail(
            name,
            "invalid_value",
            f"{name} {_shown(raw)} is too large; amounts must be below {MAX_AMOUNT_UNITS:,} units",
            raw,
        )
        return None
    if currency is None:
        return None  # the currency error is already reported; decimals cannot be judged
    normalized = value.normalize()
    places = -min(0, normalized.as_tuple().exponent)  # type: ignore[operator]
    allowed = minor_unit_exponent(currency)
    if places > allowed:
        cur = currency.upper()
        limit = (
            f"{cur} has no minor unit; give a whole number"
            if allowed == 0
            else f"{cur} allows at most {allowed}"
        )
        row.fail(
            name,
            "invalid_value",
            f"{name} {_shown(raw)} has {places} decimal place{'s' if places > 1 else ''} "
            f"but {limit}",
            raw,
        )
        return None
    return parse_decimal_amount(format(normalized, "f"), currency)


def _integer(
    row: _Row, name: str, raw: object, *, minimum: int, upper: int, expect: str, unit: str
) -> int | None:
    """A whole number in [minimum, upper) from text, int or integral Decimal, or record why not."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | Decimal | float):
        row.fail(name, "invalid_type", f"{name} must be {expect}; got {_json_type(raw)}", raw)
        return None
    if isinstance(raw, float):
        row.fail(
            name,
            "invalid_type",
            f"{name} must be an integer, not the floating-point number {raw!r}; expected {expect}",
            raw,
        )
        return None
    if isinstance(raw, str):
        text = raw.strip()
        if not _PLAIN_INT.fullmatch(text):
            if _PLAIN_DECIMAL.fullmatch(text):
                message = f"{name} {_shown(raw)} has a decimal point but counts whole {unit}"
            elif _THOUSANDS.fullmatch(text):
                message = (
                    f"{name} {_shown(raw)} contains a thousands separator; write it without "
                    f"separators like {text.replace(',', '')}"
                )
            else:
                message = f"{name} {_shown(raw)} is not a whole number"
            row.fail(name, "invalid_value", f"{message}; expected {expect}", raw)
            return None
        value = int(text)
    elif isinstance(raw, Decimal):
        if not raw.is_finite() or raw != raw.to_integral_value():
            row.fail(
                name, "invalid_value", f"{name} {raw} is not a whole number; expected {expect}", raw
            )
            return None
        value = int(raw)
    else:
        value = raw
    if value < minimum:
        bound = "greater than 0" if minimum == 1 else f"at least {minimum}"
        row.fail(
            name, "invalid_value", f"{name} {_shown(raw)} must be {bound}; expected {expect}", raw
        )
        return None
    if value >= upper:
        row.fail(
            name,
            "invalid_value",
            f"{name} {_shown(raw)} is too large; it must be below {upper:,}",
            raw,
        )
        return None
    return value


def _amount_cents(row: _Row, name: str, currency: str | None) -> int | None:
    """Positive integer hundredths of a unit -> micro-units, representable in the currency."""
    raw = row.get(name)
    if raw is None:
        row.missing(name)
        return None
    cents = _integer(
        row,
        name,
        raw,
        minimum=1,
        upper=MAX_AMOUNT_UNITS * 100,
        expect=_EXPECT["amount_cents"],
        unit="cents",
    )
    if cents is None or currency is None:
        return None
    micros = cents_to_micros(cents)
    if micros % micros_per_minor(currency):
        cur = currency.upper()
        step = micros_per_minor(currency) // 10_000
        row.fail(
            name,
            "invalid_value",
            f"{name} {_shown(raw)} is {format(Decimal(cents).scaleb(-2), 'f')} {cur}, finer than "
            f"{cur}'s smallest unit; use a multiple of {step} ({name} counts hundredths of a unit)",
            raw,
        )
        return None
    return micros


def _check_day(row: _Row, name: str, raw: object, day: dt.date) -> dt.date | None:
    if not MIN_DATE <= day <= MAX_DATE:
        row.fail(
            name,
            "invalid_value",
            f"{name} {_shown(raw)} is outside the accepted range "
            f"{MIN_DATE.isoformat()} to {MAX_DATE.isoformat()}",
            raw,
        )
        return None
    return day


def _calendar_day(row: _Row, name: str, raw: object, text: str) -> dt.date | None:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        row.fail(name, "invalid_value", f"{name} {_shown(raw)} is not a real calendar day", raw)
        return None
    return _check_day(row, name, raw, day)


def _date(row: _Row, name: str, *, required: bool = True) -> dt.date | None:
    raw = row.get(name)
    if raw is None:
        if required:
            row.missing(name)
        return None
    if isinstance(raw, dt.date) and not isinstance(raw, dt.datetime):
        return _check_day(row, name, raw, raw)
    if not isinstance(raw, str):
        row.fail(
            name,
            "invalid_type",
            f"{name} must be a string in YYYY-MM-DD form; got {_json_type(raw)}",
            raw,
        )
        return None
    text = raw.strip()
    if _DATE.fullmatch(text):
        return _calendar_day(row, name, raw, text)
    if _INSTANT.fullmatch(text):
        message = (
            f"{name} {_shown(raw)} has a time; give only the day in YYYY-MM-DD form, "
            f"like {text[:10]}"
        )
    else:
        message = f"{name} {_shown(raw)} is not a date in YYYY-MM-DD form; write it like 2024-01-15"
    row.fail(name, "invalid_value", message, raw)
    return None


def _date_or_instant(row: _Row, name: str) -> tuple[dt.date, dt.datetime | None] | None:
    """A day, or an aware ISO 8601 instant (kept in UTC, with its UTC day)."""
    raw = row.get(name)
    if raw is None:
        row.missing(name, _USAGE_OCCURRED_AT)
        return None
    if isinstance(raw, dt.datetime):
        if raw.tzinfo is None:
            row.fail(name, "invalid_value", f"{name} {raw.isoformat()} has no time zone", raw)
            return None
        instant = raw.astimezone(dt.UTC)
        day = _check_day(row, name, raw, instant.date())
        return None if day is None else (day, instant)
    if isinstance(raw, dt.date):
        day = _check_day(row, name, raw, raw)
        return None if day is None else (day, None)
    if not isinstance(raw, str):
        row.fail(
            name, "invalid_type", f"{name} must be {_USAGE_OCCURRED_AT}; got {_json_type(raw)}", raw
        )
        return None
    text = raw.strip()
    if _DATE.fullmatch(text):
        day = _calendar_day(row, name, raw, text)
        return None if day is None else (day, None)
    match = _INSTANT.fullmatch(text)
    if match is None:
        row.fail(
            name,
            "invalid_value",
            f"{name} {_shown(raw)} is neither a date (YYYY-MM-DD) nor an ISO 8601 timestamp "
            "with a time zone like 2026-04-05T10:00:00Z",
            raw,
        )
        return None
    if match.group(6) is None:
        row.fail(
            name,
            "invalid_value",
            f"{name} {_shown(raw)} has no time zone; add Z for UTC (like {text}Z) or an offset "
            "like +02:00",
            raw,
        )
        return None
    try:
        parsed = dt.datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        row.fail(name, "invalid_value", f"{name} {_shown(raw)} is not a real date and time", raw)
        return None
    instant = parsed.astimezone(dt.UTC)
    day = _check_day(row, name, raw, instant.date())
    return None if day is None else (day, instant)


def _choice(
    row: _Row,
    name: str,
    allowed: tuple[str, ...],
    *,
    upper: bool,
    what: str,
    required: bool = True,
) -> str | None:
    raw = row.get(name)
    if raw is None:
        if required:
            row.missing(name, "one of " + ", ".join(allowed))
        return None
    if not isinstance(raw, str):
        row.fail(name, "invalid_type", f"{name} must be a string; got {_json_type(raw)}", raw)
        return None
    key = re.sub(r"[\s\-]+", "_", raw.strip())
    key = key.upper() if upper else key.lower()
    if key not in allowed:
        row.fail(
            name,
            "invalid_value",
            f"{name} {_shown(raw)} is not {what}; use one of {', '.join(allowed)}",
            raw,
        )
        return None
    return key


def _bool(row: _Row, name: str, *, default: bool) -> bool | None:
    raw = row.get(name)
    if raw is None:
        return default
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        key = raw.strip().lower()
        if key in _TRUE:
            return True
        if key in _FALSE:
            return False
    row.fail(
        name,
        "invalid_value" if isinstance(raw, str | int) else "invalid_type",
        f"{name} {_shown(raw)} is not a yes/no value; use true or false (1/0 and yes/no also work)",
        raw,
    )
    return None


def _exclusive(row: _Row, first: str, second: str) -> bool:
    """False (and an error) when both of two alternative fields are given."""
    if row.get(first) is not None and row.get(second) is not None:
        row.fail(
            second,
            "conflicting_fields",
            f"both {first} and {second} are given; give only one of them",
            row.get(second),
        )
        return False
    return True
