"""Units and arithmetic the whole engine shares: time units and retention, calendar-month
billing boundaries, deterministic Stripe-looking ids, and card processing fees."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime
from fractions import Fraction

from finance_pipeline.lib.money import round_half_away

from ..catalog import FEES

DAY = 86_400
HOUR = 3_600
EVENT_RETENTION = 30 * DAY


def add_months_ts(ts: int, months: int) -> int:
    """``ts`` plus whole calendar months in UTC, clamping the day (Stripe's billing anchor rule)."""
    dt = datetime.fromtimestamp(ts, UTC)
    y, m = divmod(dt.month - 1 + months, 12)
    y += dt.year
    m += 1
    d = min(dt.day, calendar.monthrange(y, m)[1])
    return int(dt.replace(year=y, month=m, day=d).timestamp())


def period_boundary(anchor: int, interval: str, count: int, k: int) -> int:
    """The k-th billing-period boundary after ``anchor`` (k=0 is the anchor itself)."""
    if interval == "month":
        return add_months_ts(anchor, k * count)
    if interval == "year":
        return add_months_ts(anchor, 12 * k * count)
    if interval == "week":
        return anchor + k * count * 7 * DAY
    return anchor + k * count * DAY


_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B62_PAIRS = [a + b for a in _B62 for b in _B62]


class Ids:
    """Deterministic, unique, random-looking Stripe ids (``sub_1Nq...``) from a counter."""

    MOD = 62**22
    # ~0.618 x MOD and coprime with 62, so n -> n * MULT mod 62**22 is a well-spread bijection.
    MULT = 1673514689202993931592439337416514338817

    def __init__(self, seed: int, salt: int = 0) -> None:
        self.n = 0
        self.salt = (seed * 2_654_435_761 + salt * 97 + 1) % self.MOD

    def __call__(self, prefix: str) -> str:
        self.n += 1
        x = (self.n * self.MULT + self.salt) % self.MOD
        chars = []
        for _ in range(11):
            x, r = divmod(x, 3844)
            chars.append(_B62_PAIRS[r])
        return f"{prefix}_1{''.join(chars)}"


def fee_for(amount: int, currency: str) -> int:
    """Processing fee of a card charge (percentage + fixed, in the charge currency)."""
    bps, fixed = FEES.get(currency, (290, 30))
    return round_half_away(Fraction(amount * bps, 10_000)) + fixed
