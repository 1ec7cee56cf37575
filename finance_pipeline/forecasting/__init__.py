"""Default monthly forecasts (metrics.md §12)."""
