"""Ingestion: Stripe streams and landed CSV files into the raw layer."""
