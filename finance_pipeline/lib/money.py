"""Money as exact integer micro-units (docs/metrics.md §2).

1 unit of any currency = 1,000,000 micro-units. Stripe minor units, decimal strings from CSV/API and
cents all convert exactly; rounding happens once, half away from zero, at the reported grain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from fractions import Fraction

MICROS_PER_UNIT = 1_000_000
#: Micro-units per cent: the quantum of every `*_cents` figure and of 2-decimal tables.
MICROS_PER_CENT = 10_000

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

# ISO 4217 currency codes an ingested amount may be in: the active codes (list one, 2025) and the
# ones withdrawn since 2000, since ingested rows date back to 2000-01-01. Fund codes (BOV, CLF...)
# are kept; precious metals, SDRs and the test codes (XTS, XXX) are not money movements.
_ISO_4217_CODES = """
    aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob bov brl bsd btn
    bwp byn bzd cad cdf che chf chw clf clp cny cop cou crc cuc cup cve czk djf dkk dop dzd egp
    ern etb eur fjd fkp gbp gel ghs gip gmd gnf gtq gyd hkd hnl htg huf idr ils inr iqd irr isk
    jmd jod jpy kes kgs khr kmf kpw krw kwd kyd kzt lak lbp lkr lrd lsl lyd mad mdl mga mkd mmk
    mnt mop mru mur mvr mwk mxn mxv myr mzn nad ngn nio nok npr nzd omr pab pen pgk php pkr pln
    pyg qar ron rsd rub rwf sar sbd scr sdg sek sgd shp sle sll sos srd ssp stn svc syp szl thb
    tjs tmt tnd top try ttd twd tzs uah ugx usd usn uyi uyu uyw uzs ved ves vnd vuv wst xaf xcd
    xcg xof xpf yer zar zmw zwg zwl
    adp afa ats azm bef bgl byb byr csd cyp dem eek esp fim frf ghc grd hrk iep itl ltl luf lvl
    mgf mro mtl mzm nlg pte rol rur sdd sit skk srg std tmm tpe trl veb vef xeu yum zmk zwd zwn
    zwr
"""
ISO_4217_CURRENCIES = frozenset(_ISO_4217_CODES.split())


class MoneyError(ValueError):
    """An amount or currency that cannot be represented exactly."""


# Codes already validated (a few dozen at most): every state, entry and price normalizes one.
_NORMALIZED: dict[str, str] = {}


def normalize_currency(code: str) -> str:
    """Lower-case ISO 4217 code, validated to three letters (Stripe uses lower case)."""
    if type(code) is str:
        known = _NORMALIZED.get(code)
        if known is not None:
            return known
    if not isinstance(code, str) or len(code.strip()) != 3 or not code.strip().isalpha():
        raise MoneyError(f"invalid currency code {code!r}: expected three letters like 'usd'")
    normalized = code.strip().lower()
    if type(code) is str and len(_NORMALIZED) < 1024:
        _NORMALIZED[code] = normalized
    return normalized


def minor_unit_exponent(currency: str) -> int:
    """Digits after the decimal point in the currency's minor unit (JPY 0, USD 2, KWD 3)."""
    cur = normalize_currency(currency)
    if cur in ZERO_DECIMAL_CURRENCIES:
        return 0
    if cur in THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


# Codes already validated -> micros per minor unit: every ledger entry converts an amount.
_MICROS_PER_MINOR: dict[str, int] = {}


def micros_per_minor(currency: str) -> int:
    """Micro-units in one minor unit: 10,000 for cents, 1,000,000 for yen, 1,000 for fils.

    Also the reporting grain of an amount in that currency (docs/metrics.md §2): reports round
    and foot its figures to this many micros and print `minor_unit_exponent` decimals.
    """
    if type(currency) is str:
        known = _MICROS_PER_MINOR.get(currency)
        if known is not None:
            return known
    value = MICROS_PER_UNIT // 10 ** minor_unit_exponent(currency)
    _MICROS_PER_MINOR[currency] = value
    return value


def grain_places(grain: int) -> int:
    """Decimals printed for figures rounded to `grain` micros: 10,000 -> 2, 1,000,000 -> 0."""
    places = len(str(MICROS_PER_UNIT // grain)) - 1 if grain > 0 else -1
    if places < 0 or 10**places * grain != MICROS_PER_UNIT:
        raise ValueError(f"grain {grain!r} is not a decimal fraction of a unit")
    return places


#: How a note names the decimals of a grain ("Amounts are in JPY with no decimals").
DECIMALS_TEXT = {0: "no decimals", 2: "two decimals", 3: "three decimals"}


def shown_units(rounded_micros: int, grain: int = MICROS_PER_CENT) -> Decimal:
    """A figure already rounded to `grain` as whole units with the grain's decimals, exactly:
    (1_234_560_000, 10_000) -> 1234.56; (1_234_000_000, 1_000_000) -> 1234."""
    if rounded_micros % grain:
        raise ValueError(f"{rounded_micros} micros is not a multiple of the {grain}-micro grain")
    return Decimal(rounded_micros // grain).scaleb(-grain_places(grain))


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
    """Round an exact value to a multiple of `quantum`, half away from zero (docs/metrics.md §2).

    The one rounding rule of the product: every reported, stored or displayed money figure goes
    through it (or a wrapper below). `quantum` is a positive integer, e.g. 10,000 micros = 1 cent.
    """
    # Integer arithmetic on numerator and denominator: the marts and the ledger round every row,
    # and Fraction arithmetic made this a hotspot of a full-history rebuild.
    if type(value) is int:
        if quantum == 1:
            return value
        n, d = value, quantum
    else:
        frac = value if isinstance(value, Fraction) else Fraction(value)
        n, d = frac.numerator, frac.denominator * quantum
    if quantum != 1 and (type(quantum) is not int or quantum < 1):
        raise ValueError(f"rounding quantum must be a positive integer, got {quantum!r}")
    q, r = divmod(-n if n < 0 else n, d)  # d > 0
    if 2 * r >= d:
        q += 1
    return (-q if n < 0 else q) * quantum


def micros_to_minor(micros: Fraction | int, currency: str) -> int:
    """Exact micro-units -> reported minor units (cents, yen), rounded once half away from zero."""
    return round_half_away(micros, micros_per_minor(currency)) // micros_per_minor(currency)


def micros_to_cents(micros: Fraction | int) -> int:
    """Exact micro-units -> reported `*_cents` (hundredths), rounded once half away from zero."""
    return round_half_away(micros, MICROS_PER_CENT) // MICROS_PER_CENT


def micros_to_decimal(micros: Fraction | int, places: int = 2) -> Decimal:
    """Exact micro-units -> whole-unit Decimal with `places` decimals, for seed fields like 45230.00."""
    scaled = round_half_away(Fraction(micros) * 10**places / MICROS_PER_UNIT)
    return Decimal(scaled).scaleb(-places)


def percent(
    numerator: Fraction | int, denominator: Fraction | int, places: int = 2
) -> Decimal | None:
    """numerator/denominator as a percentage with `places` decimals; None for a zero denominator."""
    if denominator == 0:
        return None
    scaled = round_half_away(Fraction(numerator) * 100 * 10**places / Fraction(denominator))
    return Decimal(scaled).scaleb(-places)


# --- footing: tables whose displayed lines add up to their displayed total ------------------------


def foot(
    parts: Sequence[Fraction | int],
    quantum: int = MICROS_PER_CENT,
    total: Fraction | int | None = None,
) -> list[int]:
    """Round each exact line to a multiple of `quantum` so the rounded lines add up exactly to
    `round_half_away(total)` (default: the exact sum of the lines), for tables people read.

    Largest-remainder method: start from each line's own rounding; the gap to the rounded total is
    given, one quantum each, to the lines that lost most by their own rounding in the gap's direction
    (ties: larger absolute remainder, then the line listed first). Lines may be negative. With the
    default total every line stays strictly within one quantum of its exact value. Raises
    ValueError when `total` is more than one quantum per line away from the lines.
    """
    exact = [Fraction(p) for p in parts]
    target = round_half_away(sum(exact, Fraction(0)) if total is None else total, quantum)
    out = [round_half_away(x, quantum) for x in exact]
    gap = (target - sum(out)) // quantum  # in quanta; out and target are multiples of quantum
    if gap == 0:
        return out
    if abs(gap) > len(out):
        raise ValueError(
            f"total {total} is {abs(gap)} quanta from the {len(out)} line(s): not their total"
        )
    step = quantum if gap > 0 else -quantum
    # loss[i] > 0: the line's own rounding moved it against the gap's direction by that much.
    loss = [(x - r) / step for x, r in zip(exact, out, strict=True)]
    abs_remainder = [abs(x / quantum - int(x / quantum)) for x in exact]
    order = sorted(range(len(out)), key=lambda i: (-loss[i], -abs_remainder[i], i))
    for i in order[: abs(gap)]:
        out[i] += step
    return out


def foot_roll_forward(
    opening: Fraction | int,
    movements: Mapping[str, Fraction | int],
    closing: Fraction | int,
    quantum: int = MICROS_PER_CENT,
) -> tuple[int, dict[str, int], int]:
    """A roll-forward (opening + signed movements = closing) rounded for display so it foots.

    Opening and closing are balances, each rounded on its own (docs/metrics.md §2); the movements are
    footed (see `foot`) to closing_r - opening_r, so opening_r + sum(movements_r) == closing_r.
    Each movement is its own rounding or one quantum from it. Raises ValueError unless
    opening + sum(movements) == closing exactly.
    """
    names = list(movements)
    exact = [Fraction(movements[n]) for n in names]
    if Fraction(opening) + sum(exact, Fraction(0)) != Fraction(closing):
        raise ValueError(
            f"roll-forward does not hold: {opening} + {sum(exact, Fraction(0))} != {closing}"
        )
    opening_r = round_half_away(opening, quantum)
    closing_r = round_half_away(closing, quantum)
    rounded = foot(exact, quantum, total=closing_r - opening_r)
    return opening_r, dict(zip(names, rounded, strict=True)), closing_r


def foot_grid(
    cells: Sequence[Sequence[Fraction | int]],
    row_totals: Sequence[int],
    column_totals: Sequence[int],
    quantum: int = MICROS_PER_CENT,
) -> list[list[int]]:
    """Round a table's exact cells to multiples of `quantum` so each row adds up to its displayed
    total and each column to its (both already rounded, e.g. footed), for tables read both ways.

    Each cell starts from its own rounding; the rows' and columns' gaps are then settled one
    quantum at a time on the cell (or, once only rows or only columns are off, the pair of cells
    in one column or one row) that moves least away from the exact values; ties go to the last
    column, then the first row. Raises ValueError unless both sets of totals add up to the same.
    """
    exact = [[Fraction(x) for x in row] for row in cells]
    width = len(column_totals)
    if any(len(row) != width for row in exact) or len(exact) != len(row_totals):
        raise ValueError("cells, row totals and column totals do not have matching shapes")
    if sum(row_totals) != sum(column_totals):
        raise ValueError(f"row totals add up to {sum(row_totals)}, columns to {sum(column_totals)}")
    if any(t % quantum for t in (*row_totals, *column_totals)):
        raise ValueError("totals must be multiples of the quantum")
    if not exact and any(column_totals):
        raise ValueError("columns without rows must total zero")
    out = [[round_half_away(x, quantum) for x in row] for row in exact]
    row_gap = [(t - sum(row)) // quantum for t, row in zip(row_totals, out, strict=True)]
    col_gap = [(t - sum(row[k] for row in out)) // quantum for k, t in enumerate(column_totals)]

    def cost(i: int, k: int, step: int) -> Fraction:
        e = exact[i][k]
        return abs(out[i][k] + step - e) - abs(out[i][k] - e)

    def sign(x: int) -> int:
        return (x > 0) - (x < 0)

    rows, cols = range(len(out)), range(width)
    while any(row_gap) or any(col_gap):
        # (cost, tie-break, changes): each change is (row, column, +1 or -1 quantum).
        options: list[tuple[Fraction, tuple[int, int], list[tuple[int, int, int]]]] = []
        for i in rows:
            for k in cols:
                s = sign(row_gap[i])
                if s and sign(col_gap[k]) == s:
                    options.append((cost(i, k, s * quantum), (-k, i), [(i, k, s)]))
        if not options and not any(row_gap):
            # Only columns are off (they add up to zero): move a quantum across, within a row.
            up = [k for k in cols if col_gap[k] > 0]
            down = [k for k in cols if col_gap[k] < 0]
            for i in rows:
                for a in up:
                    for b in down:
                        c = cost(i, a, quantum) + cost(i, b, -quantum)
                        options.append((c, (-max(a, b), i), [(i, a, 1), (i, b, -1)]))
        elif not options:
            # Only rows are off (they add up to zero): move a quantum down, within a column.
            up = [i for i in rows if row_gap[i] > 0]
            down = [i for i in rows if row_gap[i] < 0]
            for k in cols:
                for a in up:
                    for b in down:
                        c = cost(a, k, quantum) + cost(b, k, -quantum)
                        options.append((c, (-k, min(a, b)), [(a, k, 1), (b, k, -1)]))
        _, _, changes = min(options, key=lambda o: (o[0], o[1]))
        for i, k, s in changes:
            out[i][k] += s * quantum
            row_gap[i] -= s
            col_gap[k] -= s
    return out
