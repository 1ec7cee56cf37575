"""Tests for the pure logic in finance_pipeline/lib."""
