"""Every landing-file kind, fuzzed through the pure validation: a file is either accepted exactly
(each record once) or rejected with an error that names the line (and the column, when one cell
is wrong), in a report that names the file. Never an exception."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from finance_pipeline.lib.ingest_validation import (
    KINDS,
    MAX_ROWS,
    error_report,
    parse_csv,
    parse_landing_file,
)
from finance_pipeline_tests.fuzz.badfiles import BadFile, bad_files
from finance_pipeline_tests.fuzz.cases import fuzz_settings, tally

CODES = {
    "missing_field",
    "invalid_value",
    "invalid_type",
    "duplicate",
    "unknown_field",
    "conflicting_fields",
    "too_many_rows",
    "invalid_file",
    "unknown_kind",
}


def check_verdict(bad: BadFile, result, filename: str) -> str:  # type: ignore[no-untyped-def]
    """Assert the validation's verdict matches the file's expectation; the outcome's label."""
    report = error_report(result, filename)
    if bad.accepted:
        assert result.errors == [], (bad.mutation, result.errors)
        assert result.kind == bad.kind
        assert result.records == bad.records
        assert result.duplicate_count == bad.duplicates
        assert report.startswith(f"{filename}: accepted ({bad.kind})")
        return "accepted"
    assert result.errors, (bad.mutation, bad.data[:300])
    assert not result.ok
    for err in result.errors:
        assert err.code in CODES and err.message and err.line >= 1
    if bad.line is not None:
        at_line = [e for e in result.errors if e.line == bad.line]
        assert at_line, (bad.mutation, bad.line, result.errors)
        if bad.column is not None:
            assert any(e.field == bad.column for e in at_line), (bad.mutation, at_line)
        if bad.code is not None:
            assert any(e.code == bad.code for e in at_line), (bad.mutation, at_line)
    elif bad.code is not None:
        assert any(e.code == bad.code for e in result.errors), (bad.mutation, result.errors)
    assert report.startswith(f"{filename}: REJECTED")
    first = min(result.errors, key=lambda e: e.line)
    assert f"line {first.line}" in report
    if first.field:
        assert f"field {first.field}" in report
    return f"rejected {first.code}"


@pytest.mark.parametrize("kind", KINDS)
@fuzz_settings(150)
@given(data=st.data())
def test_every_landing_file_is_accepted_exactly_or_rejected_clearly(
    kind: str, data: st.DataObject
) -> None:
    bad = data.draw(bad_files(kind), label="file")
    filename = f"{kind}_fuzz.csv"
    # The landing folder's path: the kind from the file name, then the whole-file validation.
    result = parse_landing_file(filename, bad.data, max_rows=bad.max_rows or MAX_ROWS)
    outcome = check_verdict(bad, result, filename)
    tally(f"csv validation: {kind}", outcome)
    # The kind named by the caller (the API's path) gives the same verdict on decodable text.
    direct = parse_csv(kind, bad.data, max_rows=bad.max_rows or MAX_ROWS)
    assert direct.records == result.records and direct.errors == result.errors


@fuzz_settings(150)
@given(data=st.binary(max_size=400), name=st.sampled_from(["costs_x.csv", "x.csv", "fx_rates.csv"]))
def test_arbitrary_bytes_never_crash_the_validation(data: bytes, name: str) -> None:
    result = parse_landing_file(name, data)
    assert result.ok or all(e.code in CODES and e.message for e in result.errors)
    assert error_report(result, name).startswith(name)
    tally("csv validation: arbitrary bytes", "accepted" if result.ok else "rejected")


@pytest.mark.parametrize("code", ["XYZ", "uss", "EUT", "XTS", "XAU"])
def test_a_three_letter_code_outside_iso_4217_is_rejected(code: str) -> None:
    text = f"name,amount,currency,category,date\nVercel,20.00,{code},TOOLS,2024-01-15\n"
    [err] = parse_csv("costs", text).errors
    assert (err.line, err.field, err.code) == (2, "currency", "invalid_value")
    assert err.message == (
        f"currency '{code}' is not an ISO 4217 currency code; use one like USD, EUR or JPY"
    )


@pytest.mark.parametrize("code", ["usd", "EUR", "jpy", "HRK", "DEM", "XOF", "zwg"])
def test_iso_4217_codes_current_and_withdrawn_since_2000_are_accepted(code: str) -> None:
    text = f"name,amount,currency,category,date\nVercel,20,{code},TOOLS,2024-01-15\n"
    assert parse_csv("costs", text).ok
