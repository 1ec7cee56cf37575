"""History builds read raw inputs a batch of whole customers at a time."""

from __future__ import annotations

from finance_pipeline.core.history_io import customer_batches
from finance_pipeline.warehouse import Warehouse
from finance_pipeline.warehouse.db import json_doc


def _seed(wh: Warehouse) -> None:
    subs = [("sub_1", "cus_a"), ("sub_2", "cus_b"), ("sub_3", "cus_a"), ("sub_4", "cus_c")]
    with wh.begin() as db:
        wh.insert(
            db,
            "raw.stripe_subscriptions",
            [
                {
                    "workspace_id": "ws1",
                    "id": sid,
                    "account_id": "acct_1",
                    "livemode": False,
                    "customer": cus,
                    "payload": json_doc({"id": sid}),
                    "synced_at": 1,
                }
                for sid, cus in subs
            ],
        )


def test_batches_hold_whole_customers(sqlite_warehouse: Warehouse) -> None:
    wh = sqlite_warehouse
    _seed(wh)
    # Two customers per batch: cus_a's two subscriptions stay together.
    assert list(customer_batches(wh, "ws1", None, 2)) == [["sub_1", "sub_2", "sub_3"], ["sub_4"]]
    assert list(customer_batches(wh, "ws1", None, 1)) == [["sub_1", "sub_3"], ["sub_2"], ["sub_4"]]
    # Only the listed subscriptions, and none for an empty list.
    assert list(customer_batches(wh, "ws1", {"sub_2", "sub_4"}, 5)) == [["sub_2", "sub_4"]]
    assert list(customer_batches(wh, "ws1", set(), 5)) == []
