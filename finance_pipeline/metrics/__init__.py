"""Metric marts: MRR and movements (and, later, CFO metrics and revenue analytics)."""
