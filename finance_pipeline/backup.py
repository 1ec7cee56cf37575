"""Backup and restore of a production deployment's two PostgreSQL databases: the warehouse
(FP_WAREHOUSE_URL) and the Dagster storage (DAGSTER_PG_*), with pg_dump's custom format
(docs/reliability.md). A backup is written aside and renamed into place, so a folder that exists
is complete; a restore checks the dumps' digests and goes only into empty databases, each in one
transaction, so a failed restore leaves the target as it was."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

DUMPS = ("warehouse", "dagster")
MANIFEST = "manifest.json"


class BackupError(RuntimeError):
    """A backup or restore cannot proceed; the message says why."""


@dataclass(frozen=True)
class Databases:
    """The libpq URLs of the two databases (what pg_dump and pg_restore take)."""

    warehouse: str
    dagster: str

    def url(self, name: str) -> str:
        return self.warehouse if name == "warehouse" else self.dagster


def libpq_url(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL (`postgresql+psycopg://...`) as libpq reads it."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise BackupError(f"backups are of PostgreSQL databases, not {parsed.get_backend_name()}")
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def dagster_storage_url() -> str:
    """The Dagster storage database of the production dagster.yaml (DAGSTER_PG_* variables)."""
    missing = [
        v for v in ("DAGSTER_PG_USER", "DAGSTER_PG_HOST", "DAGSTER_PG_DB") if not os.environ.get(v)
    ]
    if missing:
        raise BackupError(f"the Dagster storage needs {', '.join(missing)} set")
    url = sa.engine.URL.create(
        "postgresql",
        username=os.environ["DAGSTER_PG_USER"],
        password=os.environ.get("DAGSTER_PG_PASSWORD") or None,
        host=os.environ["DAGSTER_PG_HOST"],
        port=5432,
        database=os.environ["DAGSTER_PG_DB"],
    )
    return url.render_as_string(hide_password=False)


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BackupError(f"{name} is not installed (Debian package postgresql-client)")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _run(args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        # The URL (which may hold a password) is never echoed: only the tool and its message.
        raise BackupError(f"{Path(args[0]).name} failed: {done.stderr.strip()[-2000:]}")


def backup(dest: Path, dbs: Databases) -> dict[str, Any]:
    """Dump both databases into the new folder `dest`; returns the manifest written there."""
    dest = Path(dest)
    if dest.exists():
        raise BackupError(f"{dest} exists: a backup goes into a new folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    partial.mkdir()
    try:
        files: dict[str, Any] = {}
        # The Dagster storage first: a run that ends between the two dumps then shows as still
        # running (its writes may be in the warehouse dump); re-running the last refresh after a
        # restore settles both (docs/reliability.md).
        for name in ("dagster", "warehouse"):
            path = partial / f"{name}.dump"
            _run(
                [_tool("pg_dump"), "--format=custom", "--no-owner", f"--file={path}", dbs.url(name)]
            )
            files[name] = {"file": path.name, "bytes": path.stat().st_size, "sha256": _sha256(path)}
        manifest = {"created_at": int(time.time()), "format": "pg_dump custom", "dumps": files}
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        partial.rename(dest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return manifest


def _user_tables(url: str) -> int:
    engine = sa.create_engine(sa.engine.make_url(url).set(drivername="postgresql+psycopg"))
    try:
        with engine.connect() as c:
            return int(
                c.execute(
                    sa.text(
                        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema"
                        " NOT IN ('pg_catalog', 'information_schema')"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def restore(src: Path, dbs: Databases) -> dict[str, Any]:
    """Restore a backup folder into the two (empty) databases; returns its manifest."""
    src = Path(src)
    try:
        manifest = json.loads((src / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{src} is not a backup folder (no readable {MANIFEST})") from exc
    for name in DUMPS:
        entry = manifest["dumps"][name]
        if _sha256(src / entry["file"]) != entry["sha256"]:
            raise BackupError(f"{entry['file']} does not match its digest in {MANIFEST}")
    for name in DUMPS:
        if _user_tables(dbs.url(name)):
            raise BackupError(f"the {name} database is not empty: restore into a new database")
    for name in DUMPS:
        dump = str(src / manifest["dumps"][name]["file"])
        options = ["--no-owner", "--exit-on-error", "--single-transaction"]
        _run([_tool("pg_restore"), *options, f"--dbname={dbs.url(name)}", dump])
    return manifest
