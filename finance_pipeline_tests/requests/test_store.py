"""Pipeline request rows on SQLite and PostgreSQL: validation names the field, today is clamped to
yesterday, a claim is won once, finishing keeps the first outcome, batches coalesce."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime

import pytest

from finance_pipeline.partitions import daily_partitions, last_daily_partition
from finance_pipeline.requests.store import (
    PipelineRequestError,
    WorkspaceNotFound,
    claim,
    finish,
    get_request,
    list_requests,
    pending_requests,
    plan_batches,
    request_refresh,
    request_sync,
)
from finance_pipeline.tenancy import connect_stripe, create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse

NOW = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)  # yesterday (UTC) is 2026-03-09


@pytest.fixture
def wh(warehouse: Warehouse) -> Warehouse:
    org = create_organization(warehouse, "Org", org_id="org1")
    create_workspace(warehouse, org, "One", workspace_id="ws1")
    create_workspace(warehouse, org, "Two", workspace_id="ws2")
    return warehouse


def test_the_last_partition_is_yesterday_in_utc() -> None:
    for now in (NOW, datetime(2026, 3, 10, 0, 0, 1, tzinfo=UTC), datetime(2026, 3, 9, 23, 59)):
        now = now.replace(tzinfo=UTC)
        expected = daily_partitions.get_partition_keys(current_time=now)[-1]
        assert last_daily_partition(now).isoformat() == expected


def test_refresh_request_is_queued(wh: Warehouse) -> None:
    rid = request_refresh(
        wh, "ws1", date(2026, 3, 1), "2026-03-05", reason="late invoice", requested_by="u1", now=NOW
    )
    row = get_request(wh, rid)
    assert rid.startswith("refresh_") and row is not None
    assert (row["kind"], row["workspace_id"], row["status"], row["requested_by"]) == (
        "refresh",
        "ws1",
        "queued",
        "u1",
    )
    assert (row["first_day"], row["last_day"], row["reason"]) == (
        date(2026, 3, 1),
        date(2026, 3, 5),
        "late invoice",
    )
    assert row["run_id"] is None and row["started_at"] is None and row["created_at"] > 0
    assert [r["id"] for r in pending_requests(wh)] == [rid]
    assert pending_requests(wh, "ws2") == [] and [r["id"] for r in list_requests(wh, "ws1")] == [
        rid
    ]


def test_today_is_clamped_to_yesterday_and_noted(wh: Warehouse) -> None:
    rid = request_refresh(wh, "ws1", date(2026, 3, 8), date(2026, 3, 10), reason="now", now=NOW)
    row = get_request(wh, rid) or {}
    assert row["last_day"] == date(2026, 3, 9)
    assert row["reason"] == (
        "now (last_day 2026-03-10 clamped to 2026-03-09: its partition does not exist yet)"
    )


@pytest.mark.parametrize(
    ("first", "last", "field", "words"),
    [
        (date(2026, 3, 5), date(2026, 3, 1), "first_day", "after last_day"),
        (date(2022, 12, 31), date(2023, 1, 5), "first_day", "before the history start"),
        (date(2026, 3, 10), date(2026, 3, 10), "first_day", "latest day a refresh can cover"),
        (date(2026, 3, 1), date(2026, 4, 1), "last_day", "in the future"),
        ("2026-3-1", date(2026, 3, 1), "first_day", "YYYY-MM-DD"),
    ],
)
def test_bad_days_name_the_field(
    wh: Warehouse, first: date | str, last: date, field: str, words: str
) -> None:
    with pytest.raises(PipelineRequestError, match=words) as err:
        request_refresh(wh, "ws1", first, last, reason="r", now=NOW)
    assert err.value.field == field and str(err.value).startswith(f"{field}: ")
    assert pending_requests(wh) == []


def test_unknown_workspace_missing_reason_and_unconnected_sync(wh: Warehouse) -> None:
    with pytest.raises(WorkspaceNotFound, match="no workspace 'nope'") as err:
        request_refresh(wh, "nope", date(2026, 3, 1), date(2026, 3, 1), reason="r", now=NOW)
    assert err.value.field == "workspace_id" and isinstance(err.value, ValueError)
    with pytest.raises(PipelineRequestError, match="reason"):
        request_refresh(wh, "ws1", date(2026, 3, 1), date(2026, 3, 1), reason=" ", now=NOW)
    with pytest.raises(WorkspaceNotFound):
        request_sync(wh, "nope", reason="r")
    with pytest.raises(PipelineRequestError, match="no active Stripe connection"):
        request_sync(wh, "ws1", reason="r")


def test_sync_request(wh: Warehouse) -> None:
    connect_stripe(wh, "ws1", account_id="acct_1", livemode=False, api_key="sk_test_x")
    sid = request_sync(wh, "ws1", reason="new key")
    row = get_request(wh, sid) or {}
    assert sid.startswith("sync_") and row["kind"] == "stripe_sync" and row["status"] == "queued"
    assert row["first_day"] is None and row["last_day"] is None


def test_a_claim_is_won_once_even_in_a_race(wh: Warehouse) -> None:
    ids = [
        request_refresh(wh, "ws1", date(2026, 3, d), date(2026, 3, d), reason="r", now=NOW)
        for d in (1, 2, 3)
    ]
    won: dict[str, list[str]] = {}
    barrier = threading.Barrier(2)

    def claimer(name: str) -> None:
        barrier.wait()
        won[name] = claim(wh, ids, run_id=f"run-{name}")

    threads = [threading.Thread(target=claimer, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won["a"] + won["b"]) == sorted(ids)  # each request won exactly once
    for name, got in won.items():
        for rid in got:
            row = get_request(wh, rid) or {}
            assert (row["status"], row["run_id"]) == ("running", f"run-{name}")
            assert row["started_at"] is not None
    assert claim(wh, ids) == []


def test_finish_keeps_the_first_outcome(wh: Warehouse) -> None:
    rid = request_refresh(wh, "ws1", date(2026, 3, 1), date(2026, 3, 1), reason="r", now=NOW)
    assert claim(wh, [rid]) == [rid]
    assert finish(wh, [rid], "failed", run_id="r1", error="boom") == [rid]
    assert finish(wh, [rid], "succeeded", run_id="r2") == []
    row = get_request(wh, rid) or {}
    assert (row["status"], row["run_id"], row["error"]) == ("failed", "r1", "boom")
    assert row["finished_at"] is not None and pending_requests(wh) == []
    with pytest.raises(PipelineRequestError, match="status"):
        finish(wh, [rid], "running")


def test_deleting_the_workspace_deletes_its_requests(wh: Warehouse) -> None:
    rid = request_refresh(wh, "ws2", date(2026, 3, 1), date(2026, 3, 1), reason="r", now=NOW)
    with wh.begin() as db:
        db.execute(wh.text("DELETE FROM app.workspaces WHERE id = 'ws2'"))
    assert get_request(wh, rid) is None


def test_refreshes_coalesce_into_one_batch_over_the_union_of_days() -> None:
    rows = [
        {
            "id": "refresh_b",
            "kind": "refresh",
            "first_day": date(2026, 3, 4),
            "last_day": date(2026, 3, 6),
        },
        {
            "id": "refresh_a",
            "kind": "refresh",
            "first_day": date(2026, 2, 1),
            "last_day": date(2026, 2, 2),
        },
        {"id": "sync_a", "kind": "stripe_sync", "first_day": None, "last_day": None},
    ]
    refresh, sync = plan_batches(rows, NOW)
    assert (refresh.kind, refresh.job_name, refresh.request_ids) == (
        "refresh",
        "requested_refresh",
        ("refresh_a", "refresh_b"),
    )
    assert (refresh.first_day, refresh.last_day) == (date(2026, 2, 1), date(2026, 3, 6))
    assert (sync.job_name, sync.request_ids) == ("daily_refresh", ("sync_a",))
    assert (sync.first_day, sync.last_day) == (date(2026, 3, 7), date(2026, 3, 9))
    # The run key depends on the set of requests only.
    [again] = plan_batches(rows[1::-1], NOW)[:1]
    assert again.run_key == refresh.run_key and refresh.run_key != sync.run_key
    assert plan_batches([], NOW) == []


def test_a_succeeded_sync_records_its_counters(wh: Warehouse) -> None:
    """The invoices written from the claim on count (not older ones, not another workspace's);
    a refresh and a failed sync record none."""
    connect_stripe(wh, "ws1", account_id="acct_1", livemode=False, api_key="sk_test_x")
    connect_stripe(wh, "ws2", account_id="acct_2", livemode=False, api_key="sk_test_y")
    sid, other = request_sync(wh, "ws1", reason="r"), request_sync(wh, "ws2", reason="r")
    assert claim(wh, [sid, other]) == [sid, other]
    started = int((get_request(wh, sid) or {})["started_at"])
    march_1, march_2 = 1772366400, 1772452800  # 2026-03-01 and -02, 12:00 UTC
    invoices = [
        ("ws1", "in_1", "cus_a", "usd", march_1, started),
        ("ws1", "in_2", "cus_b", "eur", march_1, started),  # EUR has a rate on March 1
        ("ws1", "in_3", "cus_b", "eur", march_2, started),  # but not on March 2: skipped
        ("ws1", "in_old", "cus_c", "gbp", march_1, started - 10),  # written by an earlier sync
        ("ws2", "in_9", "cus_z", "gbp", march_1, started),  # another workspace
    ]
    with wh.begin() as db:
        db.execute(
            wh.text(
                "INSERT INTO raw.stripe_invoices (workspace_id, id, account_id, livemode, customer,"
                " status, currency, created, payload, synced_at)"
                " VALUES (:w, :i, 'acct', FALSE, :c, 'open', :cur, :cr, '{}', :s)"
            ),
            [dict(zip(("w", "i", "c", "cur", "cr", "s"), v, strict=True)) for v in invoices],
        )
        db.execute(
            wh.text(
                "INSERT INTO core.fx_rates (base, currency, date, rate)"
                " VALUES ('usd', 'eur', '2026-03-01', '1.08')"
            )
        )
    assert finish(wh, [sid, other], "succeeded", run_id="r", duration_ms=4521) == [sid, other]
    assert (get_request(wh, sid) or {})["result_json"] == {
        "customersProcessed": 2, "periodsUpdated": 2, "autoMatchesCreated": 0,
        "invoicesFetched": 3, "invoicesSkipped": 1, "skippedCurrencies": {"eur": 1},
        "durationMs": 4521, "inserted": 4, "duplicates": 0,
    }  # fmt: skip
    assert (get_request(wh, other) or {})["result_json"]["skippedCurrencies"] == {"gbp": 1}
    rid = request_refresh(wh, "ws1", date(2026, 3, 1), date(2026, 3, 1), reason="r", now=NOW)
    failed = request_sync(wh, "ws1", reason="r")
    finish(wh, [rid], "succeeded")
    finish(wh, [failed], "failed", error="boom")
    assert (get_request(wh, rid) or {})["result_json"] is None
    assert (get_request(wh, failed) or {})["result_json"] is None


def _raw_object(wh: Warehouse, table: str, object_id: str, synced_at: int) -> None:
    """Upsert a bare Stripe object of ws1 as a sync writes it (synced_at stamps the write)."""
    with wh.begin() as db:
        db.execute(
            wh.text(f"DELETE FROM {table} WHERE workspace_id = 'ws1' AND id = :i"), {"i": object_id}
        )
        db.execute(
            wh.text(
                f"INSERT INTO {table} (workspace_id, id, account_id, livemode, created, payload,"
                " synced_at) VALUES ('ws1', :i, 'acct', FALSE, 1000, '{}', :s)"
            ),
            {"i": object_id, "s": synced_at},
        )


def test_a_sync_counts_the_objects_it_inserted_and_the_ones_it_read_again(wh: Warehouse) -> None:
    """The v1 Stripe ingest's counters: inserted = objects of the four kinds new since the claim;
    duplicates = objects the sync wrote that were stored before it (seed 004)."""
    connect_stripe(wh, "ws1", account_id="acct_1", livemode=False, api_key="sk_test_x")
    for table, object_id in [
        ("raw.stripe_invoices", "in_1"),
        ("raw.stripe_invoices", "in_2"),
        ("raw.stripe_charges", "ch_1"),
        ("raw.stripe_credit_notes", "cn_1"),  # not one of the ingest's kinds
    ]:
        _raw_object(wh, table, object_id, 1000)
    sid = request_sync(wh, "ws1", reason="r")
    assert claim(wh, [sid]) == [sid]
    row = get_request(wh, sid) or {}
    assert row["stripe_objects_at_claim"] == 3
    started = int(row["started_at"])
    for table, object_id in [
        ("raw.stripe_invoices", "in_1"),  # read again
        ("raw.stripe_charges", "ch_1"),  # read again
        ("raw.stripe_refunds", "re_1"),  # new
        ("raw.stripe_subscriptions", "sub_1"),  # new
        ("raw.stripe_credit_notes", "cn_2"),  # new, but not counted
    ]:
        _raw_object(wh, table, object_id, started)
    finish(wh, [sid], "succeeded", run_id="r")
    result = (get_request(wh, sid) or {})["result_json"]
    assert (result["inserted"], result["duplicates"]) == (2, 2)
    # A refresh has no baseline.
    rid = request_refresh(wh, "ws1", date(2026, 3, 1), date(2026, 3, 1), reason="r", now=NOW)
    claim(wh, [rid])
    assert (get_request(wh, rid) or {})["stripe_objects_at_claim"] is None


def test_a_sync_whose_counting_fails_still_succeeds(
    wh: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    import finance_pipeline.requests.store as store

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("no counters")

    monkeypatch.setattr(store, "sync_result", broken)
    connect_stripe(wh, "ws1", account_id="acct_1", livemode=False, api_key="sk_test_x")
    sid = request_sync(wh, "ws1", reason="r")
    assert finish(wh, [sid], "succeeded", run_id="r") == [sid]
    row = get_request(wh, sid) or {}
    assert (row["status"], row["result_json"]) == ("succeeded", None)
