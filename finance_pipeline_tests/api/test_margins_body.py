"""GET /api/margins builds its customers without validating each stored row: the body must be
byte for byte the one the validating models give, and any row the fast path does not recognize
goes through the models (same body, or the same error)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finance_pipeline.api.exact import dumps_exact
from finance_pipeline.api.margins.margins import dumped_customers
from finance_pipeline.api.margins.models import Envelope, MarginsData, MarginsSummary

SUMMARY: dict[str, Any] = {
    "blendedMarginPercent": "42.50",
    "totalRevenueMicrodollars": 500_000_000,
    "totalCostMicrodollars": 287_500_000,
    "criticalCount": 1,
    "atRiskCount": 2,
    "lastSyncAt": "2026-04-05T10:00:00.000Z",
    "syncStatus": "active",
    "skippedCurrencies": {"eur": 3},
}


def _row(**over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "stripeCustomerId": "cus_abc123",
        "customerName": "Acme Corp",
        "avatarUrl": None,
        "tagValue": "acme-corp",
        "tagValues": ["acme-corp"],
        "revenueMicrodollars": 100_000_000,
        "costMicrodollars": 30_000_000,
        "marginMicrodollars": 70_000_000,
        "marginPercent": "70.00",
        "healthTier": "healthy",
        "sparkline": [
            {"period": "2026-02", "marginPercent": "65.00"},
            {"period": "2026-03", "marginPercent": None},
            {"period": "2026-04", "marginPercent": "70.00"},
            {"period": "2026-05", "marginPercent": "72.50", "projected": True},
        ],
        "projectedTierWorsening": False,
        "budgetSuggestionMicrodollars": None,
    }
    row.update(over)
    return row


def _validated(rows: list[Any]) -> str:
    data = MarginsData.model_validate({"summary": SUMMARY, "customers": rows})
    return dumps_exact(Envelope[MarginsData](data=data).model_dump(mode="python"))


def _fast(rows: list[Any]) -> str | None:
    dumped = dumped_customers(rows)
    if dumped is None:
        return None
    summary = MarginsSummary.model_validate(SUMMARY).model_dump(mode="python")
    return dumps_exact({"data": {"summary": summary, "customers": dumped}})


def test_stored_rows_give_the_validated_body() -> None:
    rows = [
        _row(),
        # No tagValues (older rows), unmatched (tag null), a negative margin, odd names.
        {k: v for k, v in _row().items() if k != "tagValues"},
        _row(
            stripeCustomerId="cus_2",
            customerName='Quote " and \\ and ünïcode \u2028',
            tagValue=None,
            tagValues=[],
            marginPercent="-12.30",
            marginMicrodollars=-1,
            sparkline=[{"period": "2026-04", "marginPercent": "0.00", "projected": False}],
            projectedTierWorsening=True,
            budgetSuggestionMicrodollars=5,
        ),
        _row(marginPercent=None, sparkline=[], extra_key="ignored"),
        _row(marginPercent="1E+3"),
    ]
    fast = _fast(rows)
    assert fast is not None
    assert fast == _validated(rows)
    assert '"marginPercent":70.00' in fast and '"projected":true' in fast
    assert '"projected":false' not in fast and "extra_key" not in fast


@pytest.mark.parametrize(
    "odd",
    [
        {"marginPercent": 70.5},  # a float: validation decides how it reads
        {"marginPercent": "70.0000000000000000000000000001"},  # fine, but checked both ways
        {"marginPercent": " 70.00"},
        {"revenueMicrodollars": "100"},
        {"projectedTierWorsening": 0},
        {"tagValues": None},
        {"sparkline": [{"period": "2026-04", "marginPercent": "1.00", "projected": 1}]},
        {"sparkline": [{"period": "2026-04"}]},
        {"customerName": 5},
    ],
)
def test_rows_of_another_shape_go_through_validation(odd: dict[str, Any]) -> None:
    rows = [_row(), _row(**odd)]
    fast = _fast(rows)
    if fast is None:
        return  # the route validates these rows with the models
    assert fast == _validated(rows)


def test_missing_fields_are_left_to_validation() -> None:
    row = _row()
    del row["healthTier"]
    assert dumped_customers([row]) is None


_percent = st.one_of(
    st.none(),
    st.decimals(
        allow_nan=False, allow_infinity=False, places=2, min_value=-(10**6), max_value=100
    ).map(str),
)
_customer = st.builds(
    _row,
    stripeCustomerId=st.text(min_size=1, max_size=12),
    customerName=st.one_of(st.none(), st.text(max_size=12)),
    tagValue=st.one_of(st.none(), st.text(max_size=8)),
    tagValues=st.lists(st.text(max_size=6), max_size=3),
    revenueMicrodollars=st.integers(-(2**62), 2**62),
    marginPercent=_percent,
    sparkline=st.lists(
        st.fixed_dictionaries(
            {"period": st.just("2026-04"), "marginPercent": _percent},
            optional={"projected": st.sampled_from([True, False, None])},
        ),
        max_size=4,
    ),
    projectedTierWorsening=st.booleans(),
    budgetSuggestionMicrodollars=st.one_of(st.none(), st.integers(0, 10**12)),
)


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(_customer, max_size=5))
def test_random_rows_give_the_validated_body(rows: list[dict[str, Any]]) -> None:
    assert _fast(rows) == _validated(rows)
