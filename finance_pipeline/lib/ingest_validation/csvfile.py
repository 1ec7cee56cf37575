"""CSV landing files: decoding, header checks, kind detection and the rejected-file report."""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterator
from typing import Final

from finance_pipeline.lib.ingest_validation.records import (
    CSV_HEADERS,
    IGNORED_COLUMNS,
    KIND_COLUMNS,
    KINDS,
    MAX_ROWS,
    REQUIRED_COLUMNS,
    KindDetectionError,
    RowError,
    ValidationResult,
    _check_kind,
)
from finance_pipeline.lib.ingest_validation.rows import _validate, canonical_column

_FILENAME_KIND: Final = re.compile(r"^(usage_costs|costs|expenses|revenue|fx_rates)(?:[_.\-]|$)")

# --------------------------------------------------------------------------------------------------
# CSV files
# --------------------------------------------------------------------------------------------------


def _decode(data: str | bytes) -> tuple[str | None, RowError | None]:
    if isinstance(data, bytes):
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            return None, RowError(
                1,
                None,
                "invalid_file",
                "the file is UTF-16; save it as UTF-8 (in Excel: CSV UTF-8)",
            )
        if b"\x00" in data:
            # UTF-16/32 without a byte-order mark decodes as "UTF-8" with a NUL after each
            # ASCII letter: the header would only show as unknown columns.
            return None, RowError(
                data[: data.index(b"\x00")].count(b"\n") + 1,
                None,
                "invalid_file",
                "the file holds NUL bytes: it is UTF-16 or UTF-32, or not a text file; save it "
                "as UTF-8 (in Excel: CSV UTF-8)",
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            return None, RowError(
                line,
                None,
                "invalid_file",
                f"the file is not valid UTF-8 (byte 0x{data[exc.start]:02x} on line {line}); "
                "save it as UTF-8 (in Excel: CSV UTF-8)",
            )
    else:
        text = data
    return text.removeprefix("\ufeff"), None


def _blank(cells: list[str]) -> bool:
    return all(not cell.strip() for cell in cells)


def _check_header(kind: str, header: list[str], errors: list[RowError]) -> list[str | None] | None:
    """Canonical name per column (None = ignored), or None when rows cannot be read at all."""
    known = KIND_COLUMNS[kind]
    expected = ",".join(CSV_HEADERS[kind])
    names: list[str | None] = []
    first_at: dict[str, int] = {}
    for position, cell in enumerate(header, start=1):
        name = canonical_column(cell)
        if not name:
            errors.append(
                RowError(1, None, "invalid_value", f"column {position} of the header has no name")
            )
            names.append(None)
            continue
        if name in IGNORED_COLUMNS:
            names.append(None)
            continue
        if name not in known:
            errors.append(
                RowError(
                    1,
                    cell.strip(),
                    "unknown_field",
                    f"unknown column '{cell.strip()}'; a {kind} file has the columns {expected}"
                    + (
                        " (also accepted: amount_cents, occurred_at, description)"
                        if kind == "revenue"
                        else ""
                    ),
                    cell.strip(),
                )
            )
            names.append(None)
            continue
        if name in first_at:
            errors.append(
                RowError(
                    1,
                    name,
                    "duplicate",
                    f"column '{cell.strip()}' (column {position}) repeats column "
                    f"{first_at[name]}; each column may appear once",
                    cell.strip(),
                )
            )
            names.append(None)
            continue
        first_at[name] = position
        names.append(name)
    fatal = False
    for alternatives in REQUIRED_COLUMNS[kind]:
        if not any(a in first_at for a in alternatives):
            fatal = True
            wanted = " or ".join(f"'{a}'" for a in alternatives)
            errors.append(
                RowError(
                    1,
                    alternatives[0],
                    "missing_field",
                    f"the header has no {wanted} column; a {kind} file has the columns {expected}",
                )
            )
    return None if fatal else names


def csv_header(text: str | bytes) -> list[str]:
    """The first non-blank line's cells (BOM removed), or [] for an empty or unreadable file."""
    decoded, error = _decode(text)
    if decoded is None or error is not None:
        return []
    try:
        for cells in csv.reader(io.StringIO(decoded, newline="")):
            if not _blank(cells):
                return cells
    except csv.Error:
        return []
    return []


def parse_csv(kind: str, text: str | bytes, *, max_rows: int = MAX_ROWS) -> ValidationResult:
    """Validate a whole CSV file of one kind (UTF-8, BOM tolerated, header required)."""
    _check_kind(kind)
    result = ValidationResult(kind=kind)
    decoded, error = _decode(text)
    if error is not None or decoded is None:
        result.errors.append(error)  # type: ignore[arg-type]
        return result
    reader = csv.reader(io.StringIO(decoded, newline=""), strict=True)

    def numbered() -> Iterator[tuple[int, list[str]]]:
        while True:
            start = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                result.errors.append(
                    RowError(
                        start,
                        None,
                        "invalid_file",
                        f"the CSV cannot be read from here on ({exc}); check the quotes "
                        '(a value with a comma, quote or line break must be wrapped in "...", '
                        'and a quote inside it doubled as "")',
                    )
                )
                return
            if not _blank(cells):
                yield start, cells

    lines = numbered()
    first = next(lines, None)
    if first is None:
        if not result.errors:
            result.errors.append(
                RowError(
                    1,
                    None,
                    "invalid_file",
                    f"the file is empty; it needs a header line like {','.join(CSV_HEADERS[kind])}",
                )
            )
        return result
    header_line, header = first
    header_errors: list[RowError] = []
    names = _check_header(kind, header, header_errors)
    result.errors.extend(
        RowError(header_line, e.field, e.code, e.message, e.value) for e in header_errors
    )
    if names is None:
        return result

    def rows() -> Iterator[tuple[int, object]]:
        for line, cells in lines:
            if len(cells) != len(names) and result.rows_read < max_rows:
                result.errors.append(
                    RowError(
                        line,
                        None,
                        "invalid_value",
                        f"the row has {len(cells)} values but the header has {len(names)} "
                        "columns; quote values that contain commas",
                    )
                )
                result.rows_read += 1
                continue
            # past the row limit a malformed row still reaches _validate, which stops there
            yield line, {n: c for n, c in zip(names, cells, strict=False) if n is not None}

    _validate(kind, rows(), result, canonical=True, max_rows=max_rows)
    return result


def detect_kind(filename: str, header: list[str]) -> str:
    """Which kind a landing file holds: from its name prefix (costs_, ...), else its header."""
    base = os.path.basename(filename).lower()
    match = _FILENAME_KIND.match(base)
    if match:
        return match.group(1)
    columns = {canonical_column(c) for c in header} - IGNORED_COLUMNS - {""}
    fits = [
        kind
        for kind in KINDS
        if columns
        and columns <= KIND_COLUMNS[kind]
        and all(any(a in columns for a in alts) for alts in REQUIRED_COLUMNS[kind])
    ]
    if len(fits) == 1:
        return fits[0]
    names = ", ".join(f"{k}_*.csv" for k in KINDS)
    if fits:
        why = f"its columns fit {' and '.join(fits)}"
    elif columns:
        why = "its columns fit no kind"
    else:
        why = "it has no header"
    raise KindDetectionError(
        f"cannot tell what '{os.path.basename(filename)}' contains ({why}); name it {names}"
    )


def parse_landing_file(
    filename: str, data: str | bytes, *, max_rows: int = MAX_ROWS
) -> ValidationResult:
    """Validate a file dropped in the landing folder: detect its kind, then parse it."""
    decoded, error = _decode(data)
    if error is not None or decoded is None:
        return ValidationResult(kind=None, errors=[error])  # type: ignore[list-item]
    try:
        kind = detect_kind(filename, csv_header(decoded))
    except KindDetectionError as exc:
        return ValidationResult(kind=None, errors=[RowError(1, None, "unknown_kind", str(exc))])
    return parse_csv(kind, decoded, max_rows=max_rows)


def oversized_file(filename: str, size: int, limit: int) -> ValidationResult:
    """The verdict on a landing file larger than `limit` bytes, which is rejected unread."""
    match = _FILENAME_KIND.match(os.path.basename(filename).lower())
    return ValidationResult(
        kind=match.group(1) if match else None,
        errors=[
            RowError(
                1,
                None,
                "invalid_file",
                f"the file is {size:,} bytes; at most {limit:,} are accepted; split it into "
                "smaller files",
            )
        ],
    )


def error_report(result: ValidationResult, filename: str) -> str:
    """Human-readable verdict for `<file>.errors.txt`: one line per problem, by line number."""
    name = os.path.basename(filename)
    kind = result.kind or "unknown kind"
    dup = f", {result.duplicate_count} duplicate row(s) skipped" if result.duplicates else ""
    if result.ok:
        head = (
            f"{name}: accepted ({kind}): {len(result.records)} record(s) "
            f"from {result.rows_read} row(s){dup}"
        )
    else:
        head = (
            f"{name}: REJECTED ({kind}): {len(result.errors)} error(s); "
            f"{len(result.records)} of {result.rows_read} row(s) valid{dup}. "
            "Fix the lines below and drop the corrected file again."
        )
    lines = [head]
    for err in sorted(result.errors, key=lambda e: e.line):
        where = f"line {err.line}"
        if err.field:
            where += f", field {err.field}"
        if err.value is not None:
            where += f", value '{err.value}'"
        lines.append(f"{where}: {err.message} [{err.code}]")
    for dupe in result.duplicates:
        lines.append(f"line {dupe.line}: repeats line {dupe.first_line} ({dupe.key}); skipped")
    return "\n".join(lines) + "\n"
