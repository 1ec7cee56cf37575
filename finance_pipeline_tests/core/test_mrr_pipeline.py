"""Core and MRR marts through Dagster on a simulated account (SQLite and PostgreSQL): checks pass,
the roll-forward identity holds on every stored day, and re-running a window restates it."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import dagster as dg
import pytest
from finance_pipeline_dev.simulator import simulate
from finance_pipeline_dev.standin.server import StandIn

from finance_pipeline.definitions import defs
from finance_pipeline.ingest.landing import pending_files, process_file
from finance_pipeline.lib.timeutil import day_start_ts, local_day
from finance_pipeline.metrics.mrr_assets import mrr_marts
from finance_pipeline.metrics.mrr_compute import identity_holds_in_table, mrr_settings
from finance_pipeline.metrics.reconcile import invoice_mrr_mismatches
from finance_pipeline.resources import WarehouseResource
from finance_pipeline.settings import get_settings
from finance_pipeline.tenancy import (
    connect_stripe,
    create_organization,
    create_workspace,
    list_workspaces,
)
from finance_pipeline.warehouse import Warehouse
from finance_pipeline_tests.dagster_runs import check_results, materialize_days, range_tags

END = date(2026, 10, 31)


@pytest.fixture
def synced(warehouse: Warehouse):
    sim = simulate(seed=4, customers=30, months=6, end=END)
    [(acct, a)] = sim.fixture["accounts"].items()
    key = next(iter(a["keys"]))
    standin = StandIn(sim.fixture)
    url = standin.start()
    org = create_organization(warehouse, "o", org_id="o")
    create_workspace(warehouse, org, "w", workspace_id="ws1")
    connect_stripe(warehouse, "ws1", account_id=acct, livemode=False, api_key=key, api_base=url)
    landing = get_settings().resolved_landing_dir
    (landing / "ws1").mkdir(parents=True)
    sim.write_landing(landing / "ws1")
    for path in pending_files(landing):
        assert process_file(warehouse, path, landing).status == "accepted"
    resources = {"warehouse": WarehouseResource(url=warehouse.url.render_as_string(False))}
    yield warehouse, resources, sim
    standin.stop()


def _run(resources, start: str, end: str) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def("daily_refresh")
    return job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        resources=resources,
        tags=range_tags(start, end),
        raise_on_error=False,
    )


def test_daily_refresh_builds_marts_with_passing_blocking_checks(synced) -> None:
    wh, resources, _sim = synced
    result = _run(resources, "2026-09-01", END.isoformat())
    assert result.success
    checks = check_results(result)
    assert checks["ledger_matches_raw_stripe"] and checks["movement_identity_holds"]
    assert "invoices_reconcile_with_mrr" in checks  # WARN: reported, never blocking
    # Every table's blocking schema check ran and passed; every materialization has a row count,
    # and its asset's definition the column schema (not each day's event: a backfill stores one
    # per day).
    schema = {
        e.asset_check_evaluation_data.asset_key: e.asset_check_evaluation_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.asset_check_evaluation_data.check_name == "schema_matches_metadata"
    }
    materialized = result.get_asset_materialization_events()
    assert {e.asset_key for e in materialized} == set(schema) and all(schema.values())
    for e in materialized:
        meta = e.materialization.metadata
        assert isinstance(meta["dagster/row_count"].value, int), e.asset_key
        assert "dagster/column_schema" not in meta, e.asset_key
        node = defs.resolve_asset_graph().get(e.asset_key)
        assert node.metadata["dagster/column_schema"].columns, e.asset_key
    days = wh.scalar("SELECT COUNT(*) FROM mart.mrr_daily WHERE workspace_id = 'ws1'")
    assert days == (END - date(2026, 9, 1)).days + 1
    assert identity_holds_in_table(wh, "ws1", date(2026, 9, 1), END) == []
    last = wh.rows(
        "SELECT mrr_micros, arr_micros, paying_customers FROM mart.mrr_daily"
        " WHERE workspace_id = 'ws1' AND day = :d",
        d=END,
    )[0]
    assert (
        last["arr_micros"] == 12 * last["mrr_micros"]
        or abs(last["arr_micros"] - 12 * last["mrr_micros"]) <= 6
    )
    assert last["mrr_micros"] > 0 and last["paying_customers"] > 0
    # Ledger cash totals equal raw Stripe: every succeeded charge appears exactly once.
    charges = wh.scalar("SELECT COUNT(*) FROM raw.stripe_charges WHERE status = 'succeeded'")
    assert wh.scalar("SELECT COUNT(*) FROM core.ledger WHERE kind = 'gross_revenue'") == charges
    # The plan summary adds up to the company MRR (exactly, before rounding).
    from fractions import Fraction

    plans = sum(
        Fraction(r["mrr_exact"])
        for r in wh.rows(
            "SELECT mrr_exact FROM mart.mrr_plan_daily WHERE workspace_id = 'ws1' AND day = :d",
            d=END,
        )
    )
    daily = wh.rows(
        "SELECT exact_json FROM mart.mrr_daily WHERE workspace_id = 'ws1' AND day = :d", d=END
    )[0]
    import json

    exact = (
        daily["exact_json"]
        if isinstance(daily["exact_json"], dict)
        else json.loads(daily["exact_json"])
    )
    manual = sum(
        Fraction(r["mrr_exact"])
        for r in wh.rows(
            "SELECT mrr_exact FROM mart.mrr_changes WHERE workspace_id = 'ws1' AND customer_id = 'manual'"
            " AND day = (SELECT MAX(day) FROM mart.mrr_changes WHERE customer_id = 'manual' AND day <= :d)",
            d=END,
        )
    )
    assert plans + manual == Fraction(exact["mrr"]) or plans == Fraction(exact["mrr"])


def test_rerunning_a_window_restates_it_without_duplicates(synced) -> None:
    wh, resources, _ = synced
    assert _run(resources, "2026-10-01", END.isoformat()).success
    before = {
        t: wh.scalar(f"SELECT COUNT(*) FROM {t}")
        for t in (
            "mart.mrr_daily",
            "mart.mrr_movements",
            "mart.mrr_changes",
            "mart.mrr_plan_daily",
            "mart.subscription_counting",
            "core.ledger",
        )
    }
    snapshot = wh.rows("SELECT * FROM mart.mrr_daily ORDER BY day")
    assert _run(resources, "2026-10-25", END.isoformat()).success
    after = {t: wh.scalar(f"SELECT COUNT(*) FROM {t}") for t in before}
    assert after == before
    assert wh.rows("SELECT * FROM mart.mrr_daily ORDER BY day") == snapshot


def test_incremental_window_equals_full_rebuild(synced) -> None:
    wh, resources, _ = synced
    assert _run(resources, "2026-08-01", END.isoformat()).success
    full = wh.rows("SELECT * FROM mart.mrr_daily WHERE day >= '2026-10-20' ORDER BY day")
    wh_rows_moves = wh.rows(
        "SELECT * FROM mart.mrr_movements WHERE day >= '2026-10-20' ORDER BY day, customer_id, kind"
    )
    with wh.begin() as db:
        for t in ("mart.mrr_daily", "mart.mrr_movements"):
            db.execute(wh.text(f"DELETE FROM {t} WHERE day >= '2026-10-20'"))
    assert _run(resources, "2026-10-20", END.isoformat()).success
    assert wh.rows("SELECT * FROM mart.mrr_daily WHERE day >= '2026-10-20' ORDER BY day") == full
    assert (
        wh.rows(
            "SELECT * FROM mart.mrr_movements WHERE day >= '2026-10-20' ORDER BY day, customer_id, kind"
        )
        == wh_rows_moves
    )


def test_retention_rates_for_any_period_come_from_the_marts(synced) -> None:
    """docs/metrics.md §6 over a period read back from the marts, checked against exact values."""
    import json
    from fractions import Fraction

    from finance_pipeline.metrics.retention_io import PeriodNotMaterialized, retention_for_period

    wh, resources, _sim = synced
    assert _run(resources, "2026-05-01", END.isoformat()).success
    got = retention_for_period(wh, "ws1", "usd", date(2026, 9, 1), date(2026, 9, 30))
    opening = wh.rows(
        "SELECT exact_json FROM mart.mrr_daily WHERE workspace_id = 'ws1' AND day = :d",
        d=date(2026, 8, 31),
    )[0]["exact_json"]
    opening_mrr = Fraction((opening if isinstance(opening, dict) else json.loads(opening))["mrr"])
    assert got.starting_customers > 5 and got.mrr_start == opening_mrr
    moves = {k: Fraction(0) for k in ("churn", "contraction", "expansion", "reactivation")}
    for r in wh.rows(
        "SELECT kind, amount_exact FROM mart.mrr_movements WHERE workspace_id = 'ws1'"
        " AND day >= :a AND day <= :b",
        a=date(2026, 9, 1),
        b=date(2026, 9, 30),
    ):
        if r["kind"] in moves:
            moves[r["kind"]] += Fraction(r["amount_exact"])
    assert got.gross_mrr_churn_rate == (moves["churn"] + moves["contraction"]) / opening_mrr
    assert (
        got.net_mrr_churn_rate
        == (moves["churn"] + moves["contraction"] - moves["expansion"] - moves["reactivation"])
        / opening_mrr
    )
    assert got.logo_churn_rate == Fraction(got.churned_customers, got.starting_customers)
    assert (
        got.nrr == got.mrr_end_cohort / got.mrr_start
        and got.grr == got.mrr_retained / got.mrr_start
    )
    with pytest.raises(PeriodNotMaterialized, match="backfill"):
        retention_for_period(wh, "ws1", "usd", date(2024, 1, 1), date(2024, 1, 31))
    with pytest.raises(ValueError, match="before its start"):
        retention_for_period(wh, "ws1", "usd", date(2026, 9, 30), date(2026, 9, 1))


def test_invoice_check_reads_the_windows_renewals_and_finds_a_wrong_line(synced) -> None:
    """The WARN check compares each period's invoiced amount with MRR; a daily run checks only
    the periods starting in its window. Before the first stored event the history is rebuilt from
    invoices: a disagreement there is listed, not failed; a wrong line after it fails the check
    with its dates and amounts."""
    wh, resources, _sim = synced
    assert _run(resources, "2026-09-01", END.isoformat()).success
    ws = list_workspaces(wh)[0]
    october = (day_start_ts(date(2026, 10, 1)), day_start_ts(date(2026, 11, 1)))
    whole = invoice_mrr_mismatches(wh, "ws1", mrr_settings(ws))
    oct_ = invoice_mrr_mismatches(wh, "ws1", mrr_settings(ws), *october)
    assert 0 < oct_.periods_compared < whole.periods_compared <= whole.lines_checked
    assert whole.mismatches == [] and oct_.mismatches == []
    # A yearly line with a 10.00 discount the rebuilt history does not apply (§4, "History").
    assert [m.describe() for m in whole.approximations] == [
        {
            "customer": "cus_1WkSyXwgLLMDS8ZOaQ2wJtC",
            "subscription": "sub_1vZ4H8ik9Zb6LNrdWIKoFsJ",
            "period": "2026-05-03 to 2027-05-03",
            "invoiced_per_month": "80.83 USD",
            "mrr": "81.67 USD",
            "difference": "-0.83 USD",
        }
    ]
    complete_from = whole.history_complete_from
    assert complete_from is not None and local_day(complete_from) == date(2026, 10, 2)
    # A monthly line without discounts or inclusive tax: its amount is its MRR in minor units.
    lines = wh.rows(
        "SELECT l.id, l.subscription, l.period_start, l.period_end, l.amount, l.currency,"
        f" {wh.json_field('l.payload', 'discount_amounts')} AS discount_amounts"
        " FROM raw.stripe_invoice_lines l"
        " JOIN raw.stripe_prices p ON p.workspace_id = l.workspace_id AND p.id = l.price"
        " WHERE l.workspace_id = 'ws1' AND l.proration = :f AND p.usage_type = 'licensed'"
        " AND p.recurring_interval = 'month' AND p.recurring_interval_count = 1"
        " AND p.tax_behavior <> 'inclusive' AND p.currency <> 'jpy'"
        " AND l.period_start >= :a AND l.period_start < :b ORDER BY l.id",
        f=False,
        a=complete_from,
        b=october[1],
    )
    line = next(r for r in lines if r["discount_amounts"] in (None, "[]", []))
    with wh.begin() as db:
        db.execute(
            wh.text("UPDATE raw.stripe_invoice_lines SET amount = amount + 100 WHERE id = :i"),
            {"i": line["id"]},
        )
    [bad] = invoice_mrr_mismatches(wh, "ws1", mrr_settings(ws), *october).mismatches
    assert (bad.subscription_id, bad.period_start) == (line["subscription"], line["period_start"])
    september = (day_start_ts(date(2026, 9, 1)), october[0])
    assert invoice_mrr_mismatches(wh, "ws1", mrr_settings(ws), *september).mismatches == []
    # The check over the line's own day: WARN, failed, readable (no timestamps, no micro-units).
    day = local_day(line["period_start"])
    result = materialize_days([mrr_marts], wh, day, day)
    [check] = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.asset_check_evaluation_data.check_name == "invoices_reconcile_with_mrr"
    ]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["mismatches"].value == 1
    cur = line["currency"].upper()
    period = f"{day.isoformat()} to {local_day(line['period_end']).isoformat()}"
    invoiced, mrr = (Decimal(line["amount"] + 100).scaleb(-2), Decimal(line["amount"]).scaleb(-2))
    assert check.metadata["mismatch_examples"].value.splitlines()[2] == (
        f"| ws1 | {bad.customer_id} | {line['subscription']} | {period} | {invoiced} {cur} "
        f"| {mrr} {cur} | 1.00 {cur} |"
    )
    assert "1 unexplained mismatches" in (check.description or "")


def test_marts_written_a_few_customers_at_a_time_equal_one_batch(
    synced, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The asset parks each batch's rows and writes them at the end: every mart table is the same
    with batches of 1 or 7 customers as with all of them at once."""
    from finance_pipeline.metrics import mrr_compute

    wh, resources, _ = synced
    tables = (
        "mart.mrr_daily",
        "mart.mrr_movements",
        "mart.mrr_changes",
        "mart.mrr_plan_daily",
        "mart.subscription_counting",
    )

    def snapshot() -> dict[str, list[str]]:
        return {
            t: sorted(repr(sorted(r.items())) for r in wh.rows(f"SELECT * FROM {t}"))
            for t in tables
        }

    assert _run(resources, "2026-08-01", END.isoformat()).success
    whole = snapshot()
    assert all(whole.values()), {t: len(v) for t, v in whole.items()}
    for batch in (1, 7):
        monkeypatch.setattr(mrr_compute, "MRR_BATCH_CUSTOMERS", batch)
        assert _run(resources, "2026-08-01", END.isoformat()).success
        assert snapshot() == whole, batch


def test_invoice_check_by_batches_of_subscriptions_equals_one_pass(
    synced, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The invoice check compares a range of subscriptions at a time: with batches of 1, 7 or all
    of them, the counts, the lists (in the same order) and the check's metadata are the same,
    including lines of subscriptions without a history sorting before, between and after the
    stored ones."""
    from finance_pipeline.metrics import reconcile

    wh, resources, _ = synced
    assert _run(resources, "2026-08-01", END.isoformat()).success
    ws = list_workspaces(wh)[0]
    settings = mrr_settings(ws)
    subs = [
        r["subscription_id"]
        for r in wh.rows(
            "SELECT DISTINCT subscription_id FROM core.subscription_history ORDER BY 1"
        )
    ]
    assert len(subs) > 14
    line = wh.rows(
        "SELECT l.id FROM raw.stripe_invoice_lines l WHERE l.proration = :f"
        " AND l.subscription IS NOT NULL ORDER BY l.id LIMIT 1",
        f=False,
    )[0]["id"]
    names = list(wh.rows("SELECT * FROM raw.stripe_invoice_lines WHERE id = :i", i=line)[0])
    with wh.begin() as db:
        # Orphan lines (no stored history): before the first id, between two, after the last.
        for k, orphan in enumerate(("sub_", subs[len(subs) // 2] + "0", subs[-1] + "z")):
            select = ", ".join(
                f":id{k}" if n == "id" else f":s{k}" if n == "subscription" else n for n in names
            )
            db.execute(
                wh.text(
                    f"INSERT INTO raw.stripe_invoice_lines ({', '.join(names)})"
                    f" SELECT {select} FROM raw.stripe_invoice_lines WHERE id = :i"
                ),
                {f"id{k}": f"il_orphan_{k}", f"s{k}": orphan, "i": line},
            )
        # And a wrong amount on a stored subscription's line after the first event.
        db.execute(
            wh.text(
                "UPDATE raw.stripe_invoice_lines SET amount = amount + 100 WHERE id IN ("
                " SELECT id FROM raw.stripe_invoice_lines WHERE proration = :f"
                " AND subscription IS NOT NULL ORDER BY period_start DESC, id LIMIT 1)"
            ),
            {"f": False},
        )
    windows = [
        (None, None),
        (day_start_ts(date(2026, 8, 1)), day_start_ts(date(2026, 11, 1))),
        (day_start_ts(date(2026, 10, 1)), None),
    ]
    for window in windows:
        whole = invoice_mrr_mismatches(wh, "ws1", settings, *window, batch_subscriptions=10**9)
        if window == (None, None):
            found = {m.subscription_id for m in whole.approximations + whole.mismatches}
            assert {"sub_", subs[len(subs) // 2] + "0", subs[-1] + "z"} <= found
            assert whole.approximations and whole.mismatches
        for batch in (1, 7, len(subs) - 1):
            assert (
                invoice_mrr_mismatches(wh, "ws1", settings, *window, batch_subscriptions=batch)
                == whole
            ), (window, batch)

    def check_metadata() -> dict:
        result = materialize_days([mrr_marts], wh, date(2026, 8, 1), END)
        [check] = [
            e.asset_check_evaluation_data
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
            and e.asset_check_evaluation_data.check_name == "invoices_reconcile_with_mrr"
        ]
        return {k: v.value for k, v in check.metadata.items()}

    one = check_metadata()
    assert one["mismatches"] > 0 and one["lines_checked"] > 0
    monkeypatch.setattr(reconcile, "INVOICE_CHECK_BATCH_SUBSCRIPTIONS", 3)
    assert check_metadata() == one
