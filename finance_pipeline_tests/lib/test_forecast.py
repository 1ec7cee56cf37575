"""Forecast (docs/metrics.md §12) and scenarios (§13): exact months computed by hand."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finance_pipeline.lib.forecast import (
    ForecastValidationError,
    MonthAggregate,
    forecast,
    history_assumptions,
    last_complete_month,
    run_scenario,
)
from finance_pipeline.lib.money import round_half_away

C = 10_000  # micros per cent
AS_OF = date(2026, 2, 28)
SEED_ASSUMPTIONS = {"mrr_growth_pct": 6, "monthly_logo_churn_pct": 2, "gross_margin_pct": 85}
# v1 API metrics example: MRR 2,150,000 cents, cash 5,000,000, recurring expenses 2,670,000.
START = {
    "start_mrr_micros": 2_150_000 * C,
    "cash_on_hand_cents": 5_000_000,
    "monthly_recurring_expenses_micros": 2_670_000 * C,
}


def run(request: dict, **overrides: object) -> dict:
    kwargs = {**START, **overrides}
    return forecast(request, today=AS_OF, **kwargs)  # type: ignore[arg-type]


def D(text: str) -> Decimal:
    return Decimal(text)


def test_seed_assumptions_first_months_by_hand() -> None:
    fc = run(
        {
            "as_of": "2026-02-28",
            "horizon_months": 3,
            "assumptions": SEED_ASSUMPTIONS,
            "variants": {"base": {}},
        }
    )
    # mrr_t = mrr_{t-1} x 1.04; cash_t = cash_{t-1} + 0.85 mrr_t - 2,670,000 (cents):
    # t1: mrr 2,236,000; cash 5,000,000 + 1,900,600 - 2,670,000 = 4,230,600; burn 769,400
    # t2: mrr 2,325,440; cash 4,230,600 + 1,976,624 - 2,670,000 = 3,537,224; burn 693,376
    # t3: mrr 2,418,457.6; cash 3,537,224 + 2,055,688.96 - 2,670,000 = 2,922,912.96;
    #     burn 614,311.04
    assert fc["series"] == {
        "months": ["2026-03", "2026-04", "2026-05"],
        "base": {
            "mrr_cents": [2_236_000, 2_325_440, 2_418_458],
            "cash_cents": [4_230_600, 3_537_224, 2_922_913],
            "runway_months": [D("5.50"), D("5.10"), D("4.76")],
        },
    }
    assert fc["assumptions"] == {
        "mrr_growth_pct": D("6"),
        "monthly_logo_churn_pct": D("2"),
        "gross_margin_pct": D("85"),
    }
    assert fc["assumption_sources"] == dict.fromkeys(SEED_ASSUMPTIONS, "request")
    assert fc["start"] == {
        "mrr_micros": 21_500_000_000,
        "cash_on_hand_cents": 5_000_000,
        "monthly_recurring_expenses_micros": 26_700_000_000,
    }
    assert (fc["as_of"], fc["horizon_months"]) == ("2026-02-28", 3)


def test_twelve_months_match_an_independent_fraction_loop() -> None:
    fc = run({"horizon_months": 12, "assumptions": SEED_ASSUMPTIONS})
    mrr, cash = Fraction(2_150_000), Fraction(5_000_000)
    expected_mrr, expected_cash = [], []
    for _ in range(12):
        mrr = mrr * Fraction(104, 100)
        cash = cash + mrr * Fraction(85, 100) - 2_670_000
        expected_mrr.append(round_half_away(mrr))
        expected_cash.append(round_half_away(cash))
    assert fc["series"]["base"]["mrr_cents"] == expected_mrr
    assert fc["series"]["base"]["cash_cents"] == expected_cash
    assert fc["series"]["months"][-1] == "2027-02"


def test_default_variants_best_and_worst() -> None:
    fc = run({"horizon_months": 1, "assumptions": SEED_ASSUMPTIONS})
    assert list(fc["variants"]) == ["base", "best", "worst"]
    assert fc["variants"]["best"] == {
        "mrr_growth_pct": D("9"),
        "monthly_logo_churn_pct": D("1.5"),
        "gross_margin_pct": D("90"),
    }
    assert fc["variants"]["worst"] == {
        "mrr_growth_pct": D("3"),
        "monthly_logo_churn_pct": D("3"),
        "gross_margin_pct": D("80"),
    }
    # best: 2,150,000 x 1.075 = 2,311,250; worst: 2,150,000 x 1.00 = 2,150,000
    assert fc["series"]["best"]["mrr_cents"] == [2_311_250]
    assert fc["series"]["worst"]["mrr_cents"] == [2_150_000]


def test_default_variants_negative_growth_and_clamping() -> None:
    fc = run(
        {
            "horizon_months": 1,
            "assumptions": {
                "mrr_growth_pct": -2,
                "monthly_logo_churn_pct": 80,
                "gross_margin_pct": 98,
            },
        }
    )
    assert fc["variants"]["best"]["mrr_growth_pct"] == D("-1")  # best is never worse than base
    assert fc["variants"]["worst"]["mrr_growth_pct"] == D("-3")
    assert fc["variants"]["best"]["gross_margin_pct"] == D("100")  # 103 clamped
    assert fc["variants"]["worst"]["monthly_logo_churn_pct"] == D("100")  # 120 clamped


def test_given_variants_override_and_empty_means_base_only() -> None:
    fc = run(
        {
            "horizon_months": 2,
            "assumptions": SEED_ASSUMPTIONS,
            "variants": {
                "base": {},
                "best": {"mrr_growth_pct": 9, "monthly_logo_churn_pct": 1},
                "worst": {"mrr_growth_pct": 2, "monthly_logo_churn_pct": 4},
            },
        }
    )
    assert fc["variants"]["best"] == {
        "mrr_growth_pct": D("9"),
        "monthly_logo_churn_pct": D("1"),
        "gross_margin_pct": D("85"),
    }
    assert fc["series"]["best"]["mrr_cents"] == [2_322_000, 2_507_760]  # x 1.08
    assert fc["series"]["worst"]["mrr_cents"] == [2_107_000, 2_064_860]  # x 0.98
    only = run({"horizon_months": 1, "assumptions": SEED_ASSUMPTIONS, "variants": {}})
    assert set(only["series"]) == {"months", "base"}


def test_runway_null_without_burn() -> None:
    fc = run(
        {"horizon_months": 2, "assumptions": SEED_ASSUMPTIONS}, monthly_recurring_expenses_micros=0
    )
    assert fc["series"]["base"]["runway_months"] == [None, None]


def test_months_roll_over_year() -> None:
    fc = run({"as_of": "2026-11-15", "horizon_months": 3, "assumptions": SEED_ASSUMPTIONS})
    assert fc["series"]["months"] == ["2026-12", "2027-01", "2027-02"]


def months_history() -> list[MonthAggregate]:
    return [
        MonthAggregate("2025-11", 100, 50, 10, 5, 100, 90),  # outside the window
        MonthAggregate("2025-12", 100, 6, 50, 1, 100, 15),  # g 6, c 2, gm 85
        MonthAggregate("2026-01", 200, 10, 40, 2, 0, 0),  # g 5, c 5, gm undefined
        MonthAggregate("2026-02", 0, 0, 0, 0, 300, 30),  # g, c undefined, gm 90
        MonthAggregate("2026-03", 100, 100, 1, 1, 1, 1),  # not complete
    ]


def test_history_assumptions_trailing_three_complete_months() -> None:
    assert last_complete_month(date(2026, 2, 28)) == "2026-02"
    assert last_complete_month(date(2026, 2, 27)) == "2026-01"
    assert history_assumptions(months_history(), AS_OF) == {
        "mrr_growth_pct": Fraction(11, 2),
        "monthly_logo_churn_pct": Fraction(7, 2),
        "gross_margin_pct": Fraction(175, 2),
    }
    # as_of mid-February: the window is Nov, Dec, Jan.
    mid = history_assumptions(months_history(), date(2026, 2, 15))
    assert mid["mrr_growth_pct"] == Fraction(61, 3)  # (50 + 6 + 5) / 3
    assert history_assumptions([], AS_OF) == dict.fromkeys(SEED_ASSUMPTIONS)


def test_omitted_assumptions_come_from_history_rounded_to_4_places() -> None:
    history = {
        "mrr_growth_pct": Fraction(1, 3),
        "monthly_logo_churn_pct": Fraction(7, 2),
        "gross_margin_pct": None,
    }
    fc = run({"horizon_months": 1, "assumptions": {"gross_margin_pct": 85}}, history=history)
    assert fc["assumptions"] == {
        "mrr_growth_pct": D("0.3333"),
        "monthly_logo_churn_pct": D("3.5"),
        "gross_margin_pct": D("85"),
    }
    assert fc["assumption_sources"] == {
        "mrr_growth_pct": "history",
        "monthly_logo_churn_pct": "history",
        "gross_margin_pct": "request",
    }
    # 2,150,000 x (1 + 0.003333 - 0.035) = 2,150,000 x 0.968333 = 2,081,915.95 -> 2,081,916
    assert fc["series"]["base"]["mrr_cents"] == [2_081_916]
    with pytest.raises(ForecastValidationError) as info:
        run({"horizon_months": 1, "assumptions": {"mrr_growth_pct": 1}}, history=history)
    assert (info.value.code, info.value.param) == (
        "missing_assumption",
        "assumptions.gross_margin_pct",
    )


@pytest.mark.parametrize(
    ("request_body", "code", "param"),
    [
        ({}, "missing_field", "horizon_months"),
        ({"horizon_months": None}, "missing_field", "horizon_months"),
        ({"horizon_months": 0}, "out_of_range", "horizon_months"),
        ({"horizon_months": 61}, "out_of_range", "horizon_months"),
        ({"horizon_months": "12"}, "invalid_type", "horizon_months"),
        ({"horizon_months": True}, "invalid_type", "horizon_months"),
        ({"horizon_months": 12.0}, "invalid_type", "horizon_months"),
        ({"horizon_months": 1, "as_of": "2026/02/28"}, "invalid_date", "as_of"),
        (
            {"horizon_months": 1, "assumptions": {"mrr_growth_pct": 1001}},
            "out_of_range",
            "assumptions.mrr_growth_pct",
        ),
        (
            {"horizon_months": 1, "assumptions": {"monthly_logo_churn_pct": -0.01}},
            "out_of_range",
            "assumptions.monthly_logo_churn_pct",
        ),
        (
            {"horizon_months": 1, "assumptions": {"gross_margin_pct": 100.5}},
            "out_of_range",
            "assumptions.gross_margin_pct",
        ),
        (
            {"horizon_months": 1, "assumptions": {"gross_margin_pct": "85"}},
            "invalid_type",
            "assumptions.gross_margin_pct",
        ),
        ({"horizon_months": 1, "assumptions": {"price": 1}}, "unknown_field", "assumptions.price"),
        ({"horizon_months": 1, "assumptions": [1]}, "invalid_type", "assumptions"),
        (
            {"horizon_months": 1, "variants": {"best": {"monthly_logo_churn_pct": 101}}},
            "out_of_range",
            "variants.best.monthly_logo_churn_pct",
        ),
        ({"horizon_months": 1, "variants": {"bad name": {}}}, "invalid_value", "variants"),
    ],
)
def test_validation_errors(request_body: dict, code: str, param: str) -> None:
    with pytest.raises(ForecastValidationError) as info:
        run(request_body)
    assert (info.value.code, info.value.param) == (code, param)


def test_horizon_bounds_inclusive_and_missing_cash() -> None:
    assert (
        len(run({"horizon_months": 60, "assumptions": SEED_ASSUMPTIONS})["series"]["months"]) == 60
    )
    assert len(run({"horizon_months": 1, "assumptions": SEED_ASSUMPTIONS})["series"]["months"]) == 1
    with pytest.raises(ForecastValidationError) as info:
        run({"horizon_months": 1, "assumptions": SEED_ASSUMPTIONS}, cash_on_hand_cents=None)
    assert info.value.code == "missing_cash"


# --- scenarios -----------------------------------------------------------------------------------


def baseline(horizon: int = 3) -> dict:
    fc = run({"horizon_months": horizon, "assumptions": SEED_ASSUMPTIONS})
    fc["id"] = "fc_1"
    return fc


def test_price_change_impact_by_hand() -> None:
    sc = run_scenario(baseline(), {"type": "price_change", "pct": 0.10})
    # Extra cash = 0.10 x 0.85 x (2,236,000 + 2,325,440 + 2,418,457.6) = 593,291.296
    # Final MRR = 2,418,457.6 x 1.1 = 2,660,303.36
    assert sc["impact"] == {
        "final_cash_delta_cents": 593_291,
        "final_mrr_cents": 2_660_303,
        "baseline_final_cash_cents": 2_922_913,
        "baseline_final_mrr_cents": 2_418_458,
    }
    assert sc["series"]["months"] == ["2026-03", "2026-04", "2026-05"]
    assert sc["series"]["scenario"]["mrr_cents"] == [2_459_600, 2_557_984, 2_660_303]
    assert sc["delta"] == {"type": "price_change", "pct": 0.10}
    assert sc["baseline_forecast_id"] == "fc_1"


def test_churn_change_impact_by_hand() -> None:
    sc = run_scenario(baseline(), {"type": "churn_change", "delta_pp": 1.5})
    # factor 1.025: 2,203,750; 2,258,843.75; 2,315,314.84375. Cash delta = 0.85 x
    # (6,777,908.59375 - 6,979,897.6) = -171,690.655...
    assert sc["impact"]["final_cash_delta_cents"] == -171_691
    assert sc["impact"]["final_mrr_cents"] == 2_315_315
    assert sc["series"]["scenario"]["mrr_cents"] == [2_203_750, 2_258_844, 2_315_315]


def test_hire_impact() -> None:
    sc = run_scenario(
        baseline(), {"type": "hire", "monthly_cost_cents": 1_200_000, "start_month": "2026-04"}
    )
    assert sc["impact"]["final_cash_delta_cents"] == -2_400_000
    assert sc["impact"]["final_mrr_cents"] == 2_418_458
    assert sc["series"]["scenario"]["cash_cents"] == [4_230_600, 2_337_224, 522_913]
    early = run_scenario(
        baseline(), {"type": "hire", "monthly_cost_cents": 100, "start_month": "2025-01"}
    )
    assert early["impact"]["final_cash_delta_cents"] == -300
    default = run_scenario(baseline(), {"type": "hire", "monthly_cost_cents": 100})
    assert default["delta"]["start_month"] == "2026-03"
    assert default["impact"]["final_cash_delta_cents"] == -300


def test_scenario_survives_json_round_trip_of_baseline() -> None:
    fc = run({"horizon_months": 3, "assumptions": SEED_ASSUMPTIONS}, history=None)
    stored = json.loads(json.dumps(fc, default=float))
    as_strings = json.loads(json.dumps(fc, default=str))
    delta = {"type": "price_change", "pct": 0.1}
    assert run_scenario(stored, delta)["impact"] == run_scenario(fc, delta)["impact"]
    assert run_scenario(as_strings, delta)["impact"] == run_scenario(fc, delta)["impact"]


@pytest.mark.parametrize(
    ("delta", "code", "param"),
    [
        ({}, "missing_field", "delta.type"),
        ({"type": "raise_prices"}, "invalid_value", "delta.type"),
        ({"type": "price_change"}, "missing_field", "delta.pct"),
        ({"type": "price_change", "pct": "0.1"}, "invalid_type", "delta.pct"),
        ({"type": "price_change", "pct": -1.5}, "out_of_range", "delta.pct"),
        ({"type": "churn_change", "delta_pp": -3}, "out_of_range", "delta.delta_pp"),
        ({"type": "hire", "monthly_cost_cents": 0}, "out_of_range", "delta.monthly_cost_cents"),
        ({"type": "hire", "monthly_cost_cents": 10.5}, "invalid_type", "delta.monthly_cost_cents"),
        (
            {"type": "hire", "monthly_cost_cents": 1, "start_month": "2026-4"},
            "invalid_value",
            "delta.start_month",
        ),
        (
            {"type": "hire", "monthly_cost_cents": 1, "start_month": "2026-06"},
            "out_of_range",
            "delta.start_month",
        ),
    ],
)
def test_scenario_validation(delta: dict, code: str, param: str) -> None:
    with pytest.raises(ForecastValidationError) as info:
        run_scenario(baseline(), delta)
    assert (info.value.code, info.value.param) == (code, param)


@settings(max_examples=40, deadline=None)
@given(
    cost=st.integers(min_value=1, max_value=10**9),
    start=st.integers(min_value=1, max_value=12),
)
def test_hire_costs_exactly_cost_times_months(cost: int, start: int) -> None:
    sc = run_scenario(
        baseline(12),
        {
            "type": "hire",
            "monthly_cost_cents": cost,
            "start_month": baseline(12)["series"]["months"][start - 1],
        },
    )
    assert sc["impact"]["final_cash_delta_cents"] == -cost * (12 - start + 1)


def test_zero_deltas_change_nothing() -> None:
    base = baseline()
    for delta in ({"type": "price_change", "pct": 0}, {"type": "churn_change", "delta_pp": 0}):
        sc = run_scenario(base, delta)
        assert sc["impact"]["final_cash_delta_cents"] == 0
        assert sc["series"]["scenario"] == base["series"]["base"]
