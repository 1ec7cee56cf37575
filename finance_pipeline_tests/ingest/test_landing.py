"""Landing folder: whole-file validation, rejection with nothing written, idempotent re-ingest,
the Dagster asset and its sensor (on SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from finance_pipeline.definitions import defs
from finance_pipeline.ingest.landing import pending_files, process_file
from finance_pipeline.ingest.landing_assets import landing_files, landing_folder_sensor
from finance_pipeline.resources import WarehouseResource
from finance_pipeline.settings import get_settings
from finance_pipeline.tenancy import create_organization, create_workspace
from finance_pipeline.warehouse import Warehouse

COSTS = (
    "external_id,name,amount,currency,category,is_recurring,note,date,customer_tag\n"
    "c1,Vercel Pro,20.00,USD,INFRASTRUCTURE,true,,2024-01-15,\n"
    "c2,OpenAI,1500,JPY,THIRD_PARTY,false,tokens,2024-01-16,acme\n"
)
BAD_COSTS = (
    "external_id,name,amount,currency,category,is_recurring,note,date,customer_tag\n"
    "c3,Good row,10.00,USD,TOOLS,false,,2024-02-01,\n"
    "c4,Bad amount,12,50,USD,TOOLS,false,,2024-02-01,\n"
    "c5,Bad category,5.00,USD,SNACKS,false,,2024-02-30,\n"
)


def _setup(wh: Warehouse) -> tuple[Path, Path]:
    org = create_organization(wh, "Acme")
    create_workspace(wh, org, "Acme", workspace_id="ws_a")
    root = get_settings().resolved_landing_dir
    (root / "ws_a").mkdir(parents=True)
    return root, root / "ws_a"


def test_good_file_is_ingested_exactly_and_moved(warehouse: Warehouse) -> None:
    root, folder = _setup(warehouse)
    (folder / "costs_jan.csv").write_text(COSTS)
    out = process_file(warehouse, folder / "costs_jan.csv", root)
    assert (out.status, out.kind, out.inserted, out.duplicates) == ("accepted", "costs", 2, 0)
    rows = warehouse.rows(
        "SELECT external_id, amount_micros, currency, category, is_recurring, customer_tag"
        " FROM raw.cost_records ORDER BY external_id"
    )
    assert [
        (r["external_id"], r["amount_micros"], r["currency"], r["customer_tag"]) for r in rows
    ] == [
        ("c1", 20_000_000, "usd", None),
        ("c2", 1_500_000_000, "jpy", "acme"),  # JPY is zero-decimal: 1500 yen exactly
    ]
    assert (folder / "processed" / "costs_jan.csv").exists() and pending_files(root) == []


def test_bad_file_is_rejected_whole_with_a_report(warehouse: Warehouse) -> None:
    root, folder = _setup(warehouse)
    (folder / "costs_feb.csv").write_text(BAD_COSTS)
    out = process_file(warehouse, folder / "costs_feb.csv", root)
    assert out.status == "rejected"
    assert warehouse.scalar("SELECT COUNT(*) FROM raw.cost_records") == 0  # not even the good row
    report = (folder / "rejected" / "costs_feb.csv.errors.txt").read_text()
    assert "line 3" in report and "line 4" in report and "line 2" not in report
    assert "SNACKS" in report and "2024-02-30" in report
    receipt = warehouse.rows("SELECT status, kind FROM raw.landing_files")
    assert receipt == [{"status": "rejected", "kind": "costs"}]


def test_reingest_is_idempotent_and_keeps_stored_rows(warehouse: Warehouse) -> None:
    root, folder = _setup(warehouse)
    (folder / "costs_a.csv").write_text(COSTS)
    process_file(warehouse, folder / "costs_a.csv", root)
    # Same content again under another name: the file is a duplicate receipt, nothing changes.
    (folder / "costs_b.csv").write_text(COSTS)
    assert process_file(warehouse, folder / "costs_b.csv", root).status == "duplicate"
    # Overlapping ids with different content: stored rows are kept, the new id is added.
    (folder / "costs_c.csv").write_text(
        COSTS.splitlines()[0] + "\nc1,Renamed,99.00,USD,TOOLS,false,,2024-01-15,\n"
        "c9,New,1.00,USD,OTHER,false,,2024-01-20,\n"
    )
    out = process_file(warehouse, folder / "costs_c.csv", root)
    assert (out.inserted, out.duplicates) == (1, 1)
    names = dict(
        warehouse.rows("SELECT external_id, name FROM raw.cost_records")[i].values()
        for i in range(3)
    )
    assert names == {"c1": "Vercel Pro", "c2": "OpenAI", "c9": "New"}


def test_workspace_files_in_root_or_unknown_folder_are_rejected(
    sqlite_warehouse: Warehouse,
) -> None:
    root, _ = _setup(sqlite_warehouse)
    (root / "costs_root.csv").write_text(COSTS)
    out = process_file(sqlite_warehouse, root / "costs_root.csv", root)
    assert out.status == "rejected" and "landing/<workspace_id>/" in out.errors[0]
    (root / "ws_nope").mkdir()
    (root / "ws_nope" / "costs_x.csv").write_text(COSTS)
    out = process_file(sqlite_warehouse, root / "ws_nope" / "costs_x.csv", root)
    assert out.status == "rejected" and "not a known workspace" in out.errors[0]
    assert sqlite_warehouse.scalar("SELECT COUNT(*) FROM raw.cost_records") == 0


def test_fx_files_are_global_and_exact(sqlite_warehouse: Warehouse) -> None:
    root, _ = _setup(sqlite_warehouse)
    root.mkdir(exist_ok=True)
    (root / "fx_rates_2024.csv").write_text(
        "date,currency,rate,base\n2024-01-15,eur,1.0873125,usd\n"
    )
    assert process_file(sqlite_warehouse, root / "fx_rates_2024.csv", root).status == "accepted"
    assert sqlite_warehouse.rows("SELECT base, currency, rate FROM raw.fx_rates") == [
        {"base": "usd", "currency": "eur", "rate": "1.0873125"}
    ]


def test_asset_materializes_and_fails_clearly_on_rejection(sqlite_warehouse: Warehouse) -> None:
    _root, folder = _setup(sqlite_warehouse)
    (folder / "costs_ok.csv").write_text(COSTS)
    (folder / "costs_bad.csv").write_text(BAD_COSTS)
    resources = {
        "warehouse": WarehouseResource(url=str(sqlite_warehouse.url.render_as_string(False)))
    }
    result = dg.materialize([landing_files], resources=resources, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "1 landed file(s) rejected" in failure.step_failure_data.error.message
    assert sqlite_warehouse.scalar("SELECT COUNT(*) FROM raw.cost_records") == 2


def test_sensor_requests_one_run_for_new_files_and_skips_when_empty(
    sqlite_warehouse: Warehouse,
) -> None:
    _root, folder = _setup(sqlite_warehouse)
    with dg.instance_for_test() as instance:
        ctx = dg.build_sensor_context(instance=instance, definitions=defs)
        skip = landing_folder_sensor(ctx)
        assert isinstance(skip, dg.SkipReason) and "no new files" in skip.skip_message
        (folder / "costs_ok.csv").write_text(COSTS)
        res = landing_folder_sensor(dg.build_sensor_context(instance=instance, definitions=defs))
        [req] = res.run_requests
        assert req.run_config["ops"]["landing_files"]["config"]["files"] == [
            str(folder / "costs_ok.csv")
        ]
        again = landing_folder_sensor(dg.build_sensor_context(instance=instance, definitions=defs))
        assert again.run_requests[0].run_key == req.run_key  # same files -> same key: no second run


def test_sensor_reports_a_misconfigured_landing_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bogus = tmp_path / "not_a_dir"
    bogus.write_text("x")
    monkeypatch.setenv("FP_LANDING_DIR", str(bogus))
    get_settings.cache_clear()
    with dg.instance_for_test() as instance:
        res = landing_folder_sensor(dg.build_sensor_context(instance=instance))
    assert isinstance(res, dg.SkipReason) and "not a folder" in res.skip_message


@pytest.mark.parametrize("folder_name", ["processed", "rejected"])
def test_ingest_file_refuses_files_already_handled_and_moves_nothing(
    sqlite_warehouse: Warehouse, folder_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from finance_pipeline.cli import main

    root, folder = _setup(sqlite_warehouse)
    (folder / "costs_x.csv").write_text(COSTS if folder_name == "processed" else BAD_COSTS)
    assert process_file(sqlite_warehouse, folder / "costs_x.csv", root).status != "duplicate"
    handled = folder / folder_name / "costs_x.csv"
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    assert main(["ingest-file", str(handled)]) == 2
    err = capsys.readouterr().err
    assert f"in {folder_name}/" in err and "nothing was moved" in err and err.count("\n") == 1
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before
    with pytest.raises(ValueError, match=f"in {folder_name}/"):
        process_file(sqlite_warehouse, handled, root)
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_a_rejected_file_fails_the_run_and_no_retry_turns_it_green() -> None:
    from dagster._daemon.auto_run_reexecution.auto_run_reexecution import should_retry

    from finance_pipeline.resources import warehouse_for

    wh = warehouse_for(get_settings().resolved_warehouse_url)  # the one the job's resource opens
    _root, folder = _setup(wh)
    (folder / "costs_bad.csv").write_text(BAD_COSTS)
    job = defs.resolve_job_def("ingest_landing_files")
    # What the sensor asks for: the listed files; a run retry re-executes the same config.
    config = {"ops": {"landing_files": {"config": {"files": [str(folder / "costs_bad.csv")]}}}}
    overrides = {"run_retries": {"enabled": True, "max_retries": 3}}
    with dg.instance_for_test(overrides=overrides) as instance:
        for attempt in ("first run", "re-execution"):
            result = job.execute_in_process(
                run_config=config, instance=instance, raise_on_error=False
            )
            assert not result.success, attempt
            failure = next(e for e in result.all_events if e.is_step_failure)
            message = failure.step_failure_data.error.message
            assert "costs_bad.csv" in message, attempt
            assert "rejected/costs_bad.csv.errors.txt" in message, attempt
            assert "line 3" in message, attempt  # the first bad row, as in the report
            run = instance.get_run_by_id(result.run_id)
            assert not should_retry(run, instance), attempt  # the daemon leaves it failed
    assert wh.scalar("SELECT COUNT(*) FROM raw.cost_records") == 0
