"""One asset per Stripe stream: every connected workspace synced incrementally into raw.stripe_*."""

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dagster as dg

from finance_pipeline.lib.backoff import BackoffPolicy
from finance_pipeline.resources import StripeResource, WarehouseResource
from finance_pipeline.stripe_sync.engine import Connection, StreamResult, StripeStreamSync
from finance_pipeline.stripe_sync.gateway import (
    StripeGateway,
    StripeSyncError,
    account_pacing_file,
)
from finance_pipeline.stripe_sync.streams import STREAMS, Stream
from finance_pipeline.table_checks import table_metadata
from finance_pipeline.tenancy import in_run_scope, stripe_connections

STRIPE_POOL = "stripe_api"
STRIPE_RETRY = dg.RetryPolicy(
    max_retries=3, delay=15, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def asset_key_for(table: str) -> dg.AssetKey:
    """Asset key mirroring a layer-qualified table name (`raw.stripe_invoices`)."""
    return dg.AssetKey(table.split("."))


def _markdown(results: Sequence[StreamResult]) -> str:
    lines = [
        "| workspace | mode | listed | refreshed | child rows | pages |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.workspace_id} | {r.mode} | {r.listed} | {r.refreshed} | {r.sublist_rows} | {r.pages} |"
        )
    return "\n".join(lines)


def run_stream(
    context: dg.AssetExecutionContext,
    stream: Stream,
    warehouse: WarehouseResource,
    stripe: StripeResource,
) -> tuple[list[StreamResult], dict[str, Any]]:
    """Sync one stream for every connected workspace; failures are isolated, then reported together."""
    wh = warehouse.get()
    totals: dict[str, Any] = {"requests": 0, "retries": 0, "throttled_s": 0.0}
    lock = threading.Lock()

    def sync_one(conn: Connection) -> StreamResult | str:
        gw = StripeGateway(
            conn.api_key,
            api_base=conn.api_base,
            api_version=stripe.settings.stripe_api_version,
            stripe_account=conn.stripe_account_header,
            rate_limit_rps=stripe.effective_rate(),
            backoff=BackoffPolicy(max_attempts=stripe.effective_attempts()),
            workspace_id=conn.workspace_id,
            timeout_seconds=stripe.effective_timeout(),
            # Stream steps running at once (the stripe_api pool) share the account's rate.
            pacing_file=account_pacing_file(conn.api_base, conn.account_id, conn.livemode),
        )
        sync = StripeStreamSync(
            wh, gw, conn, page_size=stripe.page_size, list_slices=stripe.list_slices
        )
        try:
            return sync.sync(stream.name)
        except StripeSyncError as exc:
            sync.mark_attempt(stream.name, "error", str(exc))
            context.log.error(str(exc))
            return str(exc)
        except Exception as exc:
            sync.mark_attempt(stream.name, "error", f"{type(exc).__name__}: {exc}")
            raise
        finally:
            gw.close()
            with lock:
                totals["requests"] += gw.stats.requests
                totals["retries"] += gw.stats.retries
                totals["throttled_s"] += gw.stats.throttled_seconds

    # Workspaces are separate Stripe accounts with their own limits: synced side by side.
    connections = [
        c for c in stripe_connections(wh, stripe.settings) if in_run_scope(c.workspace_id)
    ]
    with ThreadPoolExecutor(
        max_workers=max(1, min(stripe.workspace_concurrency, len(connections))),
        thread_name_prefix="stripe-workspace",
    ) as pool:
        futures = [pool.submit(sync_one, conn) for conn in connections]
        # In connection order, so results, logs and the first unexpected error are as before.
        outcomes = [f.result() for f in futures]
    results: list[StreamResult] = []
    failures: list[str] = []
    for conn, res in zip(connections, outcomes, strict=True):
        if isinstance(res, str):
            failures.append(res)
            continue
        for note in res.notes:
            context.log.info(f"{conn.workspace_id}/{stream.name}: {note}")
        results.append(res)
    if failures:
        raise dg.Failure(
            description=f"Stripe sync of {stream.name} failed for {len(failures)} workspace(s)",
            metadata={"errors": dg.MetadataValue.md("\n".join(f"- {f}" for f in failures))},
            allow_retries=False,
        )
    context.log.info(
        f"{stream.name}: {sum(r.objects for r in results)} objects over {len(results)} workspace(s), "
        f"{totals['requests']} requests, {totals['retries']} retries"
    )
    return results, totals


def build_stripe_asset(stream: Stream) -> dg.AssetsDefinition:
    """The multi-asset for a stream: its table plus the child tables it fills (lines, items)."""
    main_key = asset_key_for(stream.table)
    deps = [asset_key_for(STREAMS["events"].table)] if stream.mutable else []
    specs = [
        dg.AssetSpec(
            main_key,
            description=stream.description,
            group_name="ingest",
            kinds={"stripe", "sql"},
            deps=deps,
        )
    ]
    for sub in stream.sublists:
        specs.append(
            dg.AssetSpec(
                asset_key_for(sub.table),
                description=f"Every `{sub.key}` entry of each {stream.object_type}, beyond the 10 "
                f"Stripe embeds.",
                group_name="ingest",
                kinds={"stripe", "sql"},
                deps=[main_key],
            )
        )

    @dg.multi_asset(
        name=f"stripe_{stream.name}",
        specs=specs,
        pool=STRIPE_POOL,
        retry_policy=STRIPE_RETRY,
        can_subset=False,
    )
    def _asset(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, stripe: StripeResource
    ):
        results, totals = run_stream(context, stream, warehouse, stripe)
        wh = warehouse.get()
        rows_total = int(wh.scalar(f"SELECT COUNT(*) FROM {stream.table}") or 0)
        yield dg.MaterializeResult(
            asset_key=main_key,
            metadata={
                "workspaces": len(results),
                "objects_synced": sum(r.objects for r in results),
                "rows_total": rows_total,
                **table_metadata(main_key, rows_total),
                "stripe_requests": totals["requests"],
                "stripe_retries": totals["retries"],
                "throttled_seconds": round(totals["throttled_s"], 3),
                "modes": ", ".join(sorted({r.mode for r in results})) or "none",
                "by_workspace": dg.MetadataValue.md(_markdown(results)),
            },
        )
        for sub in stream.sublists:
            sub_total = int(wh.scalar(f"SELECT COUNT(*) FROM {sub.table}") or 0)
            yield dg.MaterializeResult(
                asset_key=asset_key_for(sub.table),
                metadata={
                    "rows_written": sum(r.sublist_rows for r in results),
                    "rows_total": sub_total,
                    **table_metadata(asset_key_for(sub.table), sub_total),
                },
            )

    return _asset


stripe_assets = [build_stripe_asset(s) for s in STREAMS.values()]
