"""Default monthly forecasts (docs/metrics.md §12)."""
