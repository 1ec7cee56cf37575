"""The month-end close on a simulated account built through the real jobs (SQLite): the close
freezes the month (manifest, catalogue close_id, the store refuses an overwrite), a rerun is a
no-op with byte-identical files, a late refund becomes a restatement (closed files unchanged) that
raises one close_restated alert (episode, webhook) and the next month's pack lists, a reopen issues version 2 with a diff page, and the alert resolves. The tests
run in order: each continues the account's story. The close sensor's tests set up their own state
(test_close_readiness.py)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest

from finance_pipeline.alerts import assets as alert_assets
from finance_pipeline.alerts.assets import alerts
from finance_pipeline.alerts.delivery import clear_alert_webhook, set_alert_webhook
from finance_pipeline.cli import main
from finance_pipeline.definitions import defs
from finance_pipeline.lib.alerts import episode_id
from finance_pipeline.lib.close import diff_figures
from finance_pipeline.reports import close as close_module
from finance_pipeline.reports import close_assets
from finance_pipeline.reports.assets import report_assets
from finance_pipeline.reports.close import (
    figures,
    latest_close,
    list_closes,
    month_csvs,
    restatements,
)
from finance_pipeline.reports.close_assets import close_pack
from finance_pipeline.reports.pdf.pack_data import close_pack_data
from finance_pipeline.reports.pdf.render import render_close_pack
from finance_pipeline.reports.render import REPORT_TYPES, build_csv, workspace
from finance_pipeline.reports.store import (
    ReportClosed,
    list_entries,
    store_report,
)
from finance_pipeline.settings import get_settings
from finance_pipeline.warehouse import Warehouse
from finance_pipeline_tests.alerts.webhook_stub import WebhookStub
from finance_pipeline_tests.conftest import fresh_warehouse
from finance_pipeline_tests.dagster_runs import range_tags, warehouse_resources
from finance_pipeline_tests.reports_pdf.dataset import WORKSPACE, build_account

END = date(2026, 11, 30)
OCT, NOV = "2026-10", "2026-11"
# When the late refund's restatement is detected, and when October is reopened and closed again
# (UTC; the workspace's time zone is UTC).
DETECTED = datetime(2026, 12, 1, 9, tzinfo=UTC)
RECLOSED = datetime(2026, 12, 2, 9, tzinfo=UTC)
RESTATED = "close_restated"
POPPLER = shutil.which("pdftotext") is not None


@dataclass
class Account:
    wh: Warehouse
    instance: dg.DagsterInstance
    root: Path  # the reports dir
    mp: pytest.MonkeyPatch


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def account(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Account]:
    """One simulated account (15 customers to November 2026) and one Dagster instance, on SQLite
    and on PostgreSQL (its own database, dropped after)."""
    base = tmp_path_factory.mktemp("close")
    mp = pytest.MonkeyPatch()
    mp.setenv("FP_DATA_DIR", str(base / "data"))
    mp.setenv("FP_SECRET_KEY", "q2h0GjQ9b9cF1vV6m5m7mYQx0Ck1l1z8r2p6u3w4e5Q=")
    mp.delenv("DAGSTER_HOME", raising=False)
    get_settings.cache_clear()
    try:
        with fresh_warehouse(request.param, base, request) as wh:
            instance = dg.DagsterInstance.ephemeral()
            build_account(
                wh, base / "landing", customers=15, months=4, end=END, seed=11, instance=instance
            )
            yield Account(wh, instance, get_settings().resolved_reports_dir, mp)
    finally:
        mp.undo()
        get_settings.cache_clear()


@pytest.fixture(autouse=True)
def _account_settings(account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test of the module sees the account's data dir (conftest isolates settings)."""
    monkeypatch.setenv("FP_DATA_DIR", str(account.root.parent))
    monkeypatch.setenv("FP_WAREHOUSE_URL", account.wh.url.render_as_string(False))
    get_settings.cache_clear()
    assert get_settings().resolved_reports_dir == account.root


def _run(account: Account, job: str, **kwargs: object) -> dg.ExecuteInProcessResult:
    result = defs.resolve_job_def(job).execute_in_process(
        instance=account.instance, resources=warehouse_resources(account.wh), **kwargs
    )
    assert result.success
    return result


def _res(account: Account) -> dict[str, object]:
    return warehouse_resources(account.wh)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pdf_text(path: Path) -> str:
    return subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout


def test_the_close_freezes_the_month(account: Account) -> None:
    wh, root = account.wh, account.root
    result = _run(account, "month_end_close", partition_key=f"{OCT}-01")
    [mat] = [
        m
        for m in result.asset_materializations_for_node("reports__close_pack")
        if m.asset_key == close_pack.key
    ]
    c = latest_close(wh, WORKSPACE, OCT)
    assert c is not None and (c.version, c.status) == (1, "closed")
    m = c.manifest
    # Watermarks: every synced stream and core build, as in the warehouse.
    streams = wh.rows(
        "SELECT stream, high_water FROM raw.sync_state WHERE workspace_id = :w", w=WORKSPACE
    )
    assert m["watermarks"]["streams"] == {r["stream"]: r["high_water"] for r in streams}
    assert set(m["watermarks"]["builds"]) == {
        r["asset"] for r in wh.rows("SELECT asset FROM core.build_state WHERE workspace_id = 'ws1'")
    }
    # FX rates of October: every stored rate of the month's days.
    n_rates = wh.scalar(
        "SELECT COUNT(*) FROM core.fx_rates WHERE date >= '2026-10-01' AND date <= '2026-10-31'"
    )
    assert n_rates and sum(len(v) for v in m["fx_rates"].values()) == n_rates
    assert m["code_version"]["package"] == "0.1.0" and m["code_version"]["git_commit"]
    # The latest check results of 2026-10-31 came from the Dagster instance, and passed.
    assert "mart/mrr_daily: schema_matches_metadata" in m["checks"]
    assert all(m["checks"].values())
    # The report set: six CSVs, their table PDFs and the pack, each file's sha256, catalogue rows
    # carry close_id.
    entries = list_entries(wh, WORKSPACE, month=OCT)
    assert sorted((e.key.report_type, e.key.format) for e in entries) == sorted(
        [*((t, f) for t in REPORT_TYPES for f in ("csv", "pdf")), ("close_pack", "pdf")]
    )
    assert m["files"] == {e.path: _sha(e.absolute(root)) for e in entries}
    assert {e.close_id for e in entries} == {c.id}
    pack = next(e for e in entries if e.key.report_type == "close_pack")
    assert pack.path == f"{WORKSPACE}/{OCT}/close_pack-{OCT}.pdf"
    meta = mat.metadata
    assert meta[f"{WORKSPACE}_{OCT}_sha256"].value == pack.sha256
    assert meta[f"{WORKSPACE}_{OCT}_size_bytes"].value == pack.size_bytes
    pages = meta[f"{WORKSPACE}_{OCT}_pages"].value
    assert pages >= 8
    # The close mails its pack only to a workspace that set recipients (reports.email).
    assert meta[f"{WORKSPACE}_{OCT}_email"].value == "not_configured"
    if POPPLER:
        info = subprocess.run(
            ["pdfinfo", str(pack.absolute(root))], capture_output=True, text=True, check=True
        ).stdout
        assert re.search(rf"^Pages:\s+{pages}$", info, re.M), info
    # The figures frozen are the pack's: the closing MRR matches the mart.
    data = close_pack_data(wh, WORKSPACE, date(2026, 10, 1), generated_at=datetime.now(UTC))
    assert m["figures"] == figures(data)
    # The store refuses new content for a closed report; the same bytes are a no-op.
    mrr = next(e for e in entries if e.key.report_type == "mrr_breakdown")
    with pytest.raises(ReportClosed):
        store_report(wh, root, mrr.key, b"changed\n", new_version_if_changed=True)
    same = store_report(wh, root, mrr.key, mrr.absolute(root).read_bytes())
    assert same == mrr


def test_rerunning_an_unchanged_close_is_a_no_op_with_identical_bytes(account: Account) -> None:
    wh, root = account.wh, account.root
    before = {e.path: _sha(e.absolute(root)) for e in list_entries(wh, WORKSPACE, month=OCT)}
    _run(account, "month_end_close", partition_key=f"{OCT}-01")
    assert [c.version for c in list_closes(wh, WORKSPACE)] == [1]
    after = {e.path: _sha(e.absolute(root)) for e in list_entries(wh, WORKSPACE, month=OCT)}
    assert after == before
    assert restatements(wh, WORKSPACE, OCT) == []
    # Re-rendering the month from the same data gives the closed bytes: CSVs and, with the
    # close's generated_at, the PDF.
    ws = workspace(wh, WORKSPACE)
    csvs = month_csvs(wh, WORKSPACE, OCT)
    for e in csvs:
        table = build_csv(wh, ws, e.key.report_type, e.key.period_start, e.key.period_end)
        assert table.render() == e.absolute(root).read_bytes(), e.path
    c = latest_close(wh, WORKSPACE, OCT)
    generated = datetime.strptime(c.manifest["generated_at"], "%Y-%m-%dT%H:%M:%SZ")
    checks = close_assets.latest_check_results(
        account.instance, close_assets.mart_check_keys(), date(2026, 10, 31)
    )
    data = close_pack_data(
        wh, WORKSPACE, date(2026, 10, 1), generated_at=generated.replace(tzinfo=UTC), checks=checks
    )
    pdf = render_close_pack(data, {Path(e.path).name: e.absolute(root).read_bytes() for e in csvs})
    assert (
        hashlib.sha256(pdf).hexdigest()
        == c.manifest["files"][f"{WORKSPACE}/{OCT}/close_pack-{OCT}.pdf"]
    )


def _late_refund(wh: Warehouse) -> tuple[str, str]:
    """A full refund, on 2026-10-28, of an October USD charge; returns (refund id, charge id)."""
    charge = wh.rows(
        "SELECT * FROM raw.stripe_charges WHERE workspace_id = 'ws1' AND status = 'succeeded'"
        " AND currency = 'usd' AND created >= :a AND created < :b"
        " AND id NOT IN (SELECT charge FROM raw.stripe_refunds WHERE charge IS NOT NULL)"
        " ORDER BY created, id LIMIT 1",
        a=int(datetime(2026, 10, 1, tzinfo=UTC).timestamp()),
        b=int(datetime(2026, 10, 20, tzinfo=UTC).timestamp()),
    )[0]
    created = int(datetime(2026, 10, 28, 12, tzinfo=UTC).timestamp())
    refund = {
        "id": "re_late_1",
        "object": "refund",
        "amount": charge["amount"],
        "charge": charge["id"],
        "created": created,
        "currency": "usd",
        "status": "succeeded",
    }
    with wh.begin() as db:
        db.execute(
            wh.text(
                "INSERT INTO raw.stripe_refunds (workspace_id, id, account_id, livemode, created,"
                " charge, amount, currency, status, reason, balance_transaction, payload,"
                " synced_at) VALUES ('ws1', 're_late_1', :acct, :lm, :c, :ch, :amt, 'usd',"
                " 'succeeded', NULL, NULL, :p, :s)"
            ),
            {
                "acct": charge["account_id"],
                "lm": charge["livemode"],
                "c": created,
                "ch": charge["id"],
                "amt": charge["amount"],
                "p": json.dumps(refund),
                # Synced now, after the close: what a real sync of a late refund looks like.
                "s": int(time.time()),
            },
        )
    return "re_late_1", charge["id"]


def test_a_late_refund_is_a_restatement_and_the_closed_files_stay(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    wh, root = account.wh, account.root
    monkeypatch.setattr(close_module, "clock", DETECTED.timestamp)
    c = latest_close(wh, WORKSPACE, OCT)
    closed = {e.path: e.absolute(root).read_bytes() for e in list_entries(wh, WORKSPACE, month=OCT)}
    refund_id, _ = _late_refund(wh)
    result = defs.resolve_job_def("rebuild_marts").execute_in_process(
        instance=account.instance,
        resources=warehouse_resources(wh),
        tags=range_tags("2026-10-01", "2026-11-30"),
    )
    assert result.success
    refund_micros = -int(
        wh.scalar(
            "SELECT SUM(amount_reporting_micros) FROM core.ledger WHERE workspace_id = 'ws1'"
            " AND source_id = :r",
            r=refund_id,
        )
    )
    assert refund_micros > 0
    # The CSV reports of the closed month are not rewritten (the store refuses; listed skipped).
    _run(account, "monthly_reports", partition_key=f"{OCT}-01")
    # After the successful rebuild, the run-status sensor asks for the restatement check.
    from finance_pipeline.definitions import closed_months_restated

    ctx = dg.build_run_status_sensor_context(
        sensor_name="closed_months_restated",
        dagster_event=result.get_run_success_event(),
        dagster_instance=account.instance,
        dagster_run=result.dagster_run,
    )
    req = closed_months_restated(ctx)
    assert req.run_key == f"close_restatements:{result.run_id}"
    assert closed_months_restated.default_status == dg.DefaultSensorStatus.RUNNING
    # The restatement check records the diff.
    _run(account, "close_restatement_check")
    [r] = restatements(wh, WORKSPACE, OCT)
    assert (r["close_id"], r["alert"]) == (c.id, "close_restated")
    data = close_pack_data(wh, WORKSPACE, date(2026, 10, 1), generated_at=datetime.now(UTC))
    expected = diff_figures(c.manifest["figures"], figures(data))
    assert r["diff"] == [
        {"metric": d.metric, "as_closed": d.as_closed, "restated": d.restated, "change": d.change}
        for d in expected
    ]
    by_metric = {d["metric"]: d for d in r["diff"]}
    cents = f"{refund_micros / 1_000_000:.2f}"
    # Refunds are negative amounts (docs/metrics.md §10): both lines fall by the refund.
    assert by_metric["Revenue: refunds"]["change"] == f"-{cents}"
    assert by_metric["Revenue: net of refunds"]["change"] == f"-{cents}"
    assert "Revenue: revenue" not in by_metric and "MRR roll-forward: Closing MRR" not in by_metric
    # The closed files are byte-unchanged and still the only versions.
    now = {e.path: e.absolute(root).read_bytes() for e in list_entries(wh, WORKSPACE, month=OCT)}
    assert now == closed
    # Checking again records nothing new (one alert per restated state, not one per run).
    _run(account, "close_restatement_check")
    assert len(restatements(wh, WORKSPACE, OCT)) == 1


@pytest.fixture(scope="module")
def stub(account: Account) -> Iterator[WebhookStub]:
    """The account's webhook endpoint (one per warehouse dialect)."""
    s = WebhookStub()
    yield s
    s.close()


def _alerts_on(account: Account, day: date, stub: WebhookStub) -> list[dict]:
    """Materialize mart.alerts for `day` at 06:00 UTC the next day (a live day, as after the daily
    refresh); the close_restated webhook events it sent."""
    before = len(stub.requests)
    now = datetime(day.year, day.month, day.day, 6, tzinfo=UTC).timestamp() + 86_400
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(alert_assets, "clock", lambda: now)
        result = dg.materialize(
            [alerts],
            partition_key=day.isoformat(),
            resources=warehouse_resources(account.wh),
            instance=account.instance,
        )
    assert result.success
    events = [json.loads(body) for _, body in stub.requests[before:]]
    return [e for e in events if e["data"]["type"] == RESTATED]


def _restated_rows(wh: Warehouse, table: str) -> list[dict]:
    return wh.rows(f"SELECT * FROM {table} WHERE workspace_id = 'ws1' AND type = '{RESTATED}'")


def test_the_restatement_raises_one_close_restated_alert(
    account: Account, stub: WebhookStub
) -> None:
    wh = account.wh
    set_alert_webhook(wh, WORKSPACE, stub.url, secret="whsec_close_test")
    day = DETECTED.date()
    [r] = restatements(wh, WORKSPACE, OCT)
    [opened] = _alerts_on(account, day, stub)
    [row] = _restated_rows(wh, "mart.alerts")
    assert (str(row["day"])[:10], row["subject"]) == (day.isoformat(), OCT)
    by_metric = {d["metric"]: d for d in r["diff"]}
    refunds = by_metric["Revenue: refunds"]["change"]
    assert row["message"].startswith(f"Closed month {OCT} restated: net revenue {refunds} USD")
    payload = row["payload_json"]
    assert (payload["restatement_id"], payload["diff"]) == (r["id"], r["diff"])
    # docs/metrics.md §14: critical when net revenue moved by at least 5 % of the as-closed value.
    net = by_metric["Revenue: net of refunds"]
    material = abs(Decimal(net["change"])) * 100 >= abs(Decimal(net["as_closed"])) * 5
    assert row["severity"] == ("critical" if material else "warn")
    [ep] = _restated_rows(wh, "mart.alert_episodes")
    assert ep["episode_id"] == episode_id(WORKSPACE, RESTATED, OCT, day) == row["episode_id"]
    assert (ep["status"], ep["resolved_on"]) == ("opened", None)
    assert opened["type"] == "alert.opened" and opened["data"]["episode"]["id"] == ep["episode_id"]
    assert opened["data"]["message"] == row["message"]
    # Re-running the day (or the check) duplicates nothing and sends nothing.
    _run(account, "close_restatement_check")
    assert _alerts_on(account, day, stub) == []
    assert len(_restated_rows(wh, "mart.alerts")) == 1
    assert len(_restated_rows(wh, "mart.alert_episodes")) == 1


def test_the_next_months_pack_lists_the_restatement(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    wh, root = account.wh, account.root
    # The close pack asset through dg.materialize, with the six CSV report assets upstream.
    result = dg.materialize(
        [*report_assets, close_pack],
        partition_key=f"{NOV}-01",
        resources=warehouse_resources(wh),
        instance=account.instance,
    )
    assert result.success
    nov = latest_close(wh, WORKSPACE, NOV)
    [r] = restatements(wh, WORKSPACE, OCT)
    assert nov is not None and nov.manifest["restatements_listed"] == [r["id"]]
    # The marts' checks of 2026-11-30 were last run by the rebuild over a partition range (as in
    # the demo): the pack still has their results.
    assert "mart/mrr_daily: schema_matches_metadata" in nov.manifest["checks"]
    assert all(nov.manifest["checks"].values())
    pack = next(
        e for e in list_entries(wh, WORKSPACE, month=NOV) if e.key.report_type == "close_pack"
    )
    meta = result.asset_materializations_for_node("reports__close_pack")[0].metadata
    assert meta[f"{WORKSPACE}_{NOV}_path"].value == str(pack.absolute(root))
    if POPPLER:
        text = _pdf_text(pack.absolute(root))
        assert "Restatements of closed months" in text
        assert "2026-10 (close version 1)" in text and "Revenue: refunds" in text
        n = len(nov.manifest["checks"])
        assert f"{n} of {n} passed" in text
    # November was closed here, not by the close sensor: on December 1st it asks for nothing
    # and says why (no run that would only find the month closed).
    monkeypatch.setattr(close_assets, "_today", lambda: date(2026, 12, 1))
    tick = defs.resolve_sensor_def("month_end_close_sensor").evaluate_tick(
        dg.build_sensor_context(
            instance=account.instance, definitions=defs, resources=_res(account)
        )
    )
    assert not tick.run_requests and tick.cursor == NOV
    assert f"{NOV} has nothing left to close: 1 already closed, not requested: {WORKSPACE} v1" in (
        tick.skip_message or ""
    )


def test_reopen_issues_version_2_with_a_diff_page(
    account: Account, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    wh, root = account.wh, account.root
    monkeypatch.setattr(close_module, "clock", RECLOSED.timestamp)
    v1 = latest_close(wh, WORKSPACE, OCT)
    v1_files = {p: (root / p).read_bytes() for p in v1.manifest["files"]}
    assert main(["close", "run", "--workspace", WORKSPACE, "--month", OCT]) == 0
    assert "already_closed" in capsys.readouterr().out
    assert (
        main(
            ["close", "reopen", "--workspace", WORKSPACE, "--month", OCT, "--reason", "late refund"]
        )
        == 0
    )
    assert main(["close", "run", "--workspace", WORKSPACE, "--month", OCT]) == 0
    out = capsys.readouterr().out
    assert f"close_pack-{OCT}.v2.pdf" in out
    closes = [c for c in list_closes(wh, WORKSPACE) if c.month == OCT]
    assert [(c.version, c.status, c.reason) for c in closes] == [
        (1, "reopened", "late refund"),
        (2, "closed", None),
    ]
    v2 = closes[1]
    # Version 2's figures are the restated ones; the reports that changed got a .v2 file.
    data = close_pack_data(wh, WORKSPACE, date(2026, 10, 1), generated_at=datetime.now(UTC))
    assert v2.manifest["figures"] == figures(data)
    assert v2.manifest["reopened_from"] == v1.id
    changed = {p for p in v2.manifest["files"] if ".v2." in p}
    assert f"{WORKSPACE}/{OCT}/close_pack-{OCT}.v2.pdf" in changed
    assert f"{WORKSPACE}/{OCT}/revenue_trend-{OCT}.v2.csv" in changed
    for e in list_entries(wh, WORKSPACE, month=OCT, latest_only=True):
        assert e.close_id == v2.id and v2.manifest["files"][e.path] == e.sha256
    # Version 1's files are untouched.
    assert {p: (root / p).read_bytes() for p in v1_files} == v1_files
    if POPPLER:
        text = _pdf_text(root / f"{WORKSPACE}/{OCT}/close_pack-{OCT}.v2.pdf")
        assert "Restated against version 1" in text and "late refund" in text
        [r] = restatements(wh, WORKSPACE, OCT)
        for d in r["diff"]:
            if d["metric"].startswith("Revenue"):
                assert d["metric"] in text
    assert main(["close", "status", "--workspace", WORKSPACE]) == 0
    status = capsys.readouterr().out
    assert f"{WORKSPACE} {OCT} v1 reopened" in status and f"{WORKSPACE} {OCT} v2 closed" in status
    assert "restated Revenue: refunds" in status


def test_the_re_close_resolves_the_alert(account: Account, stub: WebhookStub) -> None:
    wh = account.wh
    day = RECLOSED.date()
    [resolved] = _alerts_on(account, day, stub)
    assert resolved["type"] == "alert.resolved"
    # Only the detection day had the alert; the episode resolved the day October was closed again.
    [row] = _restated_rows(wh, "mart.alerts")
    assert str(row["day"])[:10] == DETECTED.date().isoformat()
    [ep] = _restated_rows(wh, "mart.alert_episodes")
    assert (ep["status"], str(ep["resolved_on"])[:10]) == ("resolved", day.isoformat())
    assert _alerts_on(account, day, stub) == []
    # Over the whole story, the webhook was told twice about the restatement: opened, resolved.
    sent = [json.loads(body) for _, body in stub.requests]
    assert [e["type"] for e in sent if e["data"]["type"] == RESTATED] == [
        "alert.opened",
        "alert.resolved",
    ]
    clear_alert_webhook(wh, WORKSPACE)
