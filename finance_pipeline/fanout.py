"""Fan-out of scheduled and requested runs by workspace (docs/scaling.md).

A run request per workspace (or per batch of `FP_FANOUT_BATCH_SIZE` workspaces) carries the
workspace tag every asset honours (`tenancy.scoped_workspaces`), so a thousand workspaces refresh
as parallel runs under the run queue's tag concurrency limits (dagster.yaml), and a workspace whose
data fails a check fails only its own run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from finance_pipeline.tenancy import WORKSPACE_TAG, workspace_scope_tag

#: Tag of runs that call Stripe (the Stripe ingest); dagster.yaml caps how many run at once.
STRIPE_TAG = "finance_pipeline/stripe"
STRIPE_TAG_VALUE = "sync"


def workspace_batches(workspace_ids: Sequence[str], size: int) -> list[tuple[str, ...]]:
    """The workspaces in consecutive batches of `size` (in the given order); size 0: one batch
    of all of them (no fan-out)."""
    ids = tuple(workspace_ids)
    if not ids:
        return []
    if size <= 0:
        return [ids]
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def scope_key(workspace_ids: Sequence[str]) -> str:
    """The run-key part naming a batch: the id itself for one workspace, else a digest of the
    sorted ids (a run key stays short at any batch size)."""
    tag = workspace_scope_tag(workspace_ids)
    if len(workspace_ids) == 1:
        return tag
    return "batch_" + hashlib.sha256(tag.encode()).hexdigest()[:20]


def fan_out(
    run_key: str,
    tags: Mapping[str, str],
    workspace_ids: Sequence[str],
    batch_size: int,
    *,
    job_name: str | None = None,
    run_config: Mapping[str, Any] | None = None,
    partition_key: str | None = None,
) -> list[dg.RunRequest]:
    """One run request per batch of workspaces, tagged with the batch and keyed by `run_key` and
    the batch (a re-evaluated tick asks for the same runs, which Dagster launches once). With
    batch_size 0 one untagged run covers every workspace, as before the fan-out."""
    if batch_size <= 0:
        return [
            dg.RunRequest(
                run_key=run_key,
                job_name=job_name,
                tags=dict(tags),
                run_config=run_config or {},
                partition_key=partition_key,
            )
        ]
    return [
        dg.RunRequest(
            run_key=f"{run_key}:{scope_key(batch)}",
            job_name=job_name,
            tags={**tags, WORKSPACE_TAG: workspace_scope_tag(batch)},
            run_config=run_config or {},
            partition_key=partition_key,
        )
        for batch in workspace_batches(workspace_ids, batch_size)
    ]
