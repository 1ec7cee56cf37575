"""The close's pure logic: the manifest it freezes, the deterministic generated_at and the exact
per-metric diff of restated versus as-closed figures."""

from __future__ import annotations

from datetime import UTC, date, datetime

from finance_pipeline.lib.close import (
    FigureDiff,
    build_manifest,
    canonical_json,
    data_as_of,
    diff_figures,
    diff_from_json,
    diff_json,
    figures_sha256,
)


def test_manifest_records_watermarks_fx_code_checks_files_and_figures() -> None:
    m = build_manifest(
        workspace_id="ws1",
        month="2026-10",
        version=2,
        streams={"charges": 1_793_000_000, "balance_transactions": None},
        builds={"ledger": 1_793_000_100},
        fx_rates=[
            ("USD", "EUR", date(2026, 10, 2), "0.9"),
            ("usd", "eur", date(2026, 10, 1), "0.91"),
            ("usd", "gbp", date(2026, 10, 1), "0.8"),
        ],
        code_version={"package": "0.1.0", "git_commit": "unknown"},
        checks={"mart/mrr_daily: schema_matches_metadata": True},
        files={"ws1/2026-10/margins-2026-10.csv": "ab", "ws1/2026-10/close_pack-2026-10.pdf": "cd"},
        figures={"MRR roll-forward: Closing MRR": "100.00"},
        restatements_listed=["rst_b", "rst_a"],
        reopened_from="close_1",
    )
    assert m == {
        "kind": "month_end_close",
        "workspace_id": "ws1",
        "month": "2026-10",
        "version": 2,
        "watermarks": {
            "streams": {"balance_transactions": None, "charges": 1_793_000_000},
            "builds": {"ledger": 1_793_000_100},
        },
        "fx_rates": {
            "usd/eur": {"2026-10-01": "0.91", "2026-10-02": "0.9"},
            "usd/gbp": {"2026-10-01": "0.8"},
        },
        "code_version": {"git_commit": "unknown", "package": "0.1.0"},
        "checks": {"mart/mrr_daily: schema_matches_metadata": True},
        "files": {
            "ws1/2026-10/close_pack-2026-10.pdf": "cd",
            "ws1/2026-10/margins-2026-10.csv": "ab",
        },
        "figures": {"MRR roll-forward: Closing MRR": "100.00"},
        "restatements_listed": ["rst_a", "rst_b"],
        "reopened_from": "close_1",
    }
    # Canonical text: the same manifest always hashes the same, whatever the insertion order.
    assert canonical_json(m) == canonical_json(dict(reversed(list(m.items()))))


def test_generated_at_is_the_newest_data_watermark_else_the_day_after_the_month() -> None:
    assert data_as_of("2026-10", {"a": 1_793_000_000, "b": None}, {"x": 1_793_000_500}) == (
        datetime.fromtimestamp(1_793_000_500, UTC)
    )
    assert data_as_of("2026-12", {}, {"x": None}) == datetime(2027, 1, 1, tzinfo=UTC)


def test_diff_lists_only_changed_figures_with_exact_signed_changes() -> None:
    closed = {"mrr": "1000.00", "refunds": "10.00", "nrr": "101.50", "grr": None, "arpa": "5.00"}
    now = {"mrr": "1000.00", "refunds": "35.10", "nrr": "99.75", "grr": "98.00", "new": "0.01"}
    diffs = diff_figures(closed, now)
    assert diffs == [
        FigureDiff("refunds", "10.00", "35.10", "+25.10"),
        FigureDiff("nrr", "101.50", "99.75", "-1.75"),
        FigureDiff("grr", None, "98.00", None),
        FigureDiff("arpa", "5.00", None, None),
        FigureDiff("new", None, "0.01", None),
    ]
    assert diff_from_json(diff_json(diffs)) == diffs
    assert diff_figures(closed, dict(closed)) == []
    # The same value printed at another grain (a JPY figure closed with cents) is no restatement.
    assert diff_figures({"mrr": "12846.00"}, {"mrr": "12846"}) == []
    assert figures_sha256(closed) == figures_sha256(dict(reversed(list(closed.items()))))
    assert figures_sha256(closed) != figures_sha256(now)
