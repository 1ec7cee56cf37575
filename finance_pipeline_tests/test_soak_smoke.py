"""bench/soak.py at a tiny size, so the soak does not rot: its correctness checks must hold (no
5xx, every accepted ingest stored exactly once, the refresh and close runs succeeded); its timing targets
(p99, memory growth) are reported, not asserted (they belong to the full run, bench/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.postgres
@pytest.mark.slow
def test_soak_smoke_correctness(pg_admin: sa.Engine, tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "soak.py"),
            "--customers", "10", "--months", "2",
            "--seconds", "20", "--unloaded-seconds", "5", "--warmup-seconds", "2",
            "--read-rate", "10", "--ingest-rate", "3", "--export-every", "10",
            "--executor", "in_process", "--drain-seconds", "300",
            "--no-timing-targets", "--json", str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    doc = json.loads(out.read_text())
    targets = doc["targets"]
    for name in ("zero_5xx", "ingest_exactly_once", "runs_succeeded"):
        assert targets[name]["ok"], (name, targets[name])
    ingest = doc["ingest"]
    # The load really ingested, retried keys and resent rows: the check had something to check.
    assert ingest["accepted_rows"] > 0
    assert ingest["stored_rows"] == ingest["accepted_rows"]
    assert ingest["lost"] == ingest["stored_more_than_once"] == 0
    assert ingest["replays"] > 0
    assert doc["errors"]["5xx"] == 0
    # Exports are rendered by runs the daemon launches: how many finish within the drain depends
    # on the machine's load (bench/README.md), so only "every completed export was downloaded".
    assert doc["exports"]["requested"] > 0
    assert doc["exports"]["downloaded"] == doc["exports"]["completed"]
    roles = {m["role"] for m in doc["memory"]}
    assert {"api", "standin", "daemon"} <= roles
    assert any(r.startswith("run:daily_refresh") for r in roles)
    assert doc["soak"]["by_kind"]["read"]["p99_ms"] is not None
    # Nothing of the soak's is left behind: its databases are dropped.
    with pg_admin.connect() as c:
        left = c.execute(
            sa.text("SELECT datname FROM pg_database WHERE datname LIKE 'fp_soak_%'")
        ).all()
    assert not {r[0] for r in left} & set(doc["databases"]), left
