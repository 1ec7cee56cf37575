"""Time partitions, defined once. Tenants live inside the data (workspaces x days would exceed
Dagster's partition limits); a partition key is a local day in each workspace's own time zone."""

import dagster as dg

HISTORY_START = "2023-01-01"

daily_partitions = dg.DailyPartitionsDefinition(start_date=HISTORY_START)
monthly_partitions = dg.MonthlyPartitionsDefinition(start_date=HISTORY_START)
