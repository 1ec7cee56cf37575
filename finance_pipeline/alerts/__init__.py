"""Alerts (docs/metrics.md §14): evaluated per workspace and local day from CFO and MRR marts."""
