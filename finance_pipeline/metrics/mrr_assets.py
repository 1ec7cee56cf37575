"""MRR marts, partitioned by day: per-customer change rows, movements, daily and per-plan summaries.

A run covers a range of days (a backfill of the whole history is one run). Every workspace's window
is computed exactly, the roll-forward identity is verified before anything is written, and then the
window is replaced in one transaction, so a re-run restates and never duplicates.
"""

from datetime import date, timedelta
from fractions import Fraction

import dagster as dg

from finance_pipeline.lib.bulk import RowSpool, cyclic_gc_paused
from finance_pipeline.lib.money import (
    MICROS_PER_CENT,
    foot_roll_forward,
    micros_to_cents,
    micros_to_decimal,
)
from finance_pipeline.lib.mrr_timeline import MOVEMENT_SIGNS
from finance_pipeline.lib.timeutil import day_start_ts, local_day
from finance_pipeline.metrics.mrr_compute import compute_mrr_window, mrr_settings
from finance_pipeline.metrics.reconcile import invoice_mrr_mismatches
from finance_pipeline.partitions import daily_partitions
from finance_pipeline.resources import WarehouseResource
from finance_pipeline.table_checks import table_metadata
from finance_pipeline.tenancy import scoped_workspaces

MRR_TABLES = {
    "mrr_changes": "Per-customer MRR change rows: one row when a customer's end-of-day MRR, CMRR or "
    "counted subscriptions change (native currency, exact value beside the rounded micros).",
    "mrr_movements": "Daily MRR movements per customer in the reporting currency: new, expansion, "
    "reactivation, contraction, churn (delinquent or voluntary) and fx (docs/metrics.md §5).",
    "mrr_daily": "Daily workspace MRR, CMRR, ARR, active subscriptions, paying customers and the "
    "movements; MRR(D) = MRR(D-1) + new + expansion + reactivation - contraction - churn + fx.",
    "mrr_plan_daily": "Daily MRR and subscriptions per plan (price), for plan filters.",
    "subscription_counting": "Days each subscription starts or stops counting as active "
    "(docs/metrics.md §3); Stripe's 30-day subscriber churn (§6) is read from them.",
}
# The MrrWindow attribute holding each table's rows.
WINDOW_ROWS = {
    "mrr_changes": "changes",
    "mrr_movements": "movements",
    "mrr_daily": "daily",
    "mrr_plan_daily": "plans",
    "subscription_counting": "counting",
}
# The marts written a batch of customers at a time, in the order compute_mrr_window's sink gets them.
BATCHED_TABLES = ("mrr_changes", "mrr_movements", "subscription_counting")
KEYS = {name: dg.AssetKey(["mart", name]) for name in MRR_TABLES}
UPSTREAM = [
    dg.AssetKey(["core", "subscription_history"]),
    dg.AssetKey(["core", "ledger"]),
    dg.AssetKey(["core", "fx_rates"]),
]


def _money(micros: Fraction | int) -> str:
    """Money in whole units with 2 decimals and thousands separators, rounded half away."""
    return f"{micros_to_decimal(micros):,}"


@dg.multi_asset(
    name="mrr_marts",
    specs=[
        dg.AssetSpec(
            key,
            description=MRR_TABLES[name],
            group_name="mrr",
            kinds={"sql", "python"},
            deps=UPSTREAM,
            partitions_def=daily_partitions,
        )
        for name, key in KEYS.items()
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "movement_identity_holds",
            asset=KEYS["mrr_daily"],
            blocking=True,
            description="MRR(D) = MRR(D-1) + movements, exactly, on every day of the run.",
        ),
        dg.AssetCheckSpec(
            "invoices_reconcile_with_mrr",
            asset=KEYS["mrr_daily"],
            blocking=False,
            description="Non-proration invoice lines, normalized to a month and taken with the "
            "discounts the workspace's discount_mode counts, equal the subscription's MRR at the "
            "period start (WARN); periods before the first stored Stripe event, rebuilt from "
            "invoices, are listed as known approximations.",
        ),
    ],
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=False,
)
def mrr_marts(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Compute the partition window for every workspace; validate; replace the window."""
    wh = warehouse.get()
    window = context.partition_time_window
    start = window.start.date()
    end = date.fromordinal(window.end.date().toordinal() - 1)
    results = {}
    failures: list[str] = []
    workspaces = scoped_workspaces(wh)
    # Customers are computed a batch at a time and their change, movement and counting rows are
    # parked on disk, so memory is bounded by a batch, not by the workspace; the identity is
    # checked on the summed daily totals before anything is written. See cyclic_gc_paused.
    spools = {name: RowSpool() for name in BATCHED_TABLES}

    def sink(changes: list[dict], movements: list[dict], counting: list[dict]) -> None:
        for name, rows in zip(BATCHED_TABLES, (changes, movements, counting), strict=True):
            spools[name].add(rows)

    try:
        with cyclic_gc_paused():
            for ws in workspaces:
                res = compute_mrr_window(wh, ws, start, end, sink=sink)
                results[ws.id] = res
                failures += res.identity_failures
        if failures:
            yield dg.AssetCheckResult(
                check_name="movement_identity_holds",
                passed=False,
                asset_key=KEYS["mrr_daily"],
                metadata={"failures": dg.MetadataValue.md("\n".join(failures[:50]))},
            )
            raise dg.Failure(
                f"MRR roll-forward identity fails on {len(failures)} day(s); nothing written"
            )
        written = {name: spool.count for name, spool in spools.items()}
        with cyclic_gc_paused(), wh.begin() as db:
            wh.lock_windows(db, [f"mart.{name}" for name in WINDOW_ROWS], results)
            for ws_id in results:
                for name in WINDOW_ROWS:
                    db.execute(
                        wh.text(
                            f"DELETE FROM mart.{name} WHERE workspace_id = :w"
                            " AND day >= :a AND day <= :b"
                        ),
                        {"w": ws_id, "a": start, "b": end},
                    )
            for name, spool in spools.items():
                for chunk in spool.chunks():
                    wh.insert(db, f"mart.{name}", chunk)
            for name, attr in (("mrr_daily", "daily"), ("mrr_plan_daily", "plans")):
                rows = [r for res in results.values() for r in getattr(res, attr)]
                wh.insert(db, f"mart.{name}", rows)
                written[name] = len(rows)
    finally:
        for spool in spools.values():
            spool.close()
    # Headline numbers finance reads in the UI: the window's roll-forward, footed to the cent so
    # opening + movements = closing on the displayed figures too, and the last day's ARR.
    lines = [
        "| workspace | opening MRR | new | expansion | reactivation | contraction | churn | fx |"
        " MRR | ARR | subs | paying |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    meta: dict = {"days": (end - start).days + 1, "window": f"{start}..{end}"}
    for ws_id, res in results.items():
        if not res.company:
            continue
        last = res.company[-1]
        # Contraction and churn are stored as positive amounts that reduce MRR.
        signed = {
            k: sign * sum((getattr(d, k) for d in res.company), Fraction(0))
            for k, sign in MOVEMENT_SIGNS.items()
        }
        opening, moves, closing = foot_roll_forward(
            res.company[0].previous_mrr, signed, last.mrr, MICROS_PER_CENT
        )
        lines.append(
            f"| {ws_id} | {_money(opening)} | "
            + " | ".join(_money(MOVEMENT_SIGNS[k] * v) for k, v in moves.items())
            + f" | {_money(closing)} | {_money(last.arr)} | "
            f"{last.active_subscriptions} | {last.paying_customers} |"
        )
        meta[f"{ws_id}_mrr_cents"] = dg.MetadataValue.int(micros_to_cents(last.mrr))
    meta["mrr_roll_forward"] = dg.MetadataValue.md("\n".join(lines))
    for name, key in KEYS.items():
        m = dict(meta) if name == "mrr_daily" else {"days": meta["days"]}
        m["rows_written"] = written[name]
        m.update(table_metadata(key, m["rows_written"]))
        yield dg.MaterializeResult(asset_key=key, metadata=m)
    yield dg.AssetCheckResult(
        check_name="movement_identity_holds",
        passed=True,
        asset_key=KEYS["mrr_daily"],
        metadata={"days_checked": meta["days"] * len(results)},
    )
    # Periods whose history was rebuilt from invoices are known approximations (listed, never a
    # failure); only unexplained mismatches fail this WARN check.
    lines_checked = periods = 0
    approximations: list[dict[str, str]] = []
    mismatched: list[dict[str, str]] = []
    complete_from = []
    for ws in workspaces:
        # The renewals of the window's local days: a daily run checks its own days only.
        with cyclic_gc_paused():
            rec = invoice_mrr_mismatches(
                wh,
                ws.id,
                mrr_settings(ws),
                day_start_ts(start, ws.time_zone),
                day_start_ts(end + timedelta(days=1), ws.time_zone),
            )
        lines_checked += rec.lines_checked
        periods += rec.periods_compared
        approximations += [
            {"workspace": ws.id, **m.describe(ws.time_zone)} for m in rec.approximations
        ]
        mismatched += [{"workspace": ws.id, **m.describe(ws.time_zone)} for m in rec.mismatches]
        since = rec.history_complete_from
        complete_from.append(
            f"{ws.id}: {local_day(since, ws.time_zone).isoformat() if since else 'no events'}"
        )
    summary = (
        f"{lines_checked} invoice lines in {periods} billing periods checked: "
        f"{len(mismatched)} unexplained mismatches, {len(approximations)} known approximations "
        "(history rebuilt from invoices before the first stored Stripe event)."
    )
    yield dg.AssetCheckResult(
        check_name="invoices_reconcile_with_mrr",
        asset_key=KEYS["mrr_daily"],
        passed=not mismatched,
        severity=dg.AssetCheckSeverity.WARN,
        description=summary,
        metadata={
            "lines_checked": lines_checked,
            "periods_compared": periods,
            "mismatches": len(mismatched),
            "known_approximations": len(approximations),
            "history_complete_from": ", ".join(complete_from),
            "mismatch_examples": dg.MetadataValue.md(_period_table(mismatched)),
            "approximation_examples": dg.MetadataValue.md(_period_table(approximations)),
        },
    )


def _period_table(rows: list[dict[str, str]], limit: int = 50) -> str:
    """Billing periods as a markdown table (ISO dates, 2-decimal amounts), or `none`; a long list
    shows its first `limit` rows and how many more there are."""
    if not rows:
        return "none"
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows[:limit]]
    if len(rows) > limit:
        out.append(f"\n... and {len(rows) - limit} more")
    return "\n".join(out)
