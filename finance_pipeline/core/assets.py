"""Core assets: FX rates, and the cash ledger and subscription history, built from what changed in
raw since their last build (or wholly, on request)."""

import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from fractions import Fraction

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from finance_pipeline.core.history_io import customer_batches, history_rows, load_history_inputs
from finance_pipeline.core.incremental import (
    HISTORY_SOURCES,
    LEDGER_SOURCES,
    MANUAL_TABLES,
    BuildPlan,
    history_changes,
    ledger_changes,
    ledger_entry_ids,
    plan_build,
    save_state,
)
from finance_pipeline.lib.bulk import RowSpool, cyclic_gc_paused
from finance_pipeline.lib.ledger import LedgerBuilder, fx_lookup
from finance_pipeline.lib.money import micros_per_minor, round_half_away
from finance_pipeline.lib.subscription_history import build_history_until
from finance_pipeline.resources import WarehouseResource
from finance_pipeline.table_checks import table_metadata
from finance_pipeline.tenancy import Workspace, in_run_scope, scoped_workspaces
from finance_pipeline.warehouse.db import Warehouse

# Customers whose raw inputs a history build holds at once.
HISTORY_BATCH_CUSTOMERS = 2000

RAW_STRIPE = [
    "stripe_charges",
    "stripe_refunds",
    "stripe_invoices",
    "stripe_invoice_payments",
    "stripe_balance_transactions",
]


@dg.asset(
    key=["core", "fx_rates"],
    deps=[dg.AssetKey(["raw", "fx_rates"])],
    group_name="core",
    kinds={"sql"},
)
def fx_rates(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Daily FX rates (1 unit of currency = rate units of the reporting currency), exact decimals."""
    wh = warehouse.get()
    with wh.begin() as db:
        if not wh.is_sqlite:
            # Workspace-scoped runs rebuild this shared table concurrently: one at a time, or two
            # delete-then-insert transactions would insert the same keys (SQLite locks anyway).
            db.execute(wh.text("LOCK TABLE core.fx_rates IN EXCLUSIVE MODE"))
        db.execute(wh.text("DELETE FROM core.fx_rates"))
        db.execute(
            wh.text(
                "INSERT INTO core.fx_rates (base, currency, date, rate, ingested_at)"
                " SELECT base, currency, date, rate, ingested_at FROM raw.fx_rates"
            )
        )
    summary = wh.rows(
        "SELECT base, currency, COUNT(*) AS days, MIN(date) AS first, MAX(date) AS last"
        " FROM core.fx_rates GROUP BY base, currency ORDER BY base, currency"
    )
    table = "\n".join(
        ["| base | currency | days | first | last |", "|---|---|---|---|---|"]
        + [
            f"| {r['base']} | {r['currency']} | {r['days']} | {r['first']} | {r['last']} |"
            for r in summary
        ]
    )
    rows = sum(r["days"] for r in summary)
    return dg.MaterializeResult(
        metadata={
            "rows": rows,
            "coverage": dg.MetadataValue.md(table),
            **table_metadata(dg.AssetKey(["core", "fx_rates"]), rows),
        }
    )


# Ledger rows parked at once by a full build (one pickled chunk of the spool).
LEDGER_SPOOL_CHUNK = 5000


def _ledger_rows(
    wh: Warehouse,
    ws: Workspace,
    only: Mapping[str, Collection[str]] | None = None,
    spool: RowSpool | None = None,
) -> list[dict]:
    """The workspace's ledger rows: all of them, or only those of the source objects in `only`
    (source table -> ids), computed exactly as in the full build. With `spool`, the rows are
    parked there a chunk at a time instead (none returned).

    Whole tables are read through one streamed cursor each and processed as their pages come, so
    with a spool a full build's memory is bounded by a page and the charges' tax ratios, not by
    the workspace (one query per page made SQLite plan `IN (...)` lists badly: twice the CPU)."""
    q = {"w": ws.id}

    def ids(table: str) -> Collection[str] | None:
        return None if only is None else only.get(table, ())

    def read(sql: str, column: str, wanted: Collection[str] | None) -> Iterable[dict]:
        if wanted is None:
            return (row for page in wh.stream(sql, **q) for row in page)
        return wh.rows_in(sql, column, wanted, **q)

    rates = fx_lookup(
        wh.rows(
            "SELECT base, currency, date, rate FROM core.fx_rates WHERE base = :b",
            b=ws.reporting_currency,
        ),
        ws.reporting_currency,
    )
    sink = None if spool is None else (lambda rows: spool.add([dict(vars(r)) for r in rows]))
    b = LedgerBuilder(
        ws.id, ws.reporting_currency, ws.time_zone, rates, sink=sink, sink_every=LEDGER_SPOOL_CHUNK
    )
    charge_sql = (
        "SELECT id, created, amount, currency, status, customer FROM raw.stripe_charges"
        " WHERE workspace_id = :w"
    )
    charges = read(charge_sql, "id", ids("raw.stripe_charges"))
    refunds = read(
        "SELECT id, created, amount, currency, status, charge FROM raw.stripe_refunds"
        " WHERE workspace_id = :w",
        "id",
        ids("raw.stripe_refunds"),
    )
    refunded: list[dict] = []
    if only is not None:
        # A refund's entry reads its charge's tax ratio and customer: those charges come along.
        have = {c["id"] for c in charges}
        refunded = wh.rows_in(
            charge_sql, "id", {r["charge"] for r in refunds if r["charge"]} - have, **q
        )
    payments = read(
        "SELECT p.id, p.charge, i.total, i.total_excluding_tax FROM raw.stripe_invoice_payments p"
        " JOIN raw.stripe_invoices i ON i.workspace_id = p.workspace_id AND i.id = p.invoice"
        " WHERE p.workspace_id = :w AND p.charge IS NOT NULL",
        "p.charge",
        None if only is None else {c["id"] for c in charges} | {c["id"] for c in refunded},
    )
    # Several payments of one charge: the last by id gives the invoice, whatever the read.
    invoice_for_charge: dict[str, dict] = {}
    for r in payments:
        seen = invoice_for_charge.get(r["charge"])
        if seen is None or r["id"] > seen["id"]:
            invoice_for_charge[r["charge"]] = r
    # The charges, refunds and balance transactions are consumed one stream after the other.
    b.stripe(
        charges,
        refunds,
        invoice_for_charge,
        read(
            "SELECT id, created, fee, currency FROM raw.stripe_balance_transactions"
            " WHERE workspace_id = :w",
            "id",
            ids("raw.stripe_balance_transactions"),
        ),
        refunded_charges=refunded,
    )
    b.manual(
        *[
            read(f"SELECT * FROM {t} WHERE workspace_id = :w", "external_id", ids(t))
            for t in MANUAL_TABLES
        ]
    )
    if spool is not None:
        b.flush()
        return []
    # LedgerRow holds scalars only: a shallow copy of its fields is what `asdict` returns, without
    # the recursive deep copy that made this a hotspot of the rebuild.
    return [dict(vars(r)) for r in b.rows]


def _row_count(rows: list[dict] | RowSpool) -> int:
    return rows.count if isinstance(rows, RowSpool) else len(rows)


def _close_spools(
    work: list[tuple[BuildPlan, dict[str, set[str]] | None, list[dict] | RowSpool]],
) -> None:
    """Drop the built rows: lists freed, parked files deleted."""
    for *_, rows in work:
        if isinstance(rows, RowSpool):
            rows.close()
    work.clear()


@dataclass(frozen=True)
class LedgerMismatch:
    """One difference between core.ledger and raw Stripe data for a workspace and currency."""

    workspace_id: str
    currency: str
    what: str
    ledger: str
    raw: str

    def __str__(self) -> str:
        return f"{self.workspace_id} {self.currency}: {self.what}: ledger {self.ledger}, raw {self.raw}"


def reconcile_ledger_with_raw(
    rows: Callable[..., list[dict]], *, sqlite: bool = False
) -> list[LedgerMismatch]:
    """Differences between ledger cash entries and raw Stripe data, per workspace and currency.

    Succeeded charges and refunds must appear once each, and gross revenue must equal the raw
    tax-exclusive charge totals exactly: computed here independently of the ledger code, in
    integer arithmetic, each charge's share rounded once to whole micro-units like a ledger entry.
    `rows(sql, **params)` runs a query, so the check can see an uncommitted rebuild.
    """
    # Each side reads a covering index (sql/0031). Without statistics SQLite prefers the invoices'
    # primary key, which reads every invoice row with its payload: it is named on SQLite.
    invoices = "raw.stripe_invoices i" + (" INDEXED BY stripe_invoices_totals" if sqlite else "")
    # Charges grouped by amount and by their invoice's totals: recurring charges repeat, so the
    # groups are far fewer than the charges, and a group's entries all round alike.
    expected: dict[tuple[str, str], int] = {}
    charges: dict[tuple[str, str], int] = {}
    for r in rows(
        "SELECT c.workspace_id, c.currency, c.amount, i.total, i.total_excluding_tax,"
        " COUNT(*) AS n"
        " FROM raw.stripe_charges c"
        " LEFT JOIN raw.stripe_invoice_payments p ON p.workspace_id = c.workspace_id AND p.charge = c.id"
        f" LEFT JOIN {invoices} ON i.workspace_id = p.workspace_id AND i.id = p.invoice"
        " WHERE c.status = 'succeeded'"
        " GROUP BY c.workspace_id, c.currency, c.amount, i.total, i.total_excluding_tax"
    ):
        key = (r["workspace_id"], r["currency"])
        total, excl = r["total"], r["total_excluding_tax"]
        ratio = Fraction(1) if not total or excl is None else Fraction(int(excl), int(total))
        share = round_half_away(int(r["amount"] or 0) * micros_per_minor(r["currency"]) * ratio)
        expected[key] = expected.get(key, 0) + int(r["n"]) * share
        charges[key] = charges.get(key, 0) + int(r["n"])
    led = {
        (r["workspace_id"], r["currency"]): r
        for r in rows(
            "SELECT workspace_id, currency, COUNT(*) AS n, SUM(amount_micros) AS micros FROM core.ledger"
            " WHERE kind = 'gross_revenue' AND source_table = 'raw.stripe_charges'"
            " GROUP BY workspace_id, currency"
        )
    }
    problems: list[LedgerMismatch] = []
    for key in sorted(set(charges) | set(led)):
        got = led.get(key)
        got_n, got_micros = (0, 0) if got is None else (int(got["n"]), int(got["micros"] or 0))
        if got_n != charges.get(key, 0):
            problems.append(
                LedgerMismatch(*key, "succeeded charges", str(got_n), str(charges.get(key, 0)))
            )
        elif got_micros != expected.get(key, 0):
            problems.append(
                LedgerMismatch(
                    *key, "gross revenue micros", str(got_micros), str(expected.get(key, 0))
                )
            )
    raw_refunds = {
        (r["workspace_id"], r["currency"]): int(r["n"])
        for r in rows(
            "SELECT workspace_id, currency, COUNT(*) AS n FROM raw.stripe_refunds WHERE status = 'succeeded'"
            " GROUP BY workspace_id, currency"
        )
    }
    led_refunds = {
        (r["workspace_id"], r["currency"]): int(r["n"])
        for r in rows(
            "SELECT workspace_id, currency, COUNT(*) AS n FROM core.ledger WHERE kind = 'refund'"
            " AND source_table = 'raw.stripe_refunds' GROUP BY workspace_id, currency"
        )
    }
    for key in sorted(set(raw_refunds) | set(led_refunds)):
        want_n, got_n = raw_refunds.get(key, 0), led_refunds.get(key, 0)
        if want_n != got_n:
            problems.append(LedgerMismatch(*key, "succeeded refunds", str(got_n), str(want_n)))
    return problems


def _mismatch_metadata(mismatches: list[LedgerMismatch]) -> dict:
    """Check metadata finance can act on: which workspace and currency differ, and both totals."""
    lines = ["| workspace | currency | what | ledger | raw |", "|---|---|---|---|---|"] + [
        f"| {m.workspace_id} | {m.currency} | {m.what} | {m.ledger} | {m.raw} |"
        for m in mismatches[:50]
    ]
    return {
        "mismatches": len(mismatches),
        "differences": dg.MetadataValue.md("\n".join(lines)),
        "first": dg.MetadataValue.json(vars(mismatches[0])),
    }


class _ReconciliationFailed(Exception):
    """Raised inside the write transaction to roll the build back when the check fails."""


# The job whose runs rebuild the core tables wholly from raw. Decided from the run's job, not
# from job config: Dagster turns a partitioned job's config into per-partition config, applied
# only to runs with one partition key, so a run over a partition range (a single-run backfill,
# the demo) ran with none of it and built incrementally.
REBUILD_JOB = "rebuild_marts"


class CoreBuildConfig(dg.Config):
    """How a core asset is built: from the changes since its last build, or wholly from raw."""

    full_rebuild: bool | None = Field(
        default=None,
        description="Rebuild every workspace from all of raw instead of only what changed since "
        "the last build (a backfill or a repair; incremental and full give the same rows). Unset: "
        f"full in {REBUILD_JOB} runs, incremental in every other job.",
    )


def _full_rebuild(config: CoreBuildConfig, context: dg.AssetExecutionContext) -> bool:
    """Whether this run rebuilds wholly: the run config's choice, else its job's (the context is
    read only then: the benchmark calls the bodies with an explicit choice and no context)."""
    if config.full_rebuild is not None:
        return config.full_rebuild
    return context.job_name == REBUILD_JOB


def _now() -> int:
    """The build instant (a function, so tests can pin it)."""
    return int(time.time())


def _delete_in(
    wh: Warehouse,
    db: sa.Connection,
    table: str,
    column: str,
    workspace_id: str,
    ids: Collection[str],
) -> int:
    """Delete a workspace's rows whose `column` is one of `ids`; returns rows deleted."""
    todo = sorted(set(ids))
    deleted = 0
    for start in range(0, len(todo), 500):
        chunk = todo[start : start + 500]
        names = {f"i{i}": v for i, v in enumerate(chunk)}
        result = db.execute(
            wh.text(
                f"DELETE FROM {table} WHERE workspace_id = :w"
                f" AND {column} IN ({', '.join(':' + n for n in names)})"
            ),
            {"w": workspace_id, **names},
        )
        deleted += max(result.rowcount or 0, 0)
    return deleted


def _mode(plans: list[BuildPlan]) -> str:
    modes = {p.mode for p in plans}
    return modes.pop() if len(modes) == 1 else ("mixed" if modes else "incremental")


def _plans_md(plans: list[BuildPlan], counts: dict[str, dict[str, int]]) -> str:
    lines = [
        "| workspace | mode | why | objects changed | rows deleted | rows rebuilt |",
        "|---|---|---|---|---|---|",
    ]
    for p in plans:
        c = counts[p.workspace_id]
        lines.append(
            f"| {p.workspace_id} | {p.mode} | {p.reason} | {c['objects']} | {c['deleted']} |"
            f" {c['inserted']} |"
        )
    return "\n".join(lines)


@dg.asset(
    key=["core", "ledger"],
    deps=[dg.AssetKey(["raw", t]) for t in RAW_STRIPE]
    + [
        dg.AssetKey(["raw", t])
        for t in ("manual_revenue", "cost_records", "expense_events", "usage_costs")
    ]
    + [dg.AssetKey(["core", "fx_rates"])],
    group_name="core",
    kinds={"sql", "python"},
    check_specs=[
        dg.AssetCheckSpec(
            "ledger_matches_raw_stripe",
            asset=["core", "ledger"],
            blocking=True,
            description="Succeeded charges and refunds appear once each, and "
            "gross revenue equals raw tax-exclusive charge totals exactly (integer micro-units).",
        )
    ],
)
def ledger(
    context: dg.AssetExecutionContext, config: CoreBuildConfig, warehouse: WarehouseResource
) -> Iterator:
    """One row per money movement (docs/metrics.md §7): tax-exclusive cash revenue, refunds on their
    day, fees and every expense, in native and reporting currency (FX of the local day).

    Incremental: per workspace, only the entries of source objects changed since the last build
    (and of (currency, day)s whose FX rate arrived since) are rebuilt; a full rebuild in a rebuild_marts
    run or when the run config asks, on the first build, or after the reporting currency or time
    zone changed."""
    wh = warehouse.get()
    now = _now()
    full_rebuild = _full_rebuild(config, context)
    plans: list[BuildPlan] = []
    work: list[tuple[BuildPlan, dict[str, set[str]] | None, list[dict] | RowSpool]] = []
    counts: dict[str, dict[str, int]] = {}
    mismatches: list[LedgerMismatch] = []
    try:
        # The build holds every row of the table in memory: see cyclic_gc_paused.
        with cyclic_gc_paused():
            # Read first (watermarks, then changes, then rows), write after, all in one transaction.
            for ws in scoped_workspaces(wh):
                plan = plan_build(
                    wh, ws, "core.ledger", LEDGER_SOURCES, fx=True, force_full=full_rebuild
                )
                changes = None if plan.mode == "full" else ledger_changes(wh, ws, plan)
                rows: list[dict] | RowSpool
                if changes is None:
                    # A full build parks its rows on disk until the write (memory: one chunk).
                    rows = RowSpool()
                    work.append((plan, changes, rows))  # closed below even if the read fails
                    _ledger_rows(wh, ws, None, rows)
                else:
                    rows = _ledger_rows(wh, ws, changes)
                    work.append((plan, changes, rows))
                plans.append(plan)
            with wh.begin() as db:
                wh.lock_windows(db, ("core.ledger",), [p.workspace_id for p in plans])
                for plan, changes, rows in work:
                    if changes is None:
                        deleted = db.execute(
                            wh.text("DELETE FROM core.ledger WHERE workspace_id = :w"),
                            {"w": plan.workspace_id},
                        ).rowcount
                        objects = _row_count(rows)
                    else:
                        deleted = _delete_in(
                            wh,
                            db,
                            "core.ledger",
                            "entry_id",
                            plan.workspace_id,
                            ledger_entry_ids(changes),
                        )
                        objects = sum(len(v) for v in changes.values())
                    # Driver-level insert: SQLAlchemy's per-row parameter processing was a tenth
                    # of a full ledger build.
                    for chunk in rows.chunks() if isinstance(rows, RowSpool) else (rows,):
                        wh.insert(db, "core.ledger", chunk)
                    save_state(db, wh, "core.ledger", plan, now)
                    counts[plan.workspace_id] = {
                        "objects": objects,
                        "deleted": max(deleted or 0, 0),
                        "inserted": _row_count(rows),
                    }
                # Validate the whole table inside the transaction, before it commits: a failed
                # reconciliation rolls the build back, incremental or not, so nothing is written.
                # Only the run's workspaces count: another workspace's broken data must not fail
                # this run.
                mismatches = [
                    m
                    for m in reconcile_ledger_with_raw(
                        lambda sql, **p: wh.read(db, sql, **p), sqlite=wh.is_sqlite
                    )
                    if in_run_scope(m.workspace_id)
                ]
                if mismatches:
                    raise _ReconciliationFailed
            _close_spools(work)  # the rows are written: free them before the metadata queries
    except _ReconciliationFailed:
        yield dg.AssetCheckResult(
            check_name="ledger_matches_raw_stripe",
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata=_mismatch_metadata(mismatches),
        )
        raise dg.Failure(
            f"core.ledger does not reconcile with raw Stripe data for {len(mismatches)} "
            "workspace/currency total(s); nothing was written"
        ) from None
    finally:
        _close_spools(work)  # also when the build failed: the parked files are deleted
    # The whole table's totals per kind, entries without a rate per currency and the row count,
    # from one scan of the table.
    totals: dict[str, int] = {}
    skipped: dict[str, int] = {}
    n_rows = 0
    for r in wh.rows(
        "SELECT kind, currency, COUNT(*) AS n, COUNT(amount_reporting_micros) AS converted,"
        " SUM(amount_reporting_micros) AS total FROM core.ledger GROUP BY kind, currency"
    ):
        n_rows += int(r["n"])
        if r["converted"]:
            totals[r["kind"]] = totals.get(r["kind"], 0) + int(r["total"])
        if int(r["n"]) > int(r["converted"]):
            key = r["currency"]
            skipped[key] = skipped.get(key, 0) + int(r["n"]) - int(r["converted"])
    totals = dict(sorted(totals.items()))
    skipped = dict(sorted(skipped.items()))
    yield dg.MaterializeResult(
        metadata={
            "rows": n_rows,
            **table_metadata(dg.AssetKey(["core", "ledger"]), n_rows),
            "mode": _mode(plans),
            "objects_changed": sum(c["objects"] for c in counts.values()),
            "rows_deleted": sum(c["deleted"] for c in counts.values()),
            "rows_rebuilt": sum(c["inserted"] for c in counts.values()),
            "workspaces": dg.MetadataValue.md(_plans_md(plans, counts)),
            **{f"total_{k}_reporting_micros": v for k, v in sorted(totals.items())},
            "skipped_currencies": dg.MetadataValue.json(skipped),
        }
    )
    yield dg.AssetCheckResult(
        check_name="ledger_matches_raw_stripe",
        passed=True,
        metadata={"checked_at": int(time.time()), "mismatches": 0},
    )


@dg.asset(
    key=["core", "subscription_history"],
    deps=[
        dg.AssetKey(["raw", t])
        for t in (
            "stripe_subscriptions",
            "stripe_subscription_items",
            "stripe_events",
            "stripe_invoice_lines",
            "stripe_prices",
            "stripe_invoices",
            "stripe_invoice_payments",
            "stripe_charges",
        )
    ],
    group_name="core",
    kinds={"sql", "python"},
)
def subscription_history(
    context: dg.AssetExecutionContext, config: CoreBuildConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Each subscription item's state over time (price, quantity, status, trial, pause, discounts,
    scheduled cancellation) as half-open intervals, from events, the synced state and invoices (§4).

    Incremental: only the subscriptions of customers with a changed subscription, item, event,
    invoice, line, payment or charge (or a changed price they name), and those whose history was
    valid only until a past instant, are rebuilt; a full rebuild in a rebuild_marts run, when the run config asks, or on the first
    build."""
    # The build holds every subscription's inputs and rows in memory: see cyclic_gc_paused.
    with cyclic_gc_paused():
        return _build_subscription_history(warehouse.get(), _full_rebuild(config, context))


def _build_subscription_history(wh: Warehouse, full_rebuild: bool) -> dg.MaterializeResult:
    """The body of `subscription_history`: plan, read, build and write every workspace."""
    now = _now()
    plans: list[BuildPlan] = []
    work: list[tuple[BuildPlan, set[str] | None, RowSpool, RowSpool, int]] = []
    n_subs = 0
    try:
        for ws in scoped_workspaces(wh):
            plan = plan_build(
                wh,
                ws,
                "core.subscription_history",
                HISTORY_SOURCES,
                fx=False,
                force_full=full_rebuild,
            )
            changed = None if plan.mode == "full" else history_changes(wh, ws, plan, now)
            rows, due = RowSpool(), RowSpool()
            plans.append(plan)
            work.append((plan, changed, rows, due, 0))
            built = 0
            # Raw inputs (payloads, invoices, lines) are read and built a batch of customers at a
            # time; the batch's history rows are parked on disk until the one write transaction,
            # so memory is bounded by a batch, not by the workspace.
            for batch in customer_batches(wh, ws.id, changed, HISTORY_BATCH_CUSTOMERS):
                batch_rows: list[dict] = []
                batch_due: list[dict] = []
                for inp in load_history_inputs(wh, ws.id, batch):
                    states, due_at = build_history_until(inp, now)
                    batch_rows += history_rows(states)
                    if due_at is not None:
                        batch_due.append(
                            {
                                "workspace_id": ws.id,
                                "subscription_id": inp.subscription["id"],
                                "due_at": due_at,
                            }
                        )
                    n_subs += 1
                    built += bool(states)
                rows.add(batch_rows)
                due.add(batch_due)
                del batch_rows, batch_due
            work[-1] = (plan, changed, rows, due, built)
        counts: dict[str, dict[str, int]] = {}
        with wh.begin() as db:
            wh.lock_windows(
                db, ("core.subscription_history",), [plan.workspace_id for plan, *_ in work]
            )
            for plan, changed, rows, due, built in work:
                w = plan.workspace_id
                if changed is None:
                    deleted = db.execute(
                        wh.text("DELETE FROM core.subscription_history WHERE workspace_id = :w"),
                        {"w": w},
                    ).rowcount
                    db.execute(
                        wh.text(
                            "DELETE FROM core.subscription_history_due WHERE workspace_id = :w"
                        ),
                        {"w": w},
                    )
                    objects = built
                else:
                    deleted = _delete_in(
                        wh, db, "core.subscription_history", "subscription_id", w, changed
                    )
                    _delete_in(
                        wh, db, "core.subscription_history_due", "subscription_id", w, changed
                    )
                    objects = len(changed)
                for chunk in rows.chunks():
                    wh.insert(db, "core.subscription_history", chunk)
                for chunk in due.chunks():
                    wh.insert(db, "core.subscription_history_due", chunk)
                save_state(db, wh, "core.subscription_history", plan, now)
                counts[w] = {
                    "objects": objects,
                    "deleted": max(deleted or 0, 0),
                    "inserted": rows.count,
                }
    finally:
        for _plan, _changed, rows, due, _built in work:
            rows.close()
            due.close()
    n_rows = int(wh.scalar("SELECT COUNT(*) FROM core.subscription_history") or 0)
    return dg.MaterializeResult(
        metadata={
            "subscriptions": n_subs,
            "rows": n_rows,
            **table_metadata(dg.AssetKey(["core", "subscription_history"]), n_rows),
            "mode": _mode(plans),
            "objects_changed": sum(c["objects"] for c in counts.values()),
            "rows_deleted": sum(c["deleted"] for c in counts.values()),
            "rows_rebuilt": sum(c["inserted"] for c in counts.values()),
            "workspaces": dg.MetadataValue.md(_plans_md(plans, counts)),
        }
    )
