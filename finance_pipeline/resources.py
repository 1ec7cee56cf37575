"""Dagster resources: the warehouse and Stripe access settings, configured from Settings."""

from __future__ import annotations

from functools import cached_property

import dagster as dg
from pydantic import PrivateAttr

from finance_pipeline.settings import Settings, get_settings
from finance_pipeline.stripe_sync.engine import DEFAULT_LIST_SLICES
from finance_pipeline.warehouse import Warehouse, warehouse_for

__all__ = ["StripeResource", "WarehouseResource", "warehouse_for"]


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse; `url` empty means the settings' URL (SQLite under data/ by default)."""

    url: str = ""

    _wh: Warehouse | None = PrivateAttr(default=None)

    def get(self) -> Warehouse:
        """The migrated warehouse handle."""
        if self._wh is None:
            self._wh = warehouse_for(self.url or get_settings().resolved_warehouse_url)
        return self._wh


class StripeResource(dg.ConfigurableResource):
    """How the pipeline paces and retries Stripe calls (per workspace key)."""

    rate_limit_rps: float = 0.0  # 0 -> settings (90 req/s, under Stripe's 100 live limit)
    page_size: int = 100
    max_attempts: int = 0
    # Pages of one stream read at once, in created-time slices (1: page after page).
    list_slices: int = DEFAULT_LIST_SLICES
    # Workspaces synced at once by a stream's asset; each has its own key and rate limit.
    workspace_concurrency: int = 4
    timeout_seconds: float = 0.0  # 0 -> settings (30 s)

    @cached_property
    def settings(self) -> Settings:
        """Process settings (secrets, API version)."""
        return get_settings()

    def effective_rate(self) -> float:
        """Requests per second allowed per workspace."""
        return self.rate_limit_rps or self.settings.stripe_rate_limit_rps

    def effective_timeout(self) -> float:
        """Seconds a Stripe request may go unanswered before it is retried."""
        return self.timeout_seconds or self.settings.stripe_timeout_seconds

    def effective_attempts(self) -> int:
        """Attempts per request before the step fails and Dagster's RetryPolicy takes over."""
        return self.max_attempts or self.settings.stripe_max_attempts
