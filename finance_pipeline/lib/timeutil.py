"""Local days in the workspace's time zone and half-open validity intervals (docs/metrics.md §1)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class TimeZoneError(ValueError):
    """An unknown IANA time zone name."""


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The IANA zone for a workspace (default UTC), with a clear error for a bad name."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise TimeZoneError(
            f"unknown time zone {name!r}: use an IANA name like 'Europe/Paris'"
        ) from exc


def day_start(day: date, tz: str = "UTC") -> datetime:
    """S(D): the UTC instant local day D starts (DST-aware)."""
    return datetime(day.year, day.month, day.day, tzinfo=zone(tz)).astimezone(UTC)


def day_start_ts(day: date, tz: str = "UTC") -> int:
    """S(D) as a Unix timestamp (seconds), the unit Stripe uses."""
    return int(day_start(day, tz).timestamp())


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def local_day(ts: int | float | datetime, tz: str = "UTC") -> date:
    """The local day in zone `tz` that contains the instant `ts` (Unix seconds or aware datetime)."""
    if tz == "UTC" and type(ts) is int:
        # Unix days are UTC days (no leap seconds): the ledger and the MRR engine call this for
        # every entry and breakpoint, and the datetime round trip was a hotspot of a rebuild.
        return date.fromordinal(_EPOCH_ORDINAL + ts // 86_400)
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
        instant = ts
    else:
        instant = datetime.fromtimestamp(ts, UTC)
    return instant.astimezone(zone(tz)).date()


def in_force_on(valid_from: int | None, valid_to: int | None, day: date, tz: str = "UTC") -> bool:
    """True iff a state valid on [from, to) is in force on day D: from < S(D+1) <= to (§1)."""
    end_of_day = day_start_ts(day + timedelta(days=1), tz)
    return (valid_from is None or valid_from < end_of_day) and (
        valid_to is None or end_of_day <= valid_to
    )


def first_day_in_force(valid_from: int, tz: str = "UTC") -> date:
    """The first local day on which a state starting at instant `valid_from` is in force."""
    return local_day(valid_from, tz)


def last_day_in_force(valid_to: int, tz: str = "UTC") -> date:
    """The last local day on which a state ending at instant `valid_to` (exclusive) is in force.

    The state is in force on D iff S(D+1) <= to, so the last such D is the day before the one whose
    start is after `to`: an end exactly at midnight keeps the previous day.
    """
    d = local_day(valid_to, tz)
    # S(d) <= to always; if S(d+1) <= to were true d would not contain `to`. So the last D is d-1.
    return d - timedelta(days=1)


def days(start: date, end: date) -> list[date]:
    """Inclusive list of days start..end."""
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def iso_utc(ts: int | float) -> str:
    """A Unix instant as the APIs show it: ISO 8601 in UTC with `+00:00` (2026-03-01T00:00:00+00:00)."""
    return datetime.fromtimestamp(int(ts), UTC).isoformat()
