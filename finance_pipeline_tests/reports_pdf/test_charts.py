"""The hand-built SVG charts: round axis ticks, compact labels, stable markup."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from finance_pipeline.reports.pdf.charts import (
    bars_and_line_svg,
    compact,
    lines_svg,
    nice_ticks,
    stacked_bars_svg,
    waterfall_svg,
)


def test_ticks_are_round_and_cover_the_range() -> None:
    assert nice_ticks(0, 19_695.81) == [0, 5000, 10000, 15000, 20000]
    assert nice_ticks(-35_000, 84_000) == [-50000, -25000, 0, 25000, 50000, 75000, 100000]
    # Cut axis for a waterfall: no zero, steps of 2,500 around the levels.
    assert nice_ticks(14_000, 26_000, zero=False) == [12500 + 2500 * i for i in range(7)]
    assert nice_ticks(0, 0) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]


def test_compact_labels() -> None:
    assert [compact(x) for x in (0, 950, 12_500, 1_250_000, -2_907.8)] == [
        "0", "950", "12.5k", "1.25M", "-2.91k",
    ]  # fmt: skip


def test_charts_are_well_formed_svg_and_deterministic() -> None:
    charts = [
        waterfall_svg([("Opening", 100.0, "balance"), ("New", 5.0, "move"),
                       ("Churn", -7.5, "move"), ("Closing", 97.5, "balance")]),
        stacked_bars_svg(["Sep 26", "Oct 26"], [("Pro", [10.0, 12.0]), ("Team", [3.0, 0.0])]),
        bars_and_line_svg(["Sep 26", "Oct 26"], [10.0, 12.0], [8.0, 15.0], [2.0, -3.0]),
        lines_svg(["Nov 26", "Dec 26"], [("base", [1.0, 2.0], "#000")], "Forecast"),
    ]  # fmt: skip
    for svg in charts:
        root = ET.fromstring(svg)
        assert root.tag.endswith("svg") and root.get("viewBox") == "0 0 720 250"
        assert " id=" not in svg  # nothing random or unique in the markup
    assert charts[0] == waterfall_svg([("Opening", 100.0, "balance"), ("New", 5.0, "move"),
                                       ("Churn", -7.5, "move"), ("Closing", 97.5, "balance")])  # fmt: skip
