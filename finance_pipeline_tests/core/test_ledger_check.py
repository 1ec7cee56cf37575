"""The ledger's blocking reconciliation check: exact integer totals, and a failure is a failed
ERROR check result with the differing workspace, currency and both totals, never a half-written
table (the build rolls back) and never a bare exception."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pytest

from finance_pipeline.core.assets import ledger
from finance_pipeline.tenancy import create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse
from finance_pipeline.warehouse.db import json_doc
from finance_pipeline_tests.dagster_runs import warehouse_resources

T0 = 1_790_000_000  # 2026-09-21


def _stripe_row(ws: str, id_: str, **fields: Any) -> dict[str, Any]:
    return {
        "workspace_id": ws,
        "id": id_,
        "account_id": "acct_1",
        "livemode": False,
        "payload": json_doc({"id": id_}),
        "synced_at": T0,
        **fields,
    }


def _seed(wh: Warehouse) -> None:
    create_organization(wh, "o", org_id="o")
    create_workspace(wh, "o", "w", workspace_id="ws1")
    with wh.begin() as db:
        # Charge 1 pays an invoice with 10% exclusive tax: 1,100 cents -> 1,000 cents revenue.
        # Charge 2 pays an invoice whose tax share is not whole: 999 x 908/999 cents.
        # Charge 3 has no invoice (all revenue); charge 4 failed and is left out.
        wh.insert(
            db,
            "raw.stripe_invoices",
            [
                _stripe_row("ws1", "in_1", created=T0, total=1_100, total_excluding_tax=1_000),
                _stripe_row("ws1", "in_2", created=T0, total=999, total_excluding_tax=908),
            ],
        )
        wh.insert(
            db,
            "raw.stripe_invoice_payments",
            [
                _stripe_row("ws1", "inpay_1", created=T0, invoice="in_1", charge="ch_1"),
                _stripe_row("ws1", "inpay_2", created=T0, invoice="in_2", charge="ch_2"),
            ],
        )
        wh.insert(
            db,
            "raw.stripe_charges",
            [
                _stripe_row("ws1", cid, created=T0, amount=amount, currency="usd", status=status)
                for cid, amount, status in (
                    ("ch_1", 1_100, "succeeded"),
                    ("ch_2", 999, "succeeded"),
                    ("ch_3", 500, "succeeded"),
                    ("ch_4", 700, "failed"),
                )
            ],
        )


def _run(wh: Warehouse) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [ledger],
        resources=warehouse_resources(wh),
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _check(result: dg.ExecuteInProcessResult) -> Any:
    [evaluation] = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert evaluation.check_name == "ledger_matches_raw_stripe"
    return evaluation


def _ledger(wh: Warehouse) -> list[dict[str, Any]]:
    return wh.rows(
        "SELECT entry_id, amount_micros FROM core.ledger WHERE workspace_id = 'ws1' ORDER BY entry_id"
    )


def test_exact_totals_pass(warehouse: Warehouse) -> None:
    _seed(warehouse)
    result = _run(warehouse)
    assert result.success and _check(result).passed
    gross = warehouse.scalar(
        "SELECT SUM(amount_micros) FROM core.ledger WHERE kind = 'gross_revenue'"
    )
    # 10,000,000 + round(9,080,000) + 5,000,000 micros.
    assert gross == 10_000_000 + 9_080_000 + 5_000_000


@pytest.mark.parametrize(
    ("tamper", "what", "ledger_value", "raw_value"),
    [
        # A raw amount corrected behind the sync's watermark: the incremental build does not see
        # it, the reconciliation does.
        (
            "UPDATE raw.stripe_charges SET amount = 600 WHERE id = 'ch_3'",
            "gross revenue micros",
            "24080000",
            "25080000",
        ),
        # One micro-unit off in the stored ledger: exact arithmetic sees it.
        (
            "UPDATE core.ledger SET amount_micros = amount_micros + 1"
            " WHERE source_id = 'ch_1' AND kind = 'gross_revenue'",
            "gross revenue micros",
            "24080001",
            "24080000",
        ),
        # A succeeded charge missing from the ledger.
        (
            "UPDATE raw.stripe_charges SET status = 'succeeded' WHERE id = 'ch_4'",
            "succeeded charges",
            "3",
            "4",
        ),
    ],
)
def test_tampered_data_fails_the_check_and_writes_nothing(
    warehouse: Warehouse, tamper: str, what: str, ledger_value: str, raw_value: str
) -> None:
    wh = warehouse
    _seed(wh)
    assert _run(wh).success
    with wh.begin() as db:
        db.execute(wh.text(tamper))
    before = _ledger(wh)
    state = wh.rows("SELECT * FROM core.build_state")
    result = _run(wh)
    check = _check(result)
    assert not result.success  # blocking: the step fails after reporting the check
    assert check.passed is False and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["mismatches"].value == 1
    first = check.metadata["first"].value
    assert first == {
        "workspace_id": "ws1",
        "currency": "usd",
        "what": what,
        "ledger": ledger_value,
        "raw": raw_value,
    }
    assert "| ws1 | usd |" in check.metadata["differences"].value
    # Rolled back: the ledger and its build state are as before the run.
    assert _ledger(wh) == before
    assert wh.rows("SELECT * FROM core.build_state") == state
