"""Probe beside a running soak (bench/soak.py): where the CPU goes and what the API's database
sessions wait on, second by second, as counts that do not depend on how loaded the machine is.

Every second, per class of process (the API's workers, the soak's run processes, the daemon and
its runs, the soak's client, and the PostgreSQL backends serving each of them, told apart by the
client process at the other end of their socket), the CPU time spent (`/proc/<pid>/task/*/
schedstat`, ns) and the time spent runnable but waiting for a CPU (run_delay). Ten times a second,
the wait event of every active backend of the soak's databases (pg_stat_activity): `CPU` when it
is running, else Lock / LWLock / IO / ... by name.

    uv run python bench/soak_probe.py --out /tmp/probe.jsonl &      # then start the soak
    uv run python bench/soak_probe.py --summary /tmp/probe.jsonl --runs <soak workdir>

One JSON line per second: {"t", "cpu_ms": {class: ms}, "delay_ms": {class: ms},
"waits": {class: {event: samples}}, "samples"}. `--summary` splits the seconds into those with a
refresh run going (from the run logs' RUN_START .. RUN_SUCCESS, or the process being alive) and
the others and prints the totals per second of each.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from finance_pipeline_dev.processes import proc_table

PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_SS = re.compile(r"127\.0\.0\.1:(\d+)\s+127\.0\.0\.1:5432\s+users:\(\(\"[^\"]*\",pid=(\d+)")


def schedstat(pid: int) -> dict[int, tuple[int, int]]:
    """Per thread of the process: (ns on a CPU, ns runnable waiting for one) since it began."""
    out: dict[int, tuple[int, int]] = {}
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                a, b, _ = (task / "schedstat").read_text().split()
            except (OSError, ValueError):
                continue
            out[int(task.name)] = (int(a), int(b))
    except OSError:
        pass
    return out


def classify(table: dict[int, tuple[int, str]], root: str) -> dict[int, str]:
    """Each process of the soak started from checkout `root` (and its descendants) by role."""
    roots: dict[int, str] = {}
    for pid, (_, cmd) in table.items():
        if root not in cmd:
            continue
        if "finance-pipeline api" in cmd:
            roots.setdefault(pid, "api")
        elif "soak.py run" in cmd:
            roots[pid] = "run"
        elif "dagster-daemon run" in cmd:
            roots[pid] = "daemon"
        elif "standin.serve" in cmd:
            roots[pid] = "standin"
        elif "bench/soak.py" in cmd and " run " not in cmd and "soak_probe" not in cmd:
            roots.setdefault(pid, "client")
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _) in table.items():
        children[ppid].append(pid)
    out: dict[int, str] = {}
    # Deepest roles win: a run under the client is a run, the API under it is the API.
    order = ["client", "standin", "daemon", "api", "run"]
    for role in order:
        for root, r in roots.items():
            if r != role:
                continue
            stack = [root]
            while stack:
                p = stack.pop()
                out[p] = role
                stack += children.get(p, [])
    return out


def port_owners() -> dict[int, int]:
    """Local port of each client socket to PostgreSQL -> the pid holding it."""
    text = subprocess.run(
        ["ss", "-tnpH", "state", "established", "( dport = :5432 )"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return {int(m.group(1)): int(m.group(2)) for m in _SS.finditer(text)}


def probe(out_path: Path, seconds: float, hz: float, db_like: str, root: str) -> None:
    import psycopg

    conn = psycopg.connect(PG_URL, autocommit=True)
    me = conn.info.backend_pid
    last: dict[int, tuple[int, int]] = {}
    seen: set[int] = set()
    deadline = time.monotonic() + seconds
    with out_path.open("a") as fh:
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            table = proc_table()
            roles = classify(table, root)
            owners = port_owners()
            waits: dict[str, Counter[str]] = defaultdict(Counter)
            backend_role: dict[int, str] = {}
            n = 0
            while time.monotonic() - t0 < 1.0:
                rows = conn.execute(
                    "SELECT pid, backend_type, datname, client_port, state,"
                    " wait_event_type, wait_event, left(query, 48) FROM pg_stat_activity"
                    " WHERE pid <> %s AND (datname LIKE %s OR datname IS NULL)",
                    (me, db_like),
                ).fetchall()
                n += 1
                for pid, btype, datname, port, state, wtype, wevent, query in rows:
                    if btype != "client backend":
                        role = "pg_aux"
                    else:
                        owner = owners.get(port or -1)
                        if owner not in roles:
                            continue  # another checkout's soak or test
                        role = "pg_" + roles[owner]
                        if datname and datname.endswith("_dg"):
                            role += "_dg"
                    backend_role[pid] = role
                    if state == "active" and btype == "client backend":
                        waits[role][f"{wtype}:{wevent}" if wtype else "CPU"] += 1
                        # What the API's sessions wait in, by statement (waits only).
                        if wtype and role == "pg_api":
                            waits["pg_api_by_statement"][f"{wevent} | {query}"] += 1
                time.sleep(max(0.0, 1.0 / hz - 0.002))
            cpu: Counter[str] = Counter()
            delay: Counter[str] = Counter()
            # Per thread: a thread that ended takes its time with it, one that began counts
            # from zero (what it spent this second, or since it began).
            for pid, role in dict([*roles.items(), *backend_role.items()]).items():
                for tid, (c, d) in schedstat(pid).items():
                    pc, pd = last.get(tid, (0, 0))
                    if c < pc:  # the id was reused by a new thread
                        pc = pd = 0
                    last[tid] = (c, d)
                    cpu[role] += c - pc
                    delay[role] += d - pd
            # Backends new this second: each is a connection opened (fork, sign-in, cold caches).
            born = Counter(r for pid, r in backend_role.items() if pid not in seen)
            seen.update(backend_role)
            fh.write(
                json.dumps(
                    {
                        "t": round(time.time(), 2),
                        "new_backends": dict(born),
                        "cpu_ms": {k: round(v / 1e6, 1) for k, v in cpu.items()},
                        "delay_ms": {k: round(v / 1e6, 1) for k, v in delay.items()},
                        "waits": {k: dict(v) for k, v in waits.items()},
                        "samples": n,
                    }
                )
                + "\n"
            )
            fh.flush()


_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \+0000 - dagster - \w+ - (\w+) - ")


def run_windows(workdir: Path) -> list[tuple[float, float, str]]:
    """(first, last) unix seconds of each soak run's Dagster execution, from its log."""
    from datetime import UTC, datetime

    out = []
    for log in sorted(workdir.glob("run_*.log")):
        stamps = []
        for line in log.read_text(errors="replace").splitlines():
            m = _STAMP.match(line)
            if m:
                ts = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
                stamps.append(ts.timestamp())
        if stamps:
            out.append((min(stamps), max(stamps) + 1, log.name))
    return out


def summary(path: Path, workdir: Path | None) -> None:
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    windows = run_windows(workdir) if workdir else []

    def in_run(t: float) -> bool:
        return any(a <= t <= b for a, b, _ in windows)

    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for x in lines:
        if not x["cpu_ms"].get("api") or "daemon" not in x["cpu_ms"]:
            continue  # not the soak phase (the daemon runs in it only)
        if in_run(x["t"]):
            groups["run steps going (RUN_START..end)"].append(x)
        elif x["cpu_ms"].get("run", 0) > 0:
            groups["run process starting (imports)"].append(x)
        else:
            groups["no soak run"].append(x)
    sent: Counter[int] = Counter()
    reqs = workdir / "requests.jsonl" if workdir else None
    if reqs and reqs.exists():
        for line in reqs.read_text().splitlines():
            r = json.loads(line)
            if r["phase"] == "soak":
                # Counted in the second it was answered (the probe's CPU is then spent).
                sent[int(r["at"] + r["latency"])] += 1
    for name, xs in groups.items():
        n = sum(sent.get(int(x["t"]) - k, 0) for x in xs for k in (0,)) if sent else 0
        api = sum(x["cpu_ms"].get("api", 0) + x["cpu_ms"].get("pg_api", 0) for x in xs)
        print(f"\n== {name}: {len(xs)} s, {n} requests answered")
        if n:
            print(f"  API workers + their backends, CPU ms per request: {api / n:.2f}")
        for key in ("cpu_ms", "delay_ms", "new_backends"):
            tot: Counter[str] = Counter()
            for x in xs:
                tot.update(x.get(key, {}))
            print(
                f"  {key} per s: "
                + ", ".join(f"{k} {v / len(xs):.0f}" for k, v in sorted(tot.items()))
            )
        w: dict[str, Counter[str]] = defaultdict(Counter)
        samples = sum(x["samples"] for x in xs)
        for x in xs:
            for role, c in x["waits"].items():
                w[role].update(c)
        for role, c in sorted(w.items()):
            top = ", ".join(f"{k} {v}" for k, v in c.most_common(8))
            print(f"  active {role} (of {samples} samples): {top}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path)
    p.add_argument("--seconds", type=float, default=1800.0)
    p.add_argument("--hz", type=float, default=10.0)
    p.add_argument("--db-like", default="fp_soak_%")
    p.add_argument("--root", default=str(Path(__file__).resolve().parent.parent))
    p.add_argument("--summary", type=Path)
    p.add_argument("--runs", type=Path, help="the soak's kept workdir (run logs)")
    a = p.parse_args(argv)
    if a.summary:
        summary(a.summary, a.runs)
        return 0
    if not a.out:
        p.error("--out or --summary")
    probe(a.out, a.seconds, a.hz, a.db_like, a.root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
