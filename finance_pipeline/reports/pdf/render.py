"""Render the month-end close pack: jinja2 HTML + CSS paged media through weasyprint into a
PDF/A-3b with the month's CSVs and a JSON manifest attached, byte-identical for the same input."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources

import jinja2
from markupsafe import Markup

from finance_pipeline.lib.money import (
    DECIMALS_TEXT,
    MICROS_PER_CENT,
    MICROS_PER_UNIT,
    grain_places,
    minor_unit_exponent,
    round_half_away,
    shown_units,
)
from finance_pipeline.reports.pdf import charts
from finance_pipeline.reports.pdf.pack_data import (
    AlertEpisode,
    ClosePackData,
    FailedPayment,
    Kpi,
    MarginCustomer,
)

MANIFEST_NAME = "manifest.json"
TOC = (
    ("kpis", "1. Headline KPIs"),
    ("roll-forward", "2. MRR roll-forward"),
    ("plans", "3. MRR by plan, last 13 months"),
    ("cohorts", "4. Net MRR retention by first-paid cohort"),
    ("revenue", "5. Revenue, expenses and net by month"),
    ("cfo", "6. CFO metrics and runway"),
    ("margins", "7. Customer margins"),
    ("alerts", "8. Alerts of the month"),
    ("failed", "9. Failed payments"),
    ("forecast", "10. Forecast: base, best and worst"),
    ("quality", "Appendix: data quality"),
)
MONTH_NAMES = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
DASH = "–"  # an en dash for "no value": null rates, runway without burn
# Per-customer lists (critical and at-risk customers, failed payments) print this many rows in
# full; the rest are one footed "N others" line, their rows in the attached CSV. At 10,000
# customers the full lists were 15 of the pack's 29 pages, and most of its layout time.
LISTED_ROWS = 25


@dataclass(frozen=True)
class _MarginOthers:
    """The critical and at-risk customers not listed one by one: how many, revenue and cost."""

    count: int
    critical: int
    revenue: int
    cost: int


@dataclass(frozen=True)
class _AlertTypeLine:
    """The month's episodes of one alert type (or all of them): how many, by peak severity."""

    type: str
    critical: int
    warn: int
    open_at_month_end: int

    @property
    def episodes(self) -> int:
        """Every episode of the type, whatever its severity."""
        return self.critical + self.warn


@dataclass(frozen=True)
class _ChargesOthers:
    """Failed charges not listed one by one, in one currency: how many and their amount."""

    count: int
    currency: str
    amount_minor: int


@dataclass(frozen=True)
class _ChargesTotal:
    """All the month's failed charges in one currency (printed when the list is cut)."""

    count: int
    currency: str
    amount_minor: int


@dataclass(frozen=True)
class _AttachmentRow:
    name: str
    size: int
    sha256: str


def _amount(units: Decimal | None, places: int = 2) -> str:
    return DASH if units is None else f"{units:,.{places}f}"


def money(shown_micros: int | None, grain: int = MICROS_PER_CENT) -> str:
    """Shown micro-units (a multiple of `grain`, the reporting currency's minor unit) with the
    grain's decimals: "1,234.56" at the cent, "1,234" at the yen; None as a dash."""
    if shown_micros is None:
        return DASH
    return _amount(shown_units(shown_micros, grain), grain_places(grain))


def pct(value: Decimal | None) -> str:
    """A percentage with 2 decimals and its sign, "12.34 %"; None (zero denominator) as a dash."""
    return DASH if value is None else f"{value:,.2f} %"


def _kpi_value(k: Kpi, which: str, places: int = 2) -> str:
    """A KPI's shown value; `places`: the reporting currency's decimals, for money."""
    v = getattr(k, f"{which}_shown")
    if v is None:
        return DASH
    if k.kind == "money":
        return _amount(v, places)
    if k.kind == "percent":
        return pct(v)
    if k.kind == "count":
        return f"{int(v):,}"
    return f"{v:,.2f}"


def _kpi_change(k: Kpi, places: int = 2) -> str:
    # The change is the difference of the shown values, so the columns subtract on the page.
    if k.current_shown is None or k.previous_shown is None:
        return DASH
    diff = k.current_shown - k.previous_shown
    sign = "+" if diff > 0 else ""
    if k.kind == "percent":
        return f"{sign}{diff:,.2f} pp"
    if k.kind == "count":
        return f"{sign}{int(diff):,}"
    if k.kind == "money":
        return f"{sign}{diff:,.{places}f}"
    return f"{sign}{diff:,.2f}"


def _margin_watch(
    watch: tuple[MarginCustomer, ...],
) -> tuple[tuple[MarginCustomer, ...], _MarginOthers | None]:
    """The first `LISTED_ROWS` of the watch list (critical first, worst margin first), and the
    rest as one line whose revenue and cost are the sums of their printed cents, so the listed
    lines and the others line add up to the whole list."""
    if len(watch) <= LISTED_ROWS:
        return watch, None
    rest = watch[LISTED_ROWS:]
    return watch[:LISTED_ROWS], _MarginOthers(
        len(rest),
        sum(c.tier == "critical" for c in rest),
        sum(c.revenue for c in rest),
        sum(c.cost for c in rest),
    )


def _alerts_by_type(alerts: tuple[AlertEpisode, ...]) -> list[_AlertTypeLine]:
    """One line per alert type with its episodes by peak severity, then the total line (the
    lines add up to it), so a long month is read at a glance before its listed episodes."""
    lines = [
        _AlertTypeLine(
            t,
            sum(a.type == t and a.peak_severity == "critical" for a in alerts),
            sum(a.type == t and a.peak_severity != "critical" for a in alerts),
            sum(a.type == t and a.open_at_month_end for a in alerts),
        )
        for t in sorted({a.type for a in alerts})
    ]
    total = _AlertTypeLine(
        "Total",
        sum(x.critical for x in lines),
        sum(x.warn for x in lines),
        sum(x.open_at_month_end for x in lines),
    )
    return [*lines, total] if lines else []


def _failed_listed(
    charges: tuple[FailedPayment, ...],
) -> tuple[tuple[FailedPayment, ...], list[_ChargesOthers], list[_ChargesTotal]]:
    """The `LISTED_ROWS` largest failed charges (in their own currency's units), in date order;
    the others and the totals per currency, so listed + others = total in each currency."""
    if len(charges) <= LISTED_ROWS:
        return charges, [], []
    ranked = sorted(
        range(len(charges)),
        key=lambda i: (
            -Decimal(charges[i].amount_minor).scaleb(-minor_unit_exponent(charges[i].currency)),
            i,
        ),
    )
    keep = set(ranked[:LISTED_ROWS])
    listed = tuple(c for i, c in enumerate(charges) if i in keep)
    currencies = sorted({c.currency for c in charges})
    others = [
        _ChargesOthers(
            sum(1 for i, c in enumerate(charges) if i not in keep and c.currency == cur),
            cur,
            sum(
                c.amount_minor for i, c in enumerate(charges) if i not in keep and c.currency == cur
            ),
        )
        for cur in currencies
    ]
    totals = [
        _ChargesTotal(
            sum(1 for c in charges if c.currency == cur),
            cur,
            sum(c.amount_minor for c in charges if c.currency == cur),
        )
        for cur in currencies
    ]
    return listed, [o for o in others if o.count], totals


def _attachment_named(files: Mapping[str, bytes], report_type: str) -> str:
    """The attached CSV of `report_type` (`margins-2026-10.csv`), or how to find it if absent."""
    for name in sorted(files):
        if name.startswith(f"{report_type}-") and name.endswith(".csv"):
            return f"{name} (attached)"
    return f"the month's {report_type} CSV report"


def _minor(f: FailedPayment | _ChargesOthers | _ChargesTotal) -> str:
    exp = minor_unit_exponent(f.currency)
    return f"{Decimal(f.amount_minor).scaleb(-exp):,.{exp}f}"


def _heat(value: Decimal | None) -> str:
    if value is None:
        return ""
    if value < 50:
        return "heatlow"
    for limit, cls in ((70, "heat0"), (85, "heat1"), (95, "heat2"), (100, "heat3")):
        if value < limit:
            return cls
    return "heat4"


def _environment(grain: int = MICROS_PER_CENT) -> jinja2.Environment:
    """The pack's template environment; money filters print at `grain`, the reporting currency's
    minor unit (docs/reports.md: whole yen for JPY), percentages always with 2 decimals."""
    places = grain_places(grain)

    def shown(micros: int | None) -> str:
        return money(micros, grain)

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("finance_pipeline.reports.pdf", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        money=shown,
        amount=lambda units: _amount(units, places),
        money_micros=lambda m: shown(None if m is None else round_half_away(m, grain)),
        pct=pct,
        kpi_value=lambda k, which: _kpi_value(k, which, places),
        kpi_change=lambda k: _kpi_change(k, places),
        minor=_minor,
        heat=_heat,
        # Forecast series are stored in hundredths (the forecast API's `*_cents`); a coarser
        # grain is rounded from them.
        cents=lambda c: (
            DASH if c is None else shown(round_half_away(int(c) * MICROS_PER_CENT, grain))
        ),
        dec2=_dec2,
        tier=lambda t: {"at_risk": "at risk"}.get(t, t),
        signed_count=lambda v, kind: f"{v:,}" if kind == "balance" or v <= 0 else f"+{v:,}",
    )
    return env


def _dec2(value: object) -> str:
    """A decimal string (forecast assumptions, runway) with 2 decimals, half away from zero."""
    if value is None:
        return DASH
    return f"{Decimal(str(value)).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,.2f}"


def _short_month(month: str) -> str:
    """An axis label for a "YYYY-MM" month: "Oct 26"."""
    return f"{MONTH_NAMES[int(month[5:7]) - 1][:3]} {month[2:4]}"


def _month_label(month: str) -> str:
    """ "October 2026" for "2026-10", in English whatever the process locale."""
    return f"{MONTH_NAMES[int(month[5:7]) - 1]} {month[:4]}"


def _to_units(micros: int) -> float:
    """Shown micro-units as a float in whole units: chart geometry only, never a printed figure."""
    return micros / MICROS_PER_UNIT


def _charts(d: ClosePackData) -> dict[str, Markup]:
    steps = [
        (
            "Opening"
            if line.kind == "balance" and i == 0
            else "Closing"
            if line.kind == "balance"
            else line.label,
            _to_units(line.shown),
            "balance" if line.kind == "balance" else "move",
        )
        for i, line in enumerate(d.roll_forward)
    ]
    out = {
        "waterfall": charts.waterfall_svg(steps),
        "plans": charts.stacked_bars_svg(
            [_short_month(m) for m in d.plan_months],
            [(p.plan, [_to_units(v) for v in p.shown]) for p in d.plans],
        ),
        "revenue": charts.bars_and_line_svg(
            [_short_month(m.month) for m in d.money_months],
            [_to_units(m.revenue) for m in d.money_months],
            [_to_units(m.expenses) for m in d.money_months],
            [_to_units(m.net) for m in d.money_months],
        ),
        "forecast": charts.lines_svg(
            # Every variant starts from the closing MRR of the month the forecast is as of.
            [_short_month(d.month), *(_short_month(m) for m in d.forecast_months)],
            [
                (
                    v.name,
                    [_to_units(d.forecast_start_mrr or 0)] + [c / 100 for c in v.mrr_cents],
                    color,
                )
                for v, color in zip(
                    d.forecast, (charts.TOTAL, charts.UP, charts.DOWN), strict=False
                )
            ],
            "Forecast MRR",
        )
        if d.forecast
        else "",
    }
    return {k: Markup(v) for k, v in out.items()}  # our own SVG text, escaped where it holds data


def _toc(d: ClosePackData) -> tuple[tuple[str, str], ...]:
    """The contents: the close's restatement chapters, when present, come before the appendix."""
    extra = []
    if d.close_version > 1:
        extra.append(("restated", f"Restated against version {d.close_version - 1}"))
    if d.restatements:
        extra.append(("restatements", "Restatements of closed months"))
    return (*TOC[:-1], *extra, TOC[-1])


def _cover_sources(d: ClosePackData) -> list[tuple[str, str, str]]:
    """The cover's freshness lines: Stripe as fresh as its stalest stream, then each build."""
    stripe = [w for w in d.watermarks if w.source.startswith("Stripe ")]
    out = []
    if stripe:
        synced = [w.as_of for w in stripe]
        newest = [w.newest for w in stripe if w.newest]
        out.append(
            (
                f"Stripe ({len(stripe)} streams)",
                "never" if None in synced else min(s for s in synced if s),
                max(newest) if newest else DASH,
            )
        )
    out += [
        (w.source.removeprefix("build "), w.as_of or "never", w.newest or DASH)
        for w in d.watermarks
        if w.source.startswith("build ")
    ]
    return out


def manifest(d: ClosePackData, attachments: Mapping[str, bytes]) -> bytes:
    """The JSON manifest attached to the pack: what the figures are and which files ride along."""
    body = {
        "kind": "month_end_close_pack",
        "workspace_id": d.workspace_id,
        "workspace_name": d.workspace_name,
        "month": d.month,
        "period": [d.period_start.isoformat(), d.period_end.isoformat()],
        "reporting_currency": d.currency,
        "generated_at": d.generated_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "mrr_roll_forward_cents": {
            line.label: line.shown // MICROS_PER_CENT for line in d.roll_forward
        },
        "kpis": {k.key: None if k.current_shown is None else str(k.current_shown) for k in d.kpis},
        "tie_outs": {t.name: t.passed for t in d.tie_outs},
        "checks": {c.name: c.passed for c in d.checks},
        "data_as_of": {w.source: w.as_of for w in d.watermarks},
        "attachments": {
            name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            for name, data in sorted(attachments.items())
        },
    }
    return json.dumps(body, indent=2, sort_keys=True).encode() + b"\n"


def stylesheet(name: str) -> Markup:
    """The shared page CSS (templates/page.css) followed by a document's own `name` stylesheet."""
    folder = resources.files("finance_pipeline.reports.pdf").joinpath("templates")
    parts = [folder.joinpath(n).read_text(encoding="utf-8") for n in ("page.css", name)]
    return Markup("\n".join(parts))  # our own package files, not data


def render_html(d: ClosePackData, attachments: Mapping[str, bytes]) -> str:
    """The pack as one HTML document (CSS inlined), what weasyprint lays out."""
    env = _environment(d.grain)
    files = {**attachments, MANIFEST_NAME: manifest(d, attachments)}
    gen = d.generated_at.astimezone(UTC)
    prev = date.fromisoformat(d.month + "-01")
    prev_month = f"{prev.year - (prev.month == 1):04d}-{(prev.month - 2) % 12 + 1:02d}"
    kpi = {k.key: k for k in d.kpis}
    watch, watch_others = _margin_watch(d.margin_watch)
    charges, charges_others, charges_totals = _failed_listed(d.failed_payments)
    return env.get_template("close_pack.html.j2").render(
        d=d,
        alerts=d.alerts[:LISTED_ROWS],
        alert_types=_alerts_by_type(d.alerts),
        watch=watch,
        watch_others=watch_others,
        watch_file=_attachment_named(attachments, "margins"),
        charges=charges,
        charges_others=charges_others,
        charges_totals=charges_totals,
        charges_file=_attachment_named(attachments, "failed_payments"),
        kpi=kpi,
        cur=d.currency.upper(),
        decimals=DECIMALS_TEXT[grain_places(d.grain)],
        css=stylesheet("close_pack.css"),
        month_label=_month_label(d.month),
        prev_label=_month_label(prev_month),
        prev_end=(d.period_start - timedelta(days=1)).isoformat(),
        generated_iso=gen.strftime("%Y-%m-%dT%H:%M:%SZ"),
        generated_text=gen.strftime("%Y-%m-%d %H:%M UTC"),
        toc=_toc(d),
        cover_sources=_cover_sources(d),
        charts=_charts(d),
        attachment_names=sorted(files),
        attachment_rows=[
            _AttachmentRow(n, len(b), hashlib.sha256(b).hexdigest())
            for n, b in sorted(files.items())
        ],
    )


def render_close_pack(data: ClosePackData, attachments: Mapping[str, bytes]) -> bytes:
    """The close pack PDF (PDF/A-3b) with `attachments` (name -> bytes) and a manifest embedded.

    Every date in the file comes from `data.generated_at`, so the same data and attachments give
    the same bytes.
    """
    return render_close_pack_pages(data, attachments)[0]


def render_close_pack_pages(
    data: ClosePackData, attachments: Mapping[str, bytes]
) -> tuple[bytes, int]:
    """`render_close_pack` and the number of pages laid out (the PDF's object streams are
    compressed, so its page count is taken from the layout rather than parsed back)."""
    import weasyprint

    if MANIFEST_NAME in attachments:
        raise ValueError(f"{MANIFEST_NAME} is written by the pack itself; rename the attachment")
    files = {**attachments, MANIFEST_NAME: manifest(data, attachments)}
    stamp = data.generated_at.astimezone(UTC)
    html = render_html(data, attachments)
    pdf_attachments = [
        weasyprint.Attachment(
            file_obj=io.BytesIO(blob),
            name=name,
            description=f"{data.workspace_name} close {data.month}: {name}",
            created=stamp,
            modified=stamp,
            relationship="Data" if name != MANIFEST_NAME else "Supplement",
        )
        for name, blob in sorted(files.items())
    ]
    identifier = hashlib.sha256(
        f"{data.workspace_id}\x1f{data.month}\x1f{stamp.isoformat()}".encode()
    ).hexdigest()[:32]
    with source_date_epoch(int(stamp.timestamp())):
        # What HTML.write_pdf does, keeping the laid-out document to count its pages.
        options = {
            **weasyprint.DEFAULT_OPTIONS,
            "pdf_variant": "pdf/a-3b",
            "attachments": pdf_attachments,
            "pdf_identifier": identifier.encode(),
        }
        document = weasyprint.HTML(string=html, base_url=None).render(**options)
        return document.write_pdf(**options), len(document.pages)


_EPOCH_LOCK = threading.Lock()


@contextlib.contextmanager
def source_date_epoch(ts: int) -> Iterator[None]:
    """Pin SOURCE_DATE_EPOCH while rendering: fontTools stamps each embedded font subset's `head`
    table with "now" unless it is set (reproducible-builds convention), which broke byte identity.
    """
    with _EPOCH_LOCK:
        before = os.environ.get("SOURCE_DATE_EPOCH")
        os.environ["SOURCE_DATE_EPOCH"] = str(ts)
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("SOURCE_DATE_EPOCH", None)
            else:
                os.environ["SOURCE_DATE_EPOCH"] = before
