"""Recognized revenue and customer margins (metrics.md §8, §11)."""
