"""The month-end close pack from a simulated Stripe account built through the real jobs: the PDF
prints the marts' figures, its roll-forward foots, every page has content inside its margins, the
CSVs and manifest are attached (PDF/A-3b), and an unchanged month re-renders byte-identically."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from finance_pipeline.core.history_io import states_from_rows
from finance_pipeline.lib import report_csv
from finance_pipeline.lib.close_pack import subscriber_churn_30d
from finance_pipeline.lib.money import (
    MICROS_PER_CENT,
    foot_roll_forward,
    percent,
    round_half_away,
)
from finance_pipeline.lib.mrr import counts_at, end_of_day_instant
from finance_pipeline.lib.mrr_timeline import expand_converted_trials
from finance_pipeline.lib.plan_movements import UNATTRIBUTED
from finance_pipeline.metrics.mrr_compute import mrr_settings
from finance_pipeline.metrics.retention_io import retention_for_period
from finance_pipeline.reports.pdf.pack_data import (
    MOVEMENTS,
    AlertEpisode,
    CheckResult,
    ClosePackData,
    FailedPayment,
    MarginCustomer,
    close_pack_data,
)
from finance_pipeline.reports.pdf.render import MANIFEST_NAME, money, render_close_pack
from finance_pipeline.reports.render import build_csv, workspace
from finance_pipeline.tenancy import create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse, apply_migrations
from finance_pipeline_tests.pdf_pages import (
    assert_pages_inked_within_margins,
    needs_poppler,
    page_images,
    pdf_text,
)
from finance_pipeline_tests.reports.test_report_assets import assert_breakdown_foots
from finance_pipeline_tests.reports_pdf.dataset import WORKSPACE, build_account

END = date(2026, 10, 31)
MONTH = date(2026, 10, 1)
GENERATED = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
CSVS = {"mrr_daily.csv": b"day,mrr\n2026-10-31,1.00\n", "revenue_monthly.csv": b"month\n2026-10\n"}
CHECKS = [CheckResult("movement_identity_holds", True, "MRR identity on every day")]


@dataclass
class Pack:
    wh: Warehouse
    data: ClosePackData
    pdf: bytes
    path: Path


def _exact(row: dict, name: str) -> Fraction:
    ex = row["exact_json"]
    ex = json.loads(ex) if isinstance(ex, str) else ex
    return Fraction(ex[name])


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pack]:
    """One simulated account (20 customers, 4 months) built once for the module, on SQLite."""
    root = tmp_path_factory.mktemp("closepack")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FP_DATA_DIR", str(root / "data"))
        mp.setenv("FP_SECRET_KEY", "q2h0GjQ9b9cF1vV6m5m7mYQx0Ck1l1z8r2p6u3w4e5Q=")
        from finance_pipeline.settings import get_settings

        get_settings.cache_clear()
        wh = Warehouse(f"sqlite:///{root / 'warehouse.sqlite'}")
        apply_migrations(wh)
        build_account(wh, root / "landing", customers=20, months=4, end=END, seed=7)
        data = close_pack_data(wh, WORKSPACE, MONTH, generated_at=GENERATED, checks=CHECKS)
        pdf = render_close_pack(data, CSVS)
        path = root / "close.pdf"
        path.write_bytes(pdf)
        get_settings.cache_clear()
    yield Pack(wh, data, pdf, path)
    wh.dispose()


def test_roll_forward_foots_and_equals_the_marts(pack: Pack) -> None:
    rows = pack.wh.rows(
        "SELECT * FROM mart.mrr_daily WHERE workspace_id = :w AND day >= :a AND day <= :b"
        " ORDER BY day",
        w=WORKSPACE,
        a=MONTH,
        b=END,
    )
    opening, closing = _exact(rows[0], "previous_mrr"), _exact(rows[-1], "mrr")
    signed = {k: s * sum((_exact(r, k) for r in rows), Fraction(0)) for k, s in MOVEMENTS}
    want_open, want_moves, want_close = foot_roll_forward(opening, signed, closing)
    lines = pack.data.roll_forward
    assert [line.shown for line in lines] == [want_open, *want_moves.values(), want_close]
    assert lines[0].shown + sum(line.shown for line in lines[1:-1]) == lines[-1].shown
    assert lines[-1].shown == round_half_away(closing, MICROS_PER_CENT)
    assert closing > 0 and any(want_moves.values())  # a real month, not an empty one
    kpi = {k.key: k for k in pack.data.kpis}
    assert kpi["mrr"].current == closing and kpi["arr"].current == 12 * closing
    assert pack.data.plan_totals[-1] == lines[-1].shown  # plans foot to the month's MRR
    rates = retention_for_period(pack.wh, WORKSPACE, "usd", MONTH, END)
    assert (kpi["nrr"].current, kpi["grr"].current) == (rates.nrr, rates.grr)
    churn = {c.label: c for c in pack.data.churn}
    assert churn["cohort logo churn (ours)"].current == percent(rates.logo_churn_rate, 1)
    assert churn["net MRR churn"].current == percent(rates.net_mrr_churn_rate, 1)
    assert pack.data.all_tie_outs_pass


def test_mrr_breakdown_by_plan_foots_on_the_engine_marts(pack: Pack) -> None:
    """docs/metrics.md §5 "Movements by plan" on marts the engine built (USD and EUR customers):
    the plans explain every movement (no unattributed row), every column of the CSV foots to the
    company row and every row rolls forward; a plan-filtered report shows the same movements."""
    ws = workspace(pack.wh, WORKSPACE)
    table = build_csv(pack.wh, ws, "mrr_breakdown", MONTH, END)
    rows = [report_csv.MRR_BREAKDOWN_COLUMNS, *([_text(c) for c in r] for r in table.rows)]
    assert_breakdown_foots(rows)
    plans = rows[1:-1]
    assert len(plans) > 1 and UNATTRIBUTED not in [r[0] for r in plans]
    assert any(Decimal(r[col]) for r in plans for col in range(2, 7))  # a month with movements
    by_plan = {r[0]: r for r in plans}
    for plan in by_plan:
        [_, row] = parse_rows(build_csv(pack.wh, ws, "mrr_breakdown", MONTH, END, plan))
        # Footed on its own rather than down to the company row: within a cent per cell.
        assert all(
            abs(Decimal(a) - Decimal(b)) <= Decimal("0.01")
            for a, b in zip(row[1:10], by_plan[plan][1:10], strict=True)
        )


def _text(cell: object) -> str:
    return "" if cell is None else f"{cell}"


def parse_rows(table: report_csv.CsvTable) -> list[list[str]]:
    return list(csv.reader(io.StringIO(table.render().decode("utf-8"), newline="")))


def test_the_printed_text_holds_the_marts_figures(pack: Pack) -> None:
    text = pdf_text(pack.path)
    d = pack.data
    for line in d.roll_forward:
        assert re.search(rf"{re.escape(line.label)}\s+{re.escape(money(line.shown))}\b", text)
    closing = pack.wh.rows(
        "SELECT mrr_micros, paying_customers FROM mart.mrr_daily WHERE workspace_id = :w"
        " AND day = :d",
        w=WORKSPACE,
        d=END,
    )[0]
    assert f"{round_half_away(closing['mrr_micros'], MICROS_PER_CENT) / 1e6:,.2f}" in text
    cfo = pack.wh.rows(
        "SELECT net_revenue_cents_30d FROM mart.cfo_metrics_daily WHERE workspace_id = :w"
        " AND day = :d",
        w=WORKSPACE,
        d=END,
    )[0]
    assert money(cfo["net_revenue_cents_30d"] * MICROS_PER_CENT) in text
    total = d.money_total
    assert re.search(rf"Total\s+{re.escape(money(total.revenue))}\s+", text)
    assert total.revenue == sum(m.revenue for m in d.money_months)
    assert total.revenue == round_half_away(total.revenue_exact, MICROS_PER_CENT)
    assert "page 1 of" in text and f"Month-end close · {MONTH:%B %Y}" in text
    for heading in ("MRR roll-forward", "Net MRR retention", "Appendix: data quality"):
        assert heading in text


@needs_poppler
def test_every_page_has_content_and_nothing_is_cut_off(pack: Pack, tmp_path: Path) -> None:
    pages = page_images(pack.path, tmp_path)
    assert len(pages) >= 8
    assert_pages_inked_within_margins(pages)


@needs_poppler
def test_attachments_manifest_and_pdf_a(pack: Pack, tmp_path: Path) -> None:
    listing = subprocess.run(
        ["pdfdetach", "-list", str(pack.path)], check=True, capture_output=True, text=True
    ).stdout
    for name in (*CSVS, MANIFEST_NAME):
        assert name in listing
    subprocess.run(["pdfdetach", "-saveall", "-o", str(tmp_path), str(pack.path)], check=True)
    assert (tmp_path / "mrr_daily.csv").read_bytes() == CSVS["mrr_daily.csv"]
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert manifest["month"] == "2026-10" and manifest["workspace_id"] == WORKSPACE
    assert set(manifest["attachments"]) == set(CSVS)
    assert manifest["tie_outs"] and all(manifest["tie_outs"].values())
    meta = subprocess.run(
        ["pdfinfo", "-meta", str(pack.path)], check=True, capture_output=True, text=True
    ).stdout
    assert "pdfaid:part" in meta and re.search(r"pdfaid:part[^0-9]*3", meta)
    info = subprocess.run(["pdfinfo", str(pack.path)], check=True, capture_output=True, text=True)
    assert "2026" in info.stdout and "Page size:" in info.stdout


def test_an_unchanged_month_re_renders_byte_identically(pack: Pack) -> None:
    again = close_pack_data(pack.wh, WORKSPACE, MONTH, generated_at=GENERATED, checks=CHECKS)
    assert again == pack.data
    assert render_close_pack(again, CSVS) == pack.pdf


def test_pack_data_reads_the_marts_on_both_dialects(warehouse: Warehouse, tmp_path: Path) -> None:
    build_account(warehouse, tmp_path / "landing", customers=8, months=3, end=END, seed=3)
    d = close_pack_data(warehouse, WORKSPACE, MONTH, generated_at=GENERATED)
    lines = d.roll_forward
    assert lines[0].shown + sum(line.shown for line in lines[1:-1]) == lines[-1].shown
    assert d.all_tie_outs_pass and d.forecast and d.margin_tiers
    assert [c.label for c in d.churn][:3] == [
        "cohort logo churn (ours)",
        "ChartMogul customer churn rate",
        "Stripe 30-day subscriber churn",
    ]
    assert d.money_total.revenue == sum(m.revenue for m in d.money_months)


@needs_poppler
def test_a_workspace_without_data_renders_with_dashes(
    sqlite_warehouse: Warehouse, tmp_path: Path
) -> None:
    create_organization(sqlite_warehouse, "o", org_id="o")
    create_workspace(sqlite_warehouse, "o", "Empty Co", workspace_id="empty")
    d = close_pack_data(sqlite_warehouse, "empty", MONTH, generated_at=GENERATED)
    assert [line.shown for line in d.roll_forward] == [0] * 8
    assert d.forecast == () and d.cohorts == () and d.alerts == ()
    path = tmp_path / "empty.pdf"
    path.write_bytes(render_close_pack(d, {}))
    text = pdf_text(path)
    assert "Empty Co" in text and "No alert fired in October 2026." in text
    assert "No default forecast is stored for October 2026." in text
    # No checks given: the cover says none was recorded for the month's last day.
    assert "no check results recorded for 2026-10-31" in text


@needs_poppler
def test_a_table_split_across_pages_repeats_its_header(pack: Pack, tmp_path: Path) -> None:
    # The 25 listed alert episodes, each with a long message, run over more than one page.
    many = tuple(
        AlertEpisode(
            "mrr_drop", f"Zyxel{i:02d}", date(2026, 10, 1), date(2026, 10, 2), "warn",
            "MRR fell below the prior 30 days' level on every day of the episode. " * 6, False,
        )
        for i in range(25)
    )  # fmt: skip
    path = tmp_path / "long.pdf"
    path.write_bytes(render_close_pack(replace(pack.data, alerts=many), {}))
    pages = pdf_text(path).split("\f")
    with_rows = [p for p in pages if "Zyxel" in p]
    assert len(with_rows) >= 2  # the alert list runs over more than one page
    for page in with_rows:
        assert re.search(r"Alert\s+Severity\s+Days\s+Subject\s+Latest message", page)
    assert all(f"Zyxel{i:02d}" in "".join(with_rows) for i in range(25))


@needs_poppler
def test_long_customer_lists_are_cut_with_a_footed_others_line(pack: Pack, tmp_path: Path) -> None:
    watch = tuple(
        MarginCustomer(
            f"Customer {i:03d}", "critical" if i < 30 else "at_risk", (100 + i) * MICROS_PER_CENT,
            i * MICROS_PER_CENT, None, None, 0,
        )
        for i in range(90)
    )  # fmt: skip
    failed = tuple(
        FailedPayment(date(2026, 10, 1 + i % 28), f"Payer {i:03d}", 1_000 + i, "usd" if i % 3 else "eur", "card_declined")
        for i in range(60)
    )  # fmt: skip
    alerts = tuple(
        AlertEpisode(
            "margin_threshold_crossed" if i % 4 else "mrr_drop", f"Subject {i:03d}",
            date(2026, 10, 1 + i % 28), date(2026, 10, 1 + i % 28),
            "critical" if i < 10 else "warn", f"Message {i:03d}", i % 5 == 0,
        )
        for i in range(40)
    )  # fmt: skip
    data = replace(pack.data, margin_watch=watch, failed_payments=failed, alerts=alerts)
    path = tmp_path / "cut.pdf"
    csvs = {"margins-2026-10.csv": b"x", "failed_payments-2026-10.csv": b"y"}
    path.write_bytes(render_close_pack(data, csvs))
    text = pdf_text(path)
    # The first 25 of the watch list (critical first, as listed), then one line for the rest.
    assert all(f"Customer {i:03d}" in text for i in range(25))
    assert "Customer 025" not in text
    rest = watch[25:]
    others = re.search(r"65 others\s+5 critical\s+([\d,.]+)\s+([\d,.]+)", text)
    assert others is not None
    assert others.groups() == (
        money(sum(c.revenue for c in rest)),
        money(sum(c.cost for c in rest)),
    )
    words = " ".join(text.split())
    assert "65 more, in margins-2026-10.csv (attached)" in words
    # Failed payments: the 25 largest, the others and a total per currency, footed.
    shown = sorted(failed, key=lambda f: -f.amount_minor)[:25]
    assert all(f.customer in text for f in shown)
    assert "Payer 000" not in text
    for cur in ("eur", "usd"):
        listed = sum(f.amount_minor for f in shown if f.currency == cur)
        total = sum(f.amount_minor for f in failed if f.currency == cur)
        n_other = sum(1 for f in failed if f.currency == cur) - sum(
            1 for f in shown if f.currency == cur
        )
        m = re.search(rf"{n_other} others\s+([\d,.]+)\s+{cur.upper()}", text)
        t = re.search(rf"Total \(\d+\)\s+([\d,.]+)\s+{cur.upper()}", text)
        assert m is not None and t is not None
        as_cents = [int(x.replace(",", "").replace(".", "")) for x in (m[1], t[1])]
        assert as_cents == [total - listed, total]
    assert "35 more, in failed_payments-2026-10.csv (attached)" in words
    # Alerts: episodes by type (lines add up to the total), then the 25 most severe listed.
    assert re.search(r"margin_threshold_crossed\s+7\s+23\s+30\s+6", text)
    assert re.search(r"mrr_drop\s+3\s+7\s+10\s+2", text)
    assert re.search(r"Total\s+10\s+30\s+40\s+8", text)
    assert all(f"Subject {i:03d}" in text for i in range(10))  # every critical one
    assert sum(f"Subject {i:03d}" in text for i in range(40)) == 25
    assert "the other 15 are in mart.alerts" in words


def test_stripe_churn_matches_each_subscription_evaluated_on_each_day(pack: Pack) -> None:
    """The stored counting changes give the pack's Stripe 30-day churn exactly as evaluating every
    subscription's history on each of the 31 days (docs/metrics.md §6); without them (marts built
    before they were stored) the pack says so instead of printing 0 of 0."""
    ws = workspace(pack.wh, WORKSPACE)
    cfg = mrr_settings(ws)
    by_sub: dict[str, list] = {}
    for s in expand_converted_trials(
        states_from_rows(
            pack.wh.rows("SELECT * FROM core.subscription_history WHERE workspace_id = :w", w=ws.id)
        )
    ):
        by_sub.setdefault(s.subscription_id, []).append(s)

    def counts_on(sub: str, day: date) -> bool:
        at = end_of_day_instant(day, cfg.tz)
        return any(counts_at(s, at, cfg) for s in by_sub[sub])

    churned, base, rate = subscriber_churn_30d(sorted(by_sub), counts_on, END)
    stripe = {c.label: c for c in pack.data.churn}["Stripe 30-day subscriber churn"]
    assert base > 0 and stripe.detail == f"{churned} of {base} subscriptions"
    assert stripe.current == percent(rate, 1)

    stored = pack.wh.rows(
        "SELECT * FROM mart.subscription_counting WHERE workspace_id = :w", w=ws.id
    )
    with pack.wh.begin() as db:
        db.execute(pack.wh.text("DELETE FROM mart.subscription_counting"))
    try:
        d = close_pack_data(pack.wh, WORKSPACE, MONTH, generated_at=GENERATED)
        stripe = {c.label: c for c in d.churn}["Stripe 30-day subscriber churn"]
        assert stripe.current is None and stripe.previous is None
        assert stripe.detail.startswith("not stored: rebuild the MRR marts")
    finally:
        with pack.wh.begin() as db:
            pack.wh.insert(db, "mart.subscription_counting", stored)
