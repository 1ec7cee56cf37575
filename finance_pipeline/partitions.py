"""Time partitions, defined once. Tenants live inside the data (workspaces x days would exceed
Dagster's partition limits); a partition key is a local day in each workspace's own time zone."""

from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:
    from finance_pipeline.warehouse.db import Warehouse

HISTORY_START = "2023-01-01"

daily_partitions = dg.DailyPartitionsDefinition(start_date=HISTORY_START)
monthly_partitions = dg.MonthlyPartitionsDefinition(start_date=HISTORY_START)


# Where each source dates its first money or subscription fact (epoch seconds or a DATE).
_FIRST_FACTS = (
    "SELECT MIN(start_date) FROM raw.stripe_subscriptions",
    "SELECT MIN(created) FROM raw.stripe_invoices",
    "SELECT MIN(created) FROM raw.stripe_charges",
    "SELECT MIN(date) FROM raw.manual_revenue",
    "SELECT MIN(occurred_on) FROM raw.expense_events",
    "SELECT MIN(date) FROM raw.cost_records",
)


def first_partition_with_data(wh: "Warehouse") -> date | None:
    """The first daily partition that can hold a number: the earliest stored fact's day, one day
    early because a workspace west of UTC sees that instant on the previous local day."""
    days: list[date] = []
    for sql in _FIRST_FACTS:
        value = wh.scalar(sql)
        if value is None:
            continue
        if isinstance(value, int):
            days.append(datetime.fromtimestamp(value, UTC).date())
        else:
            days.append(date.fromisoformat(str(value)[:10]))
    if not days:
        return None
    return max(min(days) - timedelta(days=1), date.fromisoformat(HISTORY_START))
