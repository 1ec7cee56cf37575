"""Money as exact integer micro-units (docs/metrics.md §2).

1 unit of any currency = 1,000,000 micro-units. Stripe minor units, decimal strings from CSV/API and
cents all convert exactly; rounding happens once, half away from zero, at the reported grain.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from fractions import Fraction

MICROS_PER_UNIT = 1_000_000

# Stripe's zero-decimal currencies: the amount *is* the whole unit (no minor unit).
ZERO_DECIMAL_CURRENCIES = frozenset(
    [
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    ]
)
# Stripe's three-decimal currencies (amounts are in thousandths).
THREE_DECIMAL_CURRENCIES = frozenset(["bhd", "jod", "kwd", "omr", "tnd"])


class MoneyError(ValueError):
    """An amount or currency that cannot be represented exactly."""


def normalize_currency(code: str) -> str:
    """Lower-case ISO 4217 code, validated to three letters (Stripe uses lower case)."""
    if not isinstance(code, str) or len(code.strip()) != 3 or not code.strip().isalpha():
        raise MoneyError(f"invalid currency code {code!r}: expected three letters like 'usd'")
    return code.strip().lower()


def minor_unit_exponent(currency: str) -> int:
    """Digits after the decimal point in the currency's minor unit (JPY 0, USD 2, KWD 3)."""
    cur = normalize_currency(currency)
    if cur in ZERO_DECIMAL_CURRENCIES:
        return 0
    if cur in THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def micros_per_minor(currency: str) -> int:
    """Micro-units in one minor unit: 10,000 for cents, 1,000,000 for yen."""
    return MICROS_PER_UNIT // 10 ** minor_unit_exponent(currency)


def minor_to_micros(amount_minor: int, currency: str) -> int:
    """Stripe integer amount (minor units) -> micro-units, exactly."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise MoneyError(f"Stripe amounts are integers, got {amount_minor!r}")
    return amount_minor * micros_per_minor(currency)


def decimal_minor_to_micros(amount_minor: str | Decimal, currency: str) -> Fraction:
    """Stripe `unit_amount_decimal` (minor units, may have fractional digits) -> exact micro-units."""
    return Fraction(Decimal(str(amount_minor))) * micros_per_minor(currency)


def cents_to_micros(cents: int) -> int:
    """API `*_cents` fields -> micro-units (cents are hundredths for every currency in the seeds)."""
    if isinstance(cents, bool) or not isinstance(cents, int):
        raise MoneyError(f"cent amounts are integers, got {cents!r}")
    return cents * 10_000


def parse_decimal_amount(value: str | int | Decimal, currency: str | None = None) -> int:
    """Decimal amount in whole units ("20.00", 99) -> micro-units; rejects sub-micro precision."""
    if isinstance(value, (bool, float)):
        raise MoneyError(f"amount {value!r} must be a decimal string or integer, not a float")
    try:
        dec = Decimal(str(value).strip())
    except (InvalidOperation, ValueError) as exc:
        raise MoneyError(f"amount {value!r} is not a number") from exc
    if not dec.is_finite():
        raise MoneyError(f"amount {value!r} is not finite")
    if currency is not None and dec.as_tuple().exponent < -minor_unit_exponent(currency):  # type: ignore[operator]
        # "12.345 USD" is not a payable amount; silently rounding it would hide a data problem.
        raise MoneyError(
            f"amount {value!r} has more decimals than {normalize_currency(currency).upper()} allows"
        )
    micros = dec * MICROS_PER_UNIT
    if micros != micros.to_integral_value():
        raise MoneyError(f"amount {value!r} is finer than one micro-unit")
    return int(micros)


def round_half_away(value: Fraction | int | Decimal, quantum: int = 1) -> int:
    """Round an exact value to a multiple of `quantum`, half away from zero (docs/metrics.md §2)."""
    frac = Fraction(value) / quantum
    sign = -1 if frac < 0 else 1
    mag = abs(frac)
    whole = mag.numerator // mag.denominator
    if (mag - whole) * 2 >= 1:
        whole += 1
    return sign * whole * quantum


def micros_to_minor(micros: Fraction | int, currency: str) -> int:
    """Exact micro-units -> reported minor units (cents, yen), rounded once half away from zero."""
    return round_half_away(Fraction(micros) / micros_per_minor(currency))


def micros_to_cents(micros: Fraction | int) -> int:
    """Exact micro-units -> reported `*_cents` (hundredths), rounded once half away from zero."""
    return round_half_away(Fraction(micros) / 10_000)


def micros_to_decimal(micros: Fraction | int, places: int = 2) -> Decimal:
    """Exact micro-units -> whole-unit Decimal with `places` decimals, for seed fields like 45230.00."""
    scaled = round_half_away(Fraction(micros) * 10**places / MICROS_PER_UNIT)
    return (Decimal(scaled) / (10**places)).quantize(
        Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP
    )


def percent(
    numerator: Fraction | int, denominator: Fraction | int, places: int = 2
) -> Decimal | None:
    """numerator/denominator as a percentage with `places` decimals; None for a zero denominator."""
    if denominator == 0:
        return None
    scaled = round_half_away(Fraction(numerator) * 100 * 10**places / Fraction(denominator))
    return Decimal(scaled).scaleb(-places)
