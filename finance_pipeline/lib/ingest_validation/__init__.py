"""Validation and normalization of ingested finance rows (costs, expenses, usage costs, manual
revenue, FX rates) from the CSV landing folder or from API request bodies.

Pure logic: rows in, frozen records and precise row errors out. The same rules serve the CSV landing
sensor (`parse_landing_file`, `error_report`) and the FastAPI ingest endpoints (`validate_rows` on
JSON items, `RowError.as_api_error()` for the 422 envelope of the v1 API).

Conventions (the integration contract):

- Money is integer micro-units of the record's currency (1 unit = 1,000,000; docs/metrics.md §2).
  Every money record has `amount_micros`, `currency` (lower-case ISO 4217) and `date` (the day the
  money moves). Inputs: `amount` is a decimal in whole units ("20.00"), `amount_cents` counts
  hundredths of a unit (v1 API), `cost_microdollars` counts millionths (margins API). An amount
  finer than its currency's minor unit (12.345 USD, 1500.5 JPY) is rejected, never rounded.
- JSON floats are rejected for money fields (they cannot hold 0.10 exactly). The API should parse
  bodies with `json.loads(..., parse_float=Decimal)`, so the seeds' `"amount": 99.00` arrives as
  a Decimal, which is accepted. FX rates are not money: a float rate is read via its shortest repr.
- Manual revenue is signed: type `refund` is stored negative (docs/metrics.md §7, v1 API).
- FX: `amount_in_base = amount * rate`, the price of 1 unit of `currency` in `base`.
- Cost categories extend the products API's five with PAYMENT_FEES (fees, docs/metrics.md §7) and
  COGS (cost of goods sold, for gross margin in forecasts). Input is case-insensitive; `-` and
  spaces count as `_`.
- External ids: a given id is kept (trimmed). A row without one gets `content_external_id(record)`,
  `auto_` + 32 hex digits of a SHA-256 of the normalized content, so re-ingesting the same file is
  idempotent. Consequence: identical rows without ids are one record; distinct money movements need
  distinct ids. A given id starting with `auto_` must equal the row's content id, so exported rows
  round-trip and a derived id always means "hash of this content".
- Duplicates inside one file/request: a row whose key (external_id; for FX the triple date,
  currency, base) was already seen is skipped and counted in `ValidationResult.duplicates` when its
  normalized record is identical ("20.0" and "20.00" are the same amount), and is an error with
  code `duplicate` when any normalized field differs.
- Error codes (v1 API vocabulary): missing_field, invalid_value, invalid_type, duplicate,
  unknown_field, conflicting_fields, too_many_rows, invalid_file, unknown_kind.
  `RowError.message` says what is wrong and what is expected, without the location;
  `str(error)` prefixes "line N: ".
- Lines: parse_csv reports physical line numbers (header = line 1; blank lines are skipped but
  counted). validate_rows numbers items from `start_line` (pass 0 for JSON array indexes).
"""

from finance_pipeline.lib.ingest_validation.csvfile import (
    csv_header,
    detect_kind,
    error_report,
    oversized_file,
    parse_csv,
    parse_landing_file,
)
from finance_pipeline.lib.ingest_validation.records import (
    AUTO_ID_PREFIX,
    COLUMN_ALIASES,
    COST_CATEGORIES,
    CSV_HEADERS,
    EXPENSE_SUBTYPES,
    IGNORED_COLUMNS,
    KIND_COLUMNS,
    KINDS,
    MAX_DATE,
    MAX_ROWS,
    MIN_DATE,
    RECORD_TYPES,
    REQUIRED_COLUMNS,
    REVENUE_SUBTYPES,
    REVENUE_TYPES,
    CostRecord,
    DuplicateRow,
    ExpenseEvent,
    FxRate,
    KindDetectionError,
    ManualRevenue,
    Record,
    RowError,
    UsageCostEvent,
    ValidationResult,
    content_external_id,
    format_csv,
    format_units,
    record_to_row,
)
from finance_pipeline.lib.ingest_validation.rows import canonical_column, validate_rows

__all__ = [
    "AUTO_ID_PREFIX",
    "COLUMN_ALIASES",
    "COST_CATEGORIES",
    "CSV_HEADERS",
    "EXPENSE_SUBTYPES",
    "IGNORED_COLUMNS",
    "KINDS",
    "KIND_COLUMNS",
    "MAX_DATE",
    "MAX_ROWS",
    "MIN_DATE",
    "RECORD_TYPES",
    "REQUIRED_COLUMNS",
    "REVENUE_SUBTYPES",
    "REVENUE_TYPES",
    "CostRecord",
    "DuplicateRow",
    "ExpenseEvent",
    "FxRate",
    "KindDetectionError",
    "ManualRevenue",
    "Record",
    "RowError",
    "UsageCostEvent",
    "ValidationResult",
    "canonical_column",
    "content_external_id",
    "csv_header",
    "detect_kind",
    "error_report",
    "format_csv",
    "format_units",
    "oversized_file",
    "parse_csv",
    "parse_landing_file",
    "record_to_row",
    "validate_rows",
]
