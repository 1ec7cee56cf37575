"""pytest fixtures that run the stand-in on an ephemeral port.

Register in the root conftest:
``pytest_plugins = ["finance_pipeline_dev.pytest_plugin"]``.
``stripe_standin`` yields a started ``TestStandIn`` with one test account (a full key and a
restricted key) plus a connected account; ``stripe_standin_factory(doc)`` starts more from fixtures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from finance_pipeline_dev.standin.server import StandIn
from finance_pipeline_dev.standin.store import Store

TEST_ACCOUNT = "acct_1StandInTest00001"
CONNECTED_ACCOUNT = "acct_1StandInConnect01"
FULL_KEY = "sk_test_standin"
RESTRICTED_KEY = "rk_test_standin_restricted"
#: What the restricted key may read: everything except charges, refunds and balance transactions.
RESTRICTED_PERMISSIONS = [
    "account",
    "coupons",
    "credit_notes",
    "customers",
    "events",
    "invoice_payments",
    "invoices",
    "prices",
    "products",
    "subscription_items",
    "subscriptions",
]
DEFAULT_CLOCK = 1763856000  # 2025-11-23T00:00:00Z


def default_fixture(clock: int | None = DEFAULT_CLOCK) -> dict[str, Any]:
    """The empty-ish test fixture: the test account (two keys) and a connected account."""
    doc: dict[str, Any] = {
        "accounts": {
            TEST_ACCOUNT: {
                "livemode": False,
                "keys": {
                    FULL_KEY: {"permissions": None},
                    RESTRICTED_KEY: {"permissions": list(RESTRICTED_PERMISSIONS)},
                },
                "connected_accounts": [CONNECTED_ACCOUNT],
                "objects": [],
            },
            CONNECTED_ACCOUNT: {"livemode": False, "keys": {}, "objects": []},
        }
    }
    if clock is not None:
        doc["clock"] = clock
    return doc


class TestStandIn(StandIn):
    """A StandIn with defaults for tests: the test account and its full key."""

    __test__ = False  # not a test class, despite the name

    account_id = TEST_ACCOUNT
    connected_account_id = CONNECTED_ACCOUNT
    api_key = FULL_KEY
    restricted_key = RESTRICTED_KEY

    def client(  # type: ignore[override]
        self,
        api_key: str | None = None,
        *,
        stripe_account: str | None = None,
        max_network_retries: int = 0,
        timeout: float = 30.0,
    ) -> Any:
        """A real StripeClient for this stand-in (default: the full test key)."""
        return super().client(
            api_key or self.api_key,
            stripe_account=stripe_account,
            max_network_retries=max_network_retries,
            timeout=timeout,
        )

    def add(
        self, obj: Mapping[str, Any], event_type: str | None = None, account: str | None = None
    ) -> dict[str, Any]:
        """Create one object in the test account (optionally emitting ``event_type``)."""
        return self.store.create(account or self.account_id, obj, event_type)

    def add_many(self, objs: Iterable[Mapping[str, Any]], account: str | None = None) -> int:
        """Add or replace objects in the test account without events."""
        return self.store.put_many(account or self.account_id, objs)


@pytest.fixture
def stripe_standin() -> Iterator[TestStandIn]:
    """A started stand-in (ephemeral port, clock frozen at DEFAULT_CLOCK) with the test account."""
    standin = TestStandIn(Store.load(default_fixture()))
    standin.start()
    try:
        yield standin
    finally:
        standin.stop()


@pytest.fixture
def stripe_standin_factory() -> Iterator[Callable[..., TestStandIn]]:
    """Start stand-ins from fixture docs/paths: ``factory(doc=None, seed=0)``; stopped after."""
    started: list[TestStandIn] = []

    def make(doc: Mapping[str, Any] | str | Path | None = None, *, seed: int = 0) -> TestStandIn:
        standin = TestStandIn(Store.load(doc if doc is not None else default_fixture(), seed=seed))
        standin.faults.configure(seed=seed)
        standin.start()
        started.append(standin)
        return standin

    try:
        yield make
    finally:
        for standin in started:
            standin.stop()
