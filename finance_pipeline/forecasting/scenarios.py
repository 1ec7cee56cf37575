"""Saved what-if scenarios per workspace (docs/metrics.md §13, v1 API /scenarios) in mart.scenarios.

A scenario re-runs a stored forecast's base variant (mart.forecasts, the pipeline's default forecast
or one the API saved) with one delta (`price_change`, `churn_change`, `hire`) through
`lib.forecast.run_scenario`, and keeps the delta, the impact and the scenario series. Functions here
are what the read API calls; their errors carry what the v1 API error envelope needs:

- `ForecastValidationError` (code, param, message): 422, an invalid body or query parameter;
- `NotFoundError`: 404, an unknown workspace, scenario or baseline forecast, or one another
  organization owns;
- `IdempotencyConflictError`: 409, an Idempotency-Key reused with a different body.

Decisions: `baseline_forecast_id` may be omitted, then the workspace's latest default forecast is the
baseline (the v1 API requires it; the pipeline always has a default one to offer). Lists are newest
first. `rerun_scenario` recomputes a saved scenario against its baseline as stored now (the default
forecast of a month is restated in place by the monthly job) and updates it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from finance_pipeline.lib.forecast import DELTA_TYPES, ForecastValidationError, run_scenario
from finance_pipeline.tenancy import new_id
from finance_pipeline.warehouse.db import Warehouse, dumps

BODY_FIELDS = ("name", "baseline_forecast_id", "delta")
MAX_NAME_CHARS = 200
MAX_IDEMPOTENCY_KEY_CHARS = 255
DEFAULT_LIMIT, MAX_LIMIT = 20, 100


class NotFoundError(LookupError):
    """A workspace, scenario or forecast that does not exist or another org owns (404)."""

    status = 404

    def __init__(self, param: str | None, message: str, code: str = "resource_missing") -> None:
        super().__init__(message)
        self.code = code
        self.param = param
        self.message = message


class IdempotencyConflictError(Exception):
    """An Idempotency-Key already used with a different body (409)."""

    status = 409

    def __init__(self, key: str) -> None:
        self.code = "idempotency_key_reused"
        self.param: str | None = None
        self.message = f"Idempotency-Key {key!r} was already used with a different request body."
        super().__init__(self.message)


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(int(ts), UTC).isoformat()


def _workspace(wh: Warehouse, workspace_id: str, org_id: str | None) -> dict[str, Any]:
    rows = wh.rows("SELECT id, org_id FROM app.workspaces WHERE id = :w", w=workspace_id)
    # Another org's workspace is reported exactly like a missing one (v1 API: 404).
    if not rows or (org_id is not None and rows[0]["org_id"] != org_id):
        raise NotFoundError("workspace_id", f"No such workspace: {workspace_id}.")
    return rows[0]


def _baseline(wh: Warehouse, workspace_id: str, forecast_id: str | None) -> dict[str, Any]:
    """The stored forecast response (with its id) a scenario re-runs."""
    if forecast_id is None:
        rows = wh.rows(
            "SELECT id, response_json FROM mart.forecasts WHERE workspace_id = :w"
            " AND is_default = :t ORDER BY as_of DESC LIMIT 1",
            w=workspace_id,
            t=True,
        )
        if not rows:
            raise ForecastValidationError(
                "missing_field",
                "baseline_forecast_id",
                "baseline_forecast_id is required: this workspace has no default forecast yet.",
            )
    else:
        rows = wh.rows(
            "SELECT id, response_json FROM mart.forecasts WHERE workspace_id = :w AND id = :f",
            w=workspace_id,
            f=forecast_id,
        )
        if not rows:
            raise NotFoundError(
                "baseline_forecast_id", f"No such forecast in this workspace: {forecast_id}."
            )
    forecast = rows[0]["response_json"]
    if not isinstance(forecast, dict) or "start" not in forecast or "series" not in forecast:
        raise ForecastValidationError(
            "invalid_baseline",
            "baseline_forecast_id",
            f"Forecast {rows[0]['id']} has no stored start values and cannot be re-run.",
        )
    return {**forecast, "id": rows[0]["id"]}


def _validate_body(body: Any) -> tuple[str | None, str | None, Mapping[str, Any]]:
    """(name, baseline_forecast_id, delta) of a POST /scenarios body; the delta is checked later
    against its baseline (churn range, start month) by lib.forecast.run_scenario."""
    if not isinstance(body, Mapping):
        raise ForecastValidationError("invalid_type", None, "The request body must be an object.")
    for key in body:
        if key not in BODY_FIELDS:
            raise ForecastValidationError(
                "unknown_field",
                str(key),
                f"{key} is not a scenario field ({', '.join(BODY_FIELDS)}).",
            )
    name = body.get("name")
    if name is not None:
        if not isinstance(name, str):
            raise ForecastValidationError("invalid_type", "name", "name must be a string.")
        if len(name) > MAX_NAME_CHARS:
            raise ForecastValidationError(
                "out_of_range", "name", f"name must be at most {MAX_NAME_CHARS} characters."
            )
    baseline_id = body.get("baseline_forecast_id")
    if baseline_id is not None and (not isinstance(baseline_id, str) or not baseline_id):
        raise ForecastValidationError(
            "invalid_type", "baseline_forecast_id", "baseline_forecast_id must be a forecast id."
        )
    delta = body.get("delta")
    if delta is None:
        raise ForecastValidationError("missing_field", "delta", "delta is required.")
    if not isinstance(delta, Mapping):
        raise ForecastValidationError("invalid_type", "delta", "delta must be an object.")
    # The type is checked before the baseline is looked up, so a typo is reported first.
    if delta.get("type") is None:
        raise ForecastValidationError("missing_field", "delta.type", "delta.type is required.")
    if delta["type"] not in DELTA_TYPES:
        raise ForecastValidationError(
            "invalid_value", "delta.type", f"delta.type must be one of {', '.join(DELTA_TYPES)}."
        )
    return name, baseline_id, delta


def _request_hash(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(dumps(dict(body)).encode()).hexdigest()


def _series_out(series: Mapping[str, Any]) -> dict[str, Any]:
    """Stored series with runway back to exact Decimals (stored as decimal strings)."""
    sc = series["scenario"]
    return {
        "months": list(series["months"]),
        "scenario": {
            "mrr_cents": [int(v) for v in sc["mrr_cents"]],
            "cash_cents": [int(v) for v in sc["cash_cents"]],
            "runway_months": [None if v is None else Decimal(str(v)) for v in sc["runway_months"]],
        },
    }


def _summary(row: Mapping[str, Any]) -> dict[str, Any]:
    """The v1 API list item: no series."""
    return {
        "id": row["id"],
        "name": row["name"],
        "baseline_forecast_id": row["baseline_forecast_id"],
        "delta": row["delta_json"],
        "impact": row["impact_json"],
        "created_at": _iso(row["created_at"]),
    }


def _full(row: Mapping[str, Any], org_id: str) -> dict[str, Any]:
    """The v1 API scenario object (create 201 / GET by id), plus updated_at."""
    out = _summary(row)
    return {
        "id": out["id"],
        "workspace_id": row["workspace_id"],
        "org_id": org_id,
        "name": out["name"],
        "baseline_forecast_id": out["baseline_forecast_id"],
        "delta": out["delta"],
        "impact": out["impact"],
        "series": _series_out(row["series_json"]),
        "created_at": out["created_at"],
        "updated_at": _iso(row["updated_at"]),
    }


def _row(wh: Warehouse, workspace_id: str, scenario_id: str) -> dict[str, Any]:
    rows = wh.rows(
        "SELECT * FROM mart.scenarios WHERE workspace_id = :w AND id = :s",
        w=workspace_id,
        s=scenario_id,
    )
    if not rows:
        raise NotFoundError("id", f"No such scenario: {scenario_id}.")
    return rows[0]


def _by_idempotency_key(
    wh: Warehouse, workspace_id: str, key: str, request_hash: str
) -> dict[str, Any] | None:
    rows = wh.rows(
        "SELECT * FROM mart.scenarios WHERE workspace_id = :w AND idempotency_key = :k",
        w=workspace_id,
        k=key,
    )
    if not rows:
        return None
    if rows[0]["request_hash"] != request_hash:
        raise IdempotencyConflictError(key)
    return rows[0]


def create_scenario(
    wh: Warehouse,
    workspace_id: str,
    body: Any,
    *,
    org_id: str | None = None,
    idempotency_key: str | None = None,
    now: int | None = None,
) -> dict[str, Any]:
    """Validate, run against the baseline and save a scenario; returns the v1 API object.

    With an Idempotency-Key, the same key and body return the scenario saved the first time
    (nothing new is stored); the same key with another body raises IdempotencyConflictError.
    """
    ws = _workspace(wh, workspace_id, org_id)
    if idempotency_key is not None and (
        not isinstance(idempotency_key, str)
        or not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY_CHARS
    ):
        raise ForecastValidationError(
            "invalid_value",
            "Idempotency-Key",
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters.",
        )
    name, baseline_id, delta = _validate_body(body)
    request_hash = _request_hash(body)
    if idempotency_key is not None:
        replay = _by_idempotency_key(wh, workspace_id, idempotency_key, request_hash)
        if replay is not None:
            return _full(replay, ws["org_id"])
    result = run_scenario(_baseline(wh, workspace_id, baseline_id), delta)
    ts = int(time.time()) if now is None else now
    row = {
        "id": new_id("sc"),
        "workspace_id": workspace_id,
        "name": name,
        "baseline_forecast_id": result["baseline_forecast_id"],
        "delta_type": result["delta"]["type"],
        "delta_json": result["delta"],
        "impact_json": result["impact"],
        "series_json": result["series"],
        "final_cash_delta_cents": result["impact"]["final_cash_delta_cents"],
        "final_mrr_cents": result["impact"]["final_mrr_cents"],
        "idempotency_key": idempotency_key,
        "request_hash": request_hash,
        "created_at": ts,
        "updated_at": ts,
    }
    try:
        with wh.begin() as db:
            db.execute(wh.table("mart.scenarios").insert(), [row])
    except sa.exc.IntegrityError:
        # A concurrent request with the same Idempotency-Key won the insert: answer like a replay.
        if idempotency_key is None:
            raise
        replay = _by_idempotency_key(wh, workspace_id, idempotency_key, request_hash)
        if replay is None:
            raise
        return _full(replay, ws["org_id"])
    return _full(_row(wh, workspace_id, row["id"]), ws["org_id"])


def get_scenario(
    wh: Warehouse, workspace_id: str, scenario_id: str, *, org_id: str | None = None
) -> dict[str, Any]:
    """The full v1 API scenario object, series included."""
    ws = _workspace(wh, workspace_id, org_id)
    return _full(_row(wh, workspace_id, scenario_id), ws["org_id"])


def list_scenarios(
    wh: Warehouse,
    workspace_id: str,
    *,
    org_id: str | None = None,
    limit: Any = DEFAULT_LIMIT,
    starting_after: str | None = None,
) -> dict[str, Any]:
    """One page of the workspace's scenarios, newest first: {data: [...], has_more} (no series)."""
    _workspace(wh, workspace_id, org_id)
    if isinstance(limit, str) and limit.isdigit():
        limit = int(limit)  # a query-string value
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ForecastValidationError(
            "invalid_value", "limit", f"limit must be an integer from 1 to {MAX_LIMIT}."
        )
    where = "workspace_id = :w"
    params: dict[str, Any] = {"w": workspace_id, "n": limit + 1}
    if starting_after is not None:
        cursor = wh.rows(
            "SELECT created_at, id FROM mart.scenarios WHERE workspace_id = :w AND id = :s",
            w=workspace_id,
            s=starting_after,
        )
        if not cursor:
            raise NotFoundError("starting_after", f"No such scenario: {starting_after}.")
        where += " AND (created_at < :c OR (created_at = :c AND id < :i))"
        params.update(c=cursor[0]["created_at"], i=cursor[0]["id"])
    rows = wh.rows(
        "SELECT id, name, baseline_forecast_id, delta_json, impact_json, created_at"
        f" FROM mart.scenarios WHERE {where} ORDER BY created_at DESC, id DESC LIMIT :n",
        **params,
    )
    return {"data": [_summary(r) for r in rows[:limit]], "has_more": len(rows) > limit}


def delete_scenario(
    wh: Warehouse, workspace_id: str, scenario_id: str, *, org_id: str | None = None
) -> None:
    """Delete a saved scenario (the API answers 204); a missing one raises NotFoundError."""
    _workspace(wh, workspace_id, org_id)
    with wh.begin() as db:
        deleted = db.execute(
            wh.text("DELETE FROM mart.scenarios WHERE workspace_id = :w AND id = :s"),
            {"w": workspace_id, "s": scenario_id},
        ).rowcount
    if not deleted:
        raise NotFoundError("id", f"No such scenario: {scenario_id}.")


def rerun_scenario(
    wh: Warehouse,
    workspace_id: str,
    scenario_id: str,
    *,
    org_id: str | None = None,
    now: int | None = None,
) -> dict[str, Any]:
    """Recompute a saved scenario against its baseline as stored now; returns the updated object."""
    ws = _workspace(wh, workspace_id, org_id)
    row = _row(wh, workspace_id, scenario_id)
    result = run_scenario(
        _baseline(wh, workspace_id, row["baseline_forecast_id"]), row["delta_json"]
    )
    ts = int(time.time()) if now is None else now
    tbl = wh.table("mart.scenarios")
    with wh.begin() as db:
        db.execute(
            tbl.update()
            .where(tbl.c.workspace_id == workspace_id, tbl.c.id == scenario_id)
            .values(
                impact_json=result["impact"],
                series_json=result["series"],
                final_cash_delta_cents=result["impact"]["final_cash_delta_cents"],
                final_mrr_cents=result["impact"]["final_mrr_cents"],
                updated_at=ts,
            )
        )
    return _full(_row(wh, workspace_id, scenario_id), ws["org_id"])
