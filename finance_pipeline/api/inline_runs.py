"""Running pipeline requests inside the API process for the embedded default (FP_REQUESTS_INLINE,
docs/requests.md): a background thread hands them to the requests package's inline runner, so a
request answers at once and its run is recorded in the Dagster instance like a daemon's. With a
daemon (PostgreSQL deployments) nothing runs here: the requests sensor picks them up."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

from finance_pipeline.api.context import ApiContext

log = logging.getLogger(__name__)

# One Dagster instance per app (ApiContext) and process: opening one per request re-reads its
# config and storage. Keyed by the app's context, not its DAGSTER_HOME, so a test that gives one
# app an ephemeral instance (instances[id(ctx)]) never hands it to another app of the process.
instances: dict[int, Any] = {}
_instances_lock = threading.Lock()


def dagster_instance(ctx: ApiContext) -> Any:
    """The deployment's Dagster instance, one per process (its runs show in the Dagster UI)."""
    import dagster as dg

    from finance_pipeline.deployment import dagster_home

    with _instances_lock:
        if id(ctx) not in instances:
            instances[id(ctx)] = (
                dg.DagsterInstance.get()
                if os.environ.get("DAGSTER_HOME")
                else dg.DagsterInstance.from_config(str(dagster_home(ctx.settings)))
            )
        return instances[id(ctx)]


def start_inline(
    ctx: ApiContext, request_ids: Sequence[str] | None = None
) -> threading.Thread | None:
    """Run the given requests (None: every queued one) in a background thread when the settings
    say inline; the inline runner claims them, so a daemon, if any, never runs them twice.
    Returns the thread, None when nothing runs here."""
    if not ctx.settings.resolved_requests_inline or (request_ids is not None and not request_ids):
        return None
    ids = None if request_ids is None else list(request_ids)
    thread = threading.Thread(target=_run, args=(ctx, ids), name="fp-inline-requests", daemon=True)
    thread.start()
    return thread


def _run(ctx: ApiContext, request_ids: list[str] | None) -> None:
    from finance_pipeline.requests.inline import run_pending_inline

    try:
        run_pending_inline(dagster_instance(ctx), ctx.wh, request_ids)
    except Exception:
        # A background thread has no caller: the request rows say what happened to each; this
        # is for the operator's log.
        log.exception("inline run of requests %s failed", request_ids or "(all queued)")
