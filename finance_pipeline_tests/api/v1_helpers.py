"""Helpers of the 004 v1 API's CFO tests (ingest, metrics, forecasts): servers whose inline
refreshes record runs in an in-memory Dagster instance (the embedded SQLite one is many times
slower on a loaded machine, and these tests are about the API, not the run storage)."""

from __future__ import annotations

from typing import Any

import dagster as dg

from finance_pipeline.api import inline_runs
from finance_pipeline_tests.api.conftest import ApiServer, ServerFactory


def with_memory_dagster(server: ApiServer) -> ApiServer:
    """Make the server's inline runs use an ephemeral Dagster instance."""
    inline_runs.instances[id(server.app.state.ctx)] = dg.DagsterInstance.ephemeral()
    return server


def make_v1_server(make: ServerFactory, **overrides: Any) -> ApiServer:
    """A server (read wait 180 s unless given: two inline runs on a shared 2-core machine)."""
    overrides.setdefault("api_read_wait_seconds", 180)
    return with_memory_dagster(make(**overrides))
