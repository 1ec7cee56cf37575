"""finance_pipeline: Stripe and cost data to exact MRR, margins, CFO metrics and month-end reports."""

import warnings

# Two Dagster 1.13 beta notices, silenced by exact message because they are not ours to act on:
# `backfill_policy` on @asset is the documented way to backfill a monthly range in one run, and
# Dagster's own Definitions resolution passes `owners` when it re-binds a sensor to its job.
for _parameter in ("backfill_policy", "owners"):
    warnings.filterwarnings(
        "ignore", message=rf"Parameter `{_parameter}` of (function `asset`|initializer `Sensor)"
    )
