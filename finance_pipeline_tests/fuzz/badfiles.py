"""Hypothesis strategies for landing files of every kind: valid files, and files broken in one
way (a bad cell, a broken header, a wrong encoding...) with what the validation must say about it.

A `BadFile` carries its bytes and its expectation: accepted exactly (these records, every row
once), or rejected with an error at a given line (and column, when the problem is one cell).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import re
from dataclasses import dataclass

from hypothesis import strategies as st

from finance_pipeline.lib.ingest_validation import (
    CSV_HEADERS,
    REQUIRED_COLUMNS,
    FxRate,
    Record,
    record_to_row,
)
from finance_pipeline.lib.money import ISO_4217_CURRENCIES
from finance_pipeline_tests.lib.test_ingest_validation import STRATEGIES


@dataclass(frozen=True)
class BadFile:
    """A landing file and what its validation must conclude."""

    kind: str
    mutation: str
    data: bytes
    #: Accepted exactly: these records, in order (identical repeats skipped).
    records: list[Record] | None = None
    duplicates: int = 0
    #: Rejected: an error on this line (None: any line), naming this column (None: no column).
    line: int | None = None
    column: str | None = None
    code: str | None = None
    max_rows: int | None = None

    @property
    def accepted(self) -> bool:
        """Whether the file must be accepted."""
        return self.records is not None


def record_key(record: Record) -> object:
    """What makes two rows the same record (external_id; for FX the day and the pair)."""
    if isinstance(record, FxRate):
        return (record.date, record.currency, record.base)
    return record.external_id


def record_lists(kind: str, min_size: int = 1) -> st.SearchStrategy[list[Record]]:
    """Valid records of one kind with distinct keys."""
    return st.lists(STRATEGIES[kind], min_size=min_size, max_size=6, unique_by=record_key)


def render(header: list[str], rows: list[list[str]]) -> tuple[str, list[int]]:
    """CSV text (LF line ends) and the physical line each row starts on."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    starts = []
    line = 2
    for row in rows:
        before = out.tell()
        writer.writerow(row)
        starts.append(line)
        line += out.getvalue()[before:].count("\n")
    return out.getvalue(), starts


def _table(kind: str, records: list[Record]) -> tuple[list[str], list[list[str]]]:
    header = list(CSV_HEADERS[kind])
    return header, [[record_to_row(r)[c] for c in header] for r in records]


# --------------------------------------------------------------------------------------------------
# Bad cell values, by the family of the column. Every value is invalid for every column of its
# family, whatever the rest of the row holds.
# --------------------------------------------------------------------------------------------------

_PLAIN_NUMBER = re.compile(r"\s*\+?(\d+\.?\d*|\.\d+)\s*")
_CELL_TEXT = st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))

bad_numbers = st.one_of(
    # beyond int64, and beyond every column's micro-unit range (the largest bound is 10**18)
    st.integers(min_value=10**18, max_value=10**40).map(str),
    st.sampled_from([str(2**63), str(2**64), str(2**63 - 1), "9" * 30]),
    st.integers(max_value=-1).map(str),
    st.sampled_from(["-" + str(2**63 + 1), "-0.01", "-1e3"]),
    st.sampled_from(["NaN", "nan", "-inf", "Infinity", "+Inf", "sNaN", "1e5", "1E-3", "2e18"]),
    st.sampled_from(["=1+2", "=SUM(A1:A3)", "@SUM(1)", '=HYPERLINK("http://x")', "0x10"]),
    st.sampled_from(["$12.00", "12.00 USD", "€5", "1,000.00", "1 000", "12,5", "½", "١٢"]),
    st.text(_CELL_TEXT, min_size=1, max_size=12).filter(
        lambda s: bool(s.strip()) and not _PLAIN_NUMBER.fullmatch(s)
    ),
)
bad_currencies = st.one_of(
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", min_size=3, max_size=3).filter(
        lambda c: c.lower() not in ISO_4217_CURRENCIES
    ),
    st.sampled_from(["US$", "usdollar", "U.S", "123", "€", "US D", "usd1", "ÜSD", "=USD", "XTS"]),
    st.text(_CELL_TEXT, min_size=1, max_size=8).filter(
        lambda s: bool(s.strip()) and s.strip().lower() not in ISO_4217_CURRENCIES
    ),
)
bad_dates = st.one_of(
    st.sampled_from(
        [
            "2024-02-30",
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-04-31",
            "0000-01-01",
            "9999-12-31",
            "31/12/2024",
            "2024/01/15",
            "20240115",
            "2024-1-5",
            "yesterday",
            "=TODAY()",
        ]
    ),
    st.dates(max_value=dt.date(1999, 12, 31)).map(lambda d: d.isoformat()),
    st.dates(min_value=dt.date(2101, 1, 1)).map(lambda d: d.isoformat()),
)
bad_choices = st.one_of(
    st.sampled_from(["SNACKS", "infra", "recurring-ish", "0", "=CAT", "subscriptions"]),
    st.text("abcdefghijklmnopqrstuvwxyz", min_size=4, max_size=12).filter(
        lambda s: s not in {"other", "refund", "lifetime", "recurring", "one_time", "tools"}
    ),
)
bad_texts = st.one_of(
    st.builds(lambda a, c: a + c + a, st.text("abc", max_size=3), st.sampled_from("\x01\x07\x1b")),
    st.integers(min_value=2001, max_value=3000).map(lambda n: "x" * n),
)
bad_bools = st.sampled_from(["maybe", "2", "yes please", "TRUE!", "-1"])

#: column -> bad values (columns absent here are not mutated cell by cell)
CELL_FAMILIES: dict[str, st.SearchStrategy[str]] = {
    "amount": bad_numbers,
    "amount_cents": bad_numbers,
    "cost_microdollars": bad_numbers,
    "request_count": bad_numbers,
    "rate": bad_numbers,
    "currency": bad_currencies,
    "base": bad_currencies,
    "date": bad_dates,
    "occurred_at": bad_dates,
    "category": bad_choices,
    "subtype": bad_choices,
    "type": bad_choices,
    "is_recurring": bad_bools,
    "name": bad_texts,
    "model": bad_texts,
    "customer_tag": bad_texts,
    "vendor": bad_texts,
    "external_id": bad_texts,
    "note": st.integers(min_value=2001, max_value=3000).map(lambda n: "x" * n),
}
TEXT_COLUMNS = ("name", "model", "vendor", "customer_id", "source", "note", "customer_tag")
FORMULAS = st.sampled_from(
    ["=1+2", '=HYPERLINK("http://evil.example","x")', "@SUM(1+1)", "+cmd|' /C calc'!A0", "-2+3"]
)

MUTATIONS = (
    "none",
    "bad_cell",
    "bad_row_among_good",
    "utf8_bom",
    "crlf",
    "formula_text",
    "identical_repeat",
    "conflicting_repeat",
    "utf16",
    "utf16_no_bom",
    "latin1",
    "invalid_utf8",
    "nul_byte",
    "empty",
    "header_only",
    "missing_column",
    "unknown_column",
    "repeated_column",
    "extra_cell",
    "missing_cell",
    "too_many_rows",
)


@st.composite
def bad_files(draw: st.DrawFn, kind: str) -> BadFile:
    """One landing file of `kind`, valid or broken in one of MUTATIONS ways."""
    mutation = draw(st.sampled_from(MUTATIONS))
    records = draw(record_lists(kind))
    header, rows = _table(kind, records)
    if mutation in ("bad_cell", "bad_row_among_good"):
        if mutation == "bad_row_among_good":
            # many good rows, exactly one bad
            records = draw(record_lists(kind, min_size=3))
            header, rows = _table(kind, records)
        columns = [c for c in header if c in CELL_FAMILIES]
        column = draw(st.sampled_from(columns))
        index = draw(st.integers(0, len(rows) - 1))
        value = draw(CELL_FAMILIES[column])
        rows[index][header.index(column)] = value
        text, starts = render(header, rows)
        return BadFile(
            kind, f"{mutation}:{column}", text.encode(), line=starts[index], column=column
        )
    if mutation == "formula_text":
        columns = [c for c in header if c in TEXT_COLUMNS]
        if not columns:
            mutation = "none"  # FX rates hold no text: those files stay plain
        else:
            column = draw(st.sampled_from(columns))
            formula = draw(FORMULAS)
            index = draw(st.integers(0, len(rows) - 1))
            # a given id: a derived one would change with the text
            given = f"formula-row-{index}"
            rows[index][header.index(column)] = formula
            rows[index][header.index("external_id")] = given
            records = list(records)
            records[index] = dataclasses.replace(  # type: ignore[type-var]
                records[index], **{column: formula, "external_id": given}
            )
            text, _ = render(header, rows)
            return BadFile(kind, mutation, text.encode(), records=records)
    text, starts = render(header, rows)
    if mutation == "none":
        return BadFile(kind, mutation, text.encode(), records=records)
    if mutation == "utf8_bom":
        return BadFile(kind, mutation, b"\xef\xbb\xbf" + text.encode(), records=records)
    if mutation == "crlf":
        # notes keep their inner line breaks as \n (the validation normalizes them)
        return BadFile(kind, mutation, text.replace("\n", "\r\n").encode(), records=records)
    if mutation == "identical_repeat":
        index = draw(st.integers(0, len(rows) - 1))
        text, _ = render(header, [*rows, rows[index]])
        return BadFile(kind, mutation, text.encode(), records=records, duplicates=1)
    if mutation == "conflicting_repeat":
        other = draw(STRATEGIES[kind])
        first = records[0]
        if isinstance(first, FxRate):
            other = dataclasses.replace(
                other, date=first.date, currency=first.currency, base=first.base
            )  # type: ignore[arg-type]
        else:
            other = dataclasses.replace(other, external_id=first.external_id)  # type: ignore[type-var]
        if other == first:
            text, _ = render(header, [*rows, rows[0]])
            return BadFile(kind, mutation, text.encode(), records=records, duplicates=1)
        new_row = [record_to_row(other)[c] for c in header]
        text, starts = render(header, [*rows, new_row])
        column = "rate" if isinstance(first, FxRate) else "external_id"
        return BadFile(kind, mutation, text.encode(), line=starts[-1], column=column)
    if mutation == "utf16":
        codec = draw(st.sampled_from(["utf-16", "utf-16-be", "utf-16-le"]))
        bom = {"utf-16": b"", "utf-16-be": b"\xfe\xff", "utf-16-le": b"\xff\xfe"}[codec]
        return BadFile(kind, mutation, bom + text.encode(codec), line=1, code="invalid_file")
    if mutation == "utf16_no_bom":
        codec = draw(st.sampled_from(["utf-16-le", "utf-16-be", "utf-32-le"]))
        return BadFile(kind, mutation, text.encode(codec), line=1, code="invalid_file")
    if mutation == "latin1":
        # a Latin-1 file (Excel's "CSV" on Windows): "é" is one byte, invalid in UTF-8
        index = draw(st.integers(0, len(rows) - 1))
        rows[index][0] = "éx" + rows[index][0]
        text, _ = render(header, rows)
        data = text.encode("latin-1", errors="replace")
        return BadFile(kind, mutation, data, code="invalid_file")
    if mutation == "invalid_utf8":
        junk = draw(
            st.sampled_from(
                [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"]
            )
        )
        index = draw(st.integers(0, len(rows) - 1))
        lines = text.encode().split(b"\n")
        where = starts[index] - 1
        broken = b"\n".join([*lines[:where], junk + lines[where], *lines[where + 1 :]])
        return BadFile(kind, mutation, broken, line=starts[index], code="invalid_file")
    if mutation == "nul_byte":
        index = draw(st.integers(0, len(rows) - 1))
        lines = text.encode().split(b"\n")
        where = starts[index] - 1
        broken = b"\n".join([*lines[:where], b"\x00" + lines[where], *lines[where + 1 :]])
        return BadFile(kind, mutation, broken, line=starts[index], code="invalid_file")
    if mutation == "empty":
        blank = draw(st.sampled_from([b"", b"\n", b"   \n\n", b"\xef\xbb\xbf", b"\r\n,,,\r\n"]))
        return BadFile(kind, mutation, blank, line=None, code="invalid_file")
    if mutation == "header_only":
        return BadFile(kind, mutation, render(header, [])[0].encode(), records=[])
    if mutation == "missing_column":
        # a required column with no alternative in the header
        sole = [
            alts[0]
            for alts in REQUIRED_COLUMNS[kind]
            if sum(a in header for a in alts) == 1 and alts[0] in header
        ]
        column = draw(st.sampled_from(sole))
        at = header.index(column)
        cut_header = header[:at] + header[at + 1 :]
        cut_rows = [r[:at] + r[at + 1 :] for r in rows]
        text, _ = render(cut_header, cut_rows)
        return BadFile(kind, mutation, text.encode(), line=1, column=column, code="missing_field")
    if mutation == "unknown_column":
        name = draw(st.sampled_from(["colour", "amount_usd", "Total", "notes2", "=cmd"]))
        at = draw(st.integers(0, len(header)))
        text, _ = render(
            [*header[:at], name, *header[at:]], [[*r[:at], "x", *r[at:]] for r in rows]
        )
        return BadFile(kind, mutation, text.encode(), line=1, column=name, code="unknown_field")
    if mutation == "repeated_column":
        column = draw(st.sampled_from(header))
        at = header.index(column)
        text, _ = render([*header, column.upper()], [[*r, r[at]] for r in rows])
        return BadFile(kind, mutation, text.encode(), line=1, column=column, code="duplicate")
    if mutation in ("extra_cell", "missing_cell"):
        index = draw(st.integers(0, len(rows) - 1))
        row = rows[index]
        rows[index] = [*row, "surplus"] if mutation == "extra_cell" else row[:-1]
        text, starts = render(header, rows)
        return BadFile(kind, mutation, text.encode(), line=starts[index], code="invalid_value")
    if mutation == "too_many_rows":
        records = draw(record_lists(kind, min_size=2))
        header, rows = _table(kind, records)
        limit = draw(st.integers(1, len(rows) - 1))
        text, starts = render(header, rows)
        return BadFile(
            kind, mutation, text.encode(), line=starts[limit], code="too_many_rows", max_rows=limit
        )
    raise AssertionError(mutation)
