"""Tests of the metric marts through Dagster."""
