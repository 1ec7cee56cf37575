"""Monthly MRR / cash / runway forecast (docs/metrics.md §12) and what-if scenarios (§13), v1 API.

All arithmetic is exact (`Fraction` over micro-units); values are rounded only when written out
(cents half away from zero, runway to 2 decimals). Percent assumptions are in percent units
(`mrr_growth_pct: 6` is 6 %); the scenario `price_change.pct` is a fraction (0.10 is +10 %), as in
the v1 API.

Decisions:
- Assumptions taken from history are rounded to 4 decimals of a percent *before* use, so the merged
  assumptions stored with a forecast reproduce its series exactly (scenarios re-run them).
- Default variants (when `variants` is absent or null): best = g x 1.5, c x 0.75, gm + 5pp and
  worst = g x 0.5, c x 1.5, gm - 5pp. For a negative g the factors swap, so that "best" is never
  worse than base. Derived values are clamped to the valid ranges. `variants: {}` means base only.
- `runway_t = cash_t / burn_t` is reported as is when burn is positive, so it turns negative once
  the projected cash is negative.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from finance_pipeline.lib.money import micros_to_cents, round_half_away

GROWTH, CHURN, MARGIN = "mrr_growth_pct", "monthly_logo_churn_pct", "gross_margin_pct"
ASSUMPTION_KEYS = (GROWTH, CHURN, MARGIN)
RANGES: dict[str, tuple[int, int]] = {GROWTH: (-100, 1000), CHURN: (0, 100), MARGIN: (-100, 100)}
MAX_HORIZON_MONTHS = 60
MAX_VARIANTS = 10
HISTORY_DECIMALS = 4
_MONTH_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_VARIANT_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


class ForecastValidationError(ValueError):
    """An invalid forecast or scenario request; maps to 422 with the v1 API error envelope."""

    def __init__(self, code: str, param: str | None, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.param = param
        self.message = message


def to_fraction(value: Any, param: str) -> Fraction:
    """An exact Fraction from a JSON number (floats via their shortest decimal repr)."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | Fraction):
        raise ForecastValidationError("invalid_type", param, f"{param} must be a number.")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ForecastValidationError("invalid_type", param, f"{param} must be finite.")
        return Fraction(Decimal(repr(value)))
    if isinstance(value, Decimal) and not value.is_finite():
        raise ForecastValidationError("invalid_type", param, f"{param} must be finite.")
    return Fraction(value)


def to_decimal(value: Fraction | int, places: int = 10) -> Decimal:
    """A Fraction as an exact Decimal when it is a finite decimal, else rounded to `places`."""
    fr = Fraction(value)
    d = fr.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    if d == 1:
        digits = 0
        while (fr * 10**digits).denominator != 1:
            digits += 1
        return Decimal(int(fr * 10**digits)).scaleb(-digits)
    return Decimal(round_half_away(fr * 10**places)).scaleb(-places)


def _runway_out(cash: Fraction, burn: Fraction) -> Decimal | None:
    if burn <= 0:
        return None
    return Decimal(round_half_away(cash / burn * 100)).scaleb(-2)


def month_label(as_of: date, offset: int) -> str:
    """The calendar month `offset` months after as_of's month, as "YYYY-MM"."""
    idx = as_of.year * 12 + as_of.month - 1 + offset
    return f"{idx // 12:04d}-{idx % 12 + 1:02d}"


# --- history -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MonthAggregate:
    """Monthly history for default assumptions (§12): MRR movements, logo churn and gross margin."""

    month: str
    start_mrr_micros: int
    new_expansion_reactivation_micros: int
    customers_at_start: int
    customers_churned: int
    recognized_revenue_micros: int
    cogs_micros: int


def last_complete_month(as_of: date) -> str:
    """The latest calendar month that has fully ended by the end of local day as_of."""
    return month_label(as_of, 0 if (as_of + timedelta(days=1)).day == 1 else -1)


def history_assumptions(
    months: Iterable[MonthAggregate], as_of: date, window: int = 3
) -> dict[str, Fraction | None]:
    """Exact means (in percent) over the trailing `window` complete months; None without data.

    g = (new + expansion + reactivation) / start MRR, c = churned / customers at start,
    gm = (recognized revenue - COGS) / recognized revenue; a month with a zero denominator is
    left out of that mean.
    """
    last = last_complete_month(as_of)
    wanted = {month_label(date(int(last[:4]), int(last[5:]), 1), -k) for k in range(window)}
    values: dict[str, list[Fraction]] = {k: [] for k in ASSUMPTION_KEYS}
    for m in months:
        if m.month not in wanted:
            continue
        if m.start_mrr_micros > 0:
            values[GROWTH].append(
                Fraction(100 * m.new_expansion_reactivation_micros, m.start_mrr_micros)
            )
        if m.customers_at_start > 0:
            values[CHURN].append(Fraction(100 * m.customers_churned, m.customers_at_start))
        if m.recognized_revenue_micros > 0:
            values[MARGIN].append(
                Fraction(
                    100 * (m.recognized_revenue_micros - m.cogs_micros), m.recognized_revenue_micros
                )
            )
    return {k: (sum(v, Fraction(0)) / len(v) if v else None) for k, v in values.items()}


# --- request validation --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ForecastRequest:
    """A validated forecast request: only the assumptions and variants the caller gave."""

    as_of: date
    horizon_months: int
    name: str | None = None
    assumptions: dict[str, Fraction] = field(default_factory=dict)
    variants: dict[str, dict[str, Fraction]] | None = None


def _check_range(key: str, value: Fraction, param: str) -> Fraction:
    lo, hi = RANGES[key]
    if not lo <= value <= hi:
        raise ForecastValidationError(
            "out_of_range", param, f"{param} must be between {lo} and {hi} (percent)."
        )
    return value


def _parse_assumptions(raw: Any, param: str) -> dict[str, Fraction]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ForecastValidationError("invalid_type", param, f"{param} must be an object.")
    out: dict[str, Fraction] = {}
    for key, value in raw.items():
        p = f"{param}.{key}"
        if key not in ASSUMPTION_KEYS:
            raise ForecastValidationError(
                "unknown_field", p, f"{p} is not an assumption ({', '.join(ASSUMPTION_KEYS)})."
            )
        if value is not None:
            out[key] = _check_range(key, to_fraction(value, p), p)
    return out


def parse_date(value: Any, param: str) -> date:
    """A YYYY-MM-DD string (or date) as a date; raises ForecastValidationError invalid_date."""
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _DATE_RE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ForecastValidationError("invalid_date", param, f"{param} must be a YYYY-MM-DD date.")


def validate_forecast_request(request: Mapping[str, Any], today: date) -> ForecastRequest:
    """Check a v1 API POST /forecasts body (horizon 1..60, percent ranges, variant names)."""
    if not isinstance(request, Mapping):
        raise ForecastValidationError("invalid_type", None, "The request body must be an object.")
    as_of = today if request.get("as_of") is None else parse_date(request["as_of"], "as_of")
    horizon = request.get("horizon_months")
    if horizon is None:
        raise ForecastValidationError(
            "missing_field", "horizon_months", "horizon_months is required."
        )
    if isinstance(horizon, bool) or not isinstance(horizon, int):
        raise ForecastValidationError(
            "invalid_type", "horizon_months", "horizon_months must be an integer."
        )
    if not 1 <= horizon <= MAX_HORIZON_MONTHS:
        raise ForecastValidationError(
            "out_of_range",
            "horizon_months",
            f"horizon_months must be between 1 and {MAX_HORIZON_MONTHS}.",
        )
    name = request.get("name")
    if name is not None and not isinstance(name, str):
        raise ForecastValidationError("invalid_type", "name", "name must be a string.")
    assumptions = _parse_assumptions(request.get("assumptions"), "assumptions")
    raw_variants = request.get("variants")
    variants: dict[str, dict[str, Fraction]] | None = None
    if raw_variants is not None:
        if not isinstance(raw_variants, Mapping):
            raise ForecastValidationError("invalid_type", "variants", "variants must be an object.")
        if len(raw_variants) > MAX_VARIANTS:
            raise ForecastValidationError(
                "out_of_range", "variants", f"At most {MAX_VARIANTS} variants are allowed."
            )
        variants = {}
        for vname, overrides in raw_variants.items():
            if not isinstance(vname, str) or not _VARIANT_RE.match(vname) or vname == "months":
                raise ForecastValidationError(
                    "invalid_value", "variants", f"Invalid variant name {vname!r}."
                )
            variants[vname] = _parse_assumptions(overrides, f"variants.{vname}")
        if not variants:
            variants = {"base": {}}
    return ForecastRequest(as_of, horizon, name, assumptions, variants)


# --- projection ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Projection:
    """Exact month-by-month values of one variant (micros; runway in months or None)."""

    mrr: list[Fraction]
    cash: list[Fraction]
    burn: list[Fraction]

    def series(self) -> dict[str, list[Any]]:
        """The v1 API per-variant series: mrr_cents[], cash_cents[], runway_months[]."""
        return {
            "mrr_cents": [micros_to_cents(v) for v in self.mrr],
            "cash_cents": [micros_to_cents(v) for v in self.cash],
            "runway_months": [_runway_out(c, b) for c, b in zip(self.cash, self.burn, strict=True)],
        }


def project(
    start_mrr_micros: int | Fraction,
    cash_micros: int | Fraction,
    monthly_expenses_micros: Sequence[int | Fraction],
    assumptions: Mapping[str, Fraction],
    mrr_multiplier: Fraction = Fraction(1),
) -> Projection:
    """Run §12 month by month: mrr_t = mrr_{t-1}(1+g-c), cash_t = cash_{t-1} + mrr_t gm - E_t.

    `mrr_multiplier` scales MRR from the first forecast month (the §13 price change).
    """
    g = Fraction(assumptions[GROWTH]) / 100
    c = Fraction(assumptions[CHURN]) / 100
    gm = Fraction(assumptions[MARGIN]) / 100
    mrr = Fraction(start_mrr_micros) * mrr_multiplier
    cash = Fraction(cash_micros)
    out = Projection([], [], [])
    for expenses in monthly_expenses_micros:
        mrr = mrr * (1 + g - c)
        cash = cash + mrr * gm - expenses
        out.mrr.append(mrr)
        out.cash.append(cash)
        out.burn.append(Fraction(expenses) - mrr * gm)
    return out


def _default_variants(base: Mapping[str, Fraction]) -> dict[str, dict[str, Fraction]]:
    g, c, gm = base[GROWTH], base[CHURN], base[MARGIN]
    up, down = (Fraction(3, 2), Fraction(1, 2)) if g >= 0 else (Fraction(1, 2), Fraction(3, 2))

    def clamp(key: str, v: Fraction) -> Fraction:
        lo, hi = RANGES[key]
        return max(Fraction(lo), min(Fraction(hi), v))

    return {
        "base": {},
        "best": {
            GROWTH: clamp(GROWTH, g * up),
            CHURN: clamp(CHURN, c * Fraction(3, 4)),
            MARGIN: clamp(MARGIN, gm + 5),
        },
        "worst": {
            GROWTH: clamp(GROWTH, g * down),
            CHURN: clamp(CHURN, c * Fraction(3, 2)),
            MARGIN: clamp(MARGIN, gm - 5),
        },
    }


def _decimals(values: Mapping[str, Fraction]) -> dict[str, Decimal]:
    return {k: to_decimal(values[k]) for k in ASSUMPTION_KEYS if k in values}


def forecast(
    request: Mapping[str, Any] | ForecastRequest,
    *,
    start_mrr_micros: int,
    cash_on_hand_cents: int | None,
    monthly_recurring_expenses_micros: int,
    history: Mapping[str, Fraction | None] | None = None,
    today: date | None = None,
) -> dict[str, Any]:
    """Validate and run a forecast; returns merged assumptions, resolved variants and the series.

    Start values (§12) are MRR(as_of) and the recurring expenses of the 30 days ending as_of
    (micros, computed by the caller for the request's as_of) and the workspace's cash (cents).
    `history` is history_assumptions(...) for omitted assumptions. The result also keeps `start`
    so that run_scenario can re-run the base variant exactly.
    """
    req = (
        request
        if isinstance(request, ForecastRequest)
        else validate_forecast_request(request, today or date.today())
    )
    if cash_on_hand_cents is None:
        raise ForecastValidationError(
            "missing_cash",
            "cash_on_hand_cents",
            "Set cash_on_hand_cents on the workspace before creating a forecast.",
        )
    merged: dict[str, Fraction] = {}
    sources: dict[str, str] = {}
    for key in ASSUMPTION_KEYS:
        if key in req.assumptions:
            merged[key], sources[key] = req.assumptions[key], "request"
            continue
        hist = (history or {}).get(key)
        if hist is None:
            raise ForecastValidationError(
                "missing_assumption",
                f"assumptions.{key}",
                f"assumptions.{key} is required: there is not enough history to derive it.",
            )
        rounded = Fraction(
            round_half_away(Fraction(hist) * 10**HISTORY_DECIMALS), 10**HISTORY_DECIMALS
        )
        merged[key] = _check_range(key, rounded, f"assumptions.{key}")
        sources[key] = "history"
    overrides = _default_variants(merged) if req.variants is None else req.variants
    resolved = {name: {**merged, **o} for name, o in overrides.items()}
    horizon = req.horizon_months
    expenses = [Fraction(monthly_recurring_expenses_micros)] * horizon
    cash_micros = int(cash_on_hand_cents) * 10_000
    series: dict[str, Any] = {"months": [month_label(req.as_of, t) for t in range(1, horizon + 1)]}
    for name, assumptions in resolved.items():
        series[name] = project(start_mrr_micros, cash_micros, expenses, assumptions).series()
    return {
        "name": req.name,
        "as_of": req.as_of.isoformat(),
        "horizon_months": horizon,
        "assumptions": _decimals(merged),
        "assumption_sources": sources,
        "variants": {name: _decimals(a) for name, a in resolved.items()},
        "start": {
            "mrr_micros": int(start_mrr_micros),
            "cash_on_hand_cents": int(cash_on_hand_cents),
            "monthly_recurring_expenses_micros": int(monthly_recurring_expenses_micros),
        },
        "series": series,
    }


# --- scenarios -----------------------------------------------------------------------------------

DELTA_TYPES = ("price_change", "churn_change", "hire")


def _require(delta: Mapping[str, Any], key: str) -> Any:
    if delta.get(key) is None:
        raise ForecastValidationError("missing_field", f"delta.{key}", f"delta.{key} is required.")
    return delta[key]


def _stored_fraction(value: Any, param: str) -> Fraction:
    # A stored forecast may have gone through JSON as a number or a decimal string.
    if isinstance(value, str):
        try:
            return Fraction(Decimal(value))
        except ArithmeticError as exc:
            raise ForecastValidationError(
                "invalid_type", param, f"{param} is not a number."
            ) from exc
    return to_fraction(value, param)


def run_scenario(baseline_forecast: Mapping[str, Any], delta: Mapping[str, Any]) -> dict[str, Any]:
    """Re-run the baseline's base variant with one delta (§13); returns delta, impact and series.

    impact.final_cash_delta_cents is the rounding of the exact difference of final cash values;
    impact.final_mrr_cents is the scenario's final MRR.
    """
    if not isinstance(delta, Mapping):
        raise ForecastValidationError("invalid_type", "delta", "delta must be an object.")
    kind = _require(delta, "type")
    if kind not in DELTA_TYPES:
        raise ForecastValidationError(
            "invalid_value", "delta.type", f"delta.type must be one of {', '.join(DELTA_TYPES)}."
        )
    start = baseline_forecast["start"]
    variants = baseline_forecast.get("variants") or {}
    raw_base = variants.get("base") or baseline_forecast["assumptions"]
    base = {k: _stored_fraction(raw_base[k], f"baseline.{k}") for k in ASSUMPTION_KEYS}
    months: list[str] = list(baseline_forecast["series"]["months"])
    expenses = [Fraction(start["monthly_recurring_expenses_micros"])] * len(months)
    cash = int(start["cash_on_hand_cents"]) * 10_000
    mrr0 = start["mrr_micros"]

    scenario_assumptions = dict(base)
    scenario_expenses = list(expenses)
    multiplier = Fraction(1)
    normalized: dict[str, Any] = {"type": kind}
    if kind == "price_change":
        pct = to_fraction(_require(delta, "pct"), "delta.pct")
        if not -1 <= pct <= 10:
            raise ForecastValidationError(
                "out_of_range", "delta.pct", "delta.pct must be between -1 and 10 (0.10 is +10%)."
            )
        multiplier = 1 + pct
        normalized["pct"] = delta["pct"]
    elif kind == "churn_change":
        dpp = to_fraction(_require(delta, "delta_pp"), "delta.delta_pp")
        new_c = base[CHURN] + dpp
        if not 0 <= new_c <= 100:
            raise ForecastValidationError(
                "out_of_range",
                "delta.delta_pp",
                "delta.delta_pp must keep monthly churn between 0 and 100 percent.",
            )
        scenario_assumptions[CHURN] = new_c
        normalized["delta_pp"] = delta["delta_pp"]
    else:
        cost = _require(delta, "monthly_cost_cents")
        if isinstance(cost, bool) or not isinstance(cost, int):
            raise ForecastValidationError(
                "invalid_type",
                "delta.monthly_cost_cents",
                "delta.monthly_cost_cents must be an integer.",
            )
        if cost <= 0:
            raise ForecastValidationError(
                "out_of_range",
                "delta.monthly_cost_cents",
                "delta.monthly_cost_cents must be positive.",
            )
        start_month = delta.get("start_month") or months[0]
        if not isinstance(start_month, str) or not _MONTH_RE.match(start_month):
            raise ForecastValidationError(
                "invalid_value", "delta.start_month", "delta.start_month must be YYYY-MM."
            )
        if start_month > months[-1]:
            raise ForecastValidationError(
                "out_of_range",
                "delta.start_month",
                f"delta.start_month is after the forecast's last month {months[-1]}.",
            )
        scenario_expenses = [
            e + cost * 10_000 if m >= start_month else e
            for e, m in zip(expenses, months, strict=True)
        ]
        normalized.update(monthly_cost_cents=cost, start_month=start_month)

    baseline = project(mrr0, cash, expenses, base)
    scenario = project(mrr0, cash, scenario_expenses, scenario_assumptions, multiplier)
    return {
        "baseline_forecast_id": baseline_forecast.get("id"),
        "delta": normalized,
        "impact": {
            "final_cash_delta_cents": micros_to_cents(scenario.cash[-1] - baseline.cash[-1]),
            "final_mrr_cents": micros_to_cents(scenario.mrr[-1]),
            "baseline_final_cash_cents": micros_to_cents(baseline.cash[-1]),
            "baseline_final_mrr_cents": micros_to_cents(baseline.mrr[-1]),
        },
        "series": {"months": months, "scenario": scenario.series()},
    }
