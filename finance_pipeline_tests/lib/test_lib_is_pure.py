"""`finance_pipeline/lib/` is pure logic: no Dagster, no network, no database, no sleeping.

I/O lives beside its callers (stripe_sync/, alerts/delivery.py, advisory/provider.py, warehouse/);
a module here that needs one of these belongs there instead.
"""

from __future__ import annotations

import ast
from pathlib import Path

import finance_pipeline.lib

LIB = Path(finance_pipeline.lib.__file__).parent
FORBIDDEN_MODULES = ("dagster", "requests", "httpx", "urllib.request", "socket", "sqlalchemy")


def _forbidden(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in FORBIDDEN_MODULES)


def _violations(source: str, name: str) -> list[str]:
    """What in one module's source does I/O: forbidden imports and references to a sleep."""
    found = []
    for node in ast.walk(ast.parse(source, filename=name)):
        where = f"{name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{where} imports {a.name}" for a in node.names if _forbidden(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
            if _forbidden(node.module) or any(_forbidden(n) for n in names):
                found.append(f"{where} imports from {node.module}")
            if node.module == "time" and any(a.name == "sleep" for a in node.names):
                found.append(f"{where} imports time.sleep")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr == "sleep"
            and isinstance(node.value, ast.Name)
            and node.value.id in ("time", "asyncio")
        ):
            found.append(f"{where} uses {node.value.id}.sleep")
        elif isinstance(node, ast.Name) and node.id == "__import__":
            found.append(f"{where} calls __import__")
    return found


def test_lib_modules_do_no_io() -> None:
    files = sorted(LIB.rglob("*.py"))
    assert len(files) > 10, f"no lib modules found under {LIB}"
    violations = [
        v for f in files for v in _violations(f.read_text(), str(f.relative_to(LIB.parent)))
    ]
    assert violations == [], "lib/ must stay pure; move the I/O beside its caller:\n" + "\n".join(
        violations
    )


def test_the_scan_catches_what_it_forbids() -> None:
    source = (
        "import socket\nimport time\nfrom urllib.request import urlopen\n"
        "from urllib import request\nimport dagster as dg\nfrom time import sleep\n"
        "def f(pause=time.sleep):\n    time.sleep(1)\n"
    )
    assert len(_violations(source, "probe.py")) == 7
