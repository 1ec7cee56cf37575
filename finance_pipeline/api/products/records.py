"""Reading and creating a product's revenue and cost records: the raw ingest rows, validated and
stored by the same lib functions as the landing files, then a refresh of the affected day."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Connection

from finance_pipeline.api.context import ApiContext
from finance_pipeline.api.errors import ApiError
from finance_pipeline.api.inline_runs import start_inline
from finance_pipeline.ingest.manual_rows import KIND_TABLES, record_row, store_records
from finance_pipeline.lib.ingest_validation import Record, validate_rows
from finance_pipeline.requests.store import PipelineRequestError, refresh_range, request_refresh
from finance_pipeline.tenancy import Workspace

log = logging.getLogger(__name__)

# Where the API records come from (raw.*.source / ingested_via), beside the landing files'.
SOURCE = "api:products"
# Input names of the lib's canonical fields, as the seed spells them.
SEED_NAMES = {"external_id": "id", "is_recurring": "isRecurring"}
# Columns compared to tell a replay (same record) from a different record under the same id.
_CONTENT_EXCLUDED = {"source", "ingested_via", "ingested_at"}


@dataclass(frozen=True)
class Created:
    """The stored row, whether this request created it, and the refresh request it queued."""

    row: dict[str, Any]
    created: bool
    refresh_id: str | None


def get_row(ctx: ApiContext, kind: str, workspace_id: str, record_id: str) -> dict[str, Any] | None:
    """One raw row of the workspace by its external id, or None."""
    table, _ = KIND_TABLES[kind]
    rows = ctx.wh.rows(
        f"SELECT * FROM {table} WHERE workspace_id = :w AND external_id = :id",
        w=workspace_id,
        id=record_id,
    )
    return rows[0] if rows else None


def _validated(kind: str, body: Mapping[str, Any]) -> Record:
    """The one record of a request body, through the landing files' validation; 422 naming the
    field (in the seed's spelling) otherwise."""
    result = validate_rows(kind, [body], start_line=0, max_rows=1)
    if result.errors:
        err = result.errors[0]
        param = SEED_NAMES.get(err.field or "", err.field)
        code = "missing_field" if err.code == "missing_field" else "invalid_field"
        # The lib's messages name the field and say what is expected.
        raise ApiError(422, code, err.message[:1].upper() + err.message[1:] + ".", param=param)
    [record] = result.records
    return record


def _same_content(stored: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    return all(
        str(stored[k])[:10] == str(v)[:10] if k == "date" else stored[k] == v
        for k, v in new.items()
        if k not in _CONTENT_EXCLUDED
    )


def create(
    ctx: ApiContext, kind: str, ws: Workspace, body: Mapping[str, Any], requested_by: str
) -> Created:
    """Validate and store one record (nothing is written when it is invalid). The same id again
    with the same content returns the stored record (created False); with other content, 409."""
    record = _validated(kind, body)
    new_row = record_row(record, ws.id, SOURCE, 0)
    with ctx.wh.begin() as db:
        outcome = store_records(ctx.wh, db, kind, [record], workspace_id=ws.id, source=SOURCE)
        # The record and its refresh commit together: were the request queued after the record
        # committed, a database lost in between would store a record the marts never pick up.
        rid = queue_refresh(ctx, db, ws, record.date, requested_by) if outcome.inserted else None
    if rid is not None:
        start_inline(ctx, [rid])
    stored = get_row(ctx, kind, ws.id, record.external_id)
    assert stored is not None
    if not outcome.inserted:
        if not _same_content(stored, new_row):
            raise ApiError(
                409,
                "record_exists",
                f"A record with id {record.external_id!r} already exists with other content; "
                "records are created once (change them in the dashboard).",
                param="id",
            )
        return Created(stored, False, None)
    return Created(stored, True, rid)


def queue_refresh(
    ctx: ApiContext, db: Connection, ws: Workspace, day: date, requested_by: str
) -> str | None:
    """Ask the pipeline, in the record's transaction `db`, to rebuild the marts over the record's
    day, so reads include it; None when the day has no partition (before the history start, or
    not ended yet: the daily schedule builds it once it ends). The caller starts it inline once
    the transaction has committed."""
    try:
        refresh_range(day, day)
    except PipelineRequestError:
        return None
    return request_refresh(
        ctx.wh,
        ws.id,
        day,
        day,
        reason="products API: record created",
        requested_by=requested_by,
        db=db,
    )
