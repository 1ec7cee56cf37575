"""Recognized revenue and customer margins (docs/metrics.md §8, §11)."""
