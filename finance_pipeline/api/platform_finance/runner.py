"""Running pipeline requests inside the API process for the embedded default (FP_REQUESTS_INLINE,
docs/requests.md): a background thread hands them to the requests package's inline runner, so a
request answers at once and its run is recorded in the Dagster instance like a daemon's."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence

from finance_pipeline.api.context import ApiContext

log = logging.getLogger(__name__)


def start_inline(ctx: ApiContext, request_ids: Sequence[str]) -> threading.Thread | None:
    """Run the requests in a background thread when the settings say inline (else the requests
    sensor picks them up); returns the thread, None when nothing runs here."""
    if not ctx.settings.resolved_requests_inline or not request_ids:
        return None
    thread = threading.Thread(
        target=_run, args=(ctx, list(request_ids)), name="fp-inline-requests", daemon=True
    )
    thread.start()
    return thread


def _run(ctx: ApiContext, request_ids: list[str]) -> None:
    import dagster as dg

    from finance_pipeline.deployment import dagster_home
    from finance_pipeline.requests.inline import run_pending_inline

    try:
        if os.environ.get("DAGSTER_HOME"):
            instance = dg.DagsterInstance.get()
        else:
            instance = dg.DagsterInstance.from_config(str(dagster_home(ctx.settings)))
        with instance:
            run_pending_inline(instance, ctx.wh, request_ids)
    except Exception:
        # The request rows say what happened to each; this is for the operator's log.
        log.exception("inline run of requests %s failed to start", ",".join(request_ids))
