"""Time partitions, defined once. Tenants live inside the data (workspaces x days would exceed
Dagster's partition limits); a partition key is a local day in each workspace's own time zone."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg

HISTORY_START = "2023-01-01"
# Late data (a refund, a backdated cancellation) restates the last few days on every refresh.
RESTATEMENT_DAYS = 3

daily_partitions = dg.DailyPartitionsDefinition(start_date=HISTORY_START)
monthly_partitions = dg.MonthlyPartitionsDefinition(start_date=HISTORY_START)


def last_daily_partition(now: datetime | None = None) -> date:
    """The latest day with a partition: yesterday in UTC (a day's partition exists once it ended)."""
    return (now or datetime.now(UTC)).astimezone(UTC).date() - timedelta(days=1)


def restatement_window(last_day: date) -> tuple[date, date]:
    """The days a refresh ending on `last_day` restates: it and the RESTATEMENT_DAYS - 1 before."""
    first = max(last_day - timedelta(days=RESTATEMENT_DAYS - 1), date.fromisoformat(HISTORY_START))
    return first, last_day
