"""Decimal amounts leave the API as exact JSON numbers, digit for digit."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from pydantic import BaseModel

from finance_pipeline.api.exact import ExactNumber, dumps_exact, exact_json
from finance_pipeline.lib.money import micros_to_decimal


class _Mrr(BaseModel):
    current_mrr: ExactNumber
    history: list[ExactNumber]
    note: str


def test_decimals_are_exact_numbers() -> None:
    mrr = _Mrr(
        current_mrr=micros_to_decimal(45_230_000_000),
        history=[Decimal("0.10"), Decimal("-12.30"), Decimal("1E+3")],
        note='not "45230.00" nor 45230.0',
    )
    body = exact_json(mrr).body.decode()
    assert body == (
        '{"current_mrr":45230.00,"history":[0.10,-12.30,1E+3],'
        '"note":"not \\"45230.00\\" nor 45230.0"}'
    )
    parsed = json.loads(body, parse_float=Decimal)
    assert parsed["current_mrr"] == Decimal("45230.00")
    schema = _Mrr.model_json_schema(mode="serialization")["properties"]["current_mrr"]
    assert schema["type"] == "number"


def test_non_finite_decimals_are_refused() -> None:
    with pytest.raises(ValueError):
        dumps_exact({"x": Decimal("NaN")})
