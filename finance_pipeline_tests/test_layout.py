"""The product package never depends on the development package (stand-in, simulator, demo)."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ROOT / "finance_pipeline"
DEV_PACKAGE = "finance_pipeline_dev"


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(str(node.args[0].value))
    return names


def test_product_never_imports_the_dev_package() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(
            m for m in _imported_modules(path) if m.split(".")[0] == DEV_PACKAGE
        )
        for path in PRODUCT.rglob("*.py")
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert offenders == {}, f"the product imports the dev package: {offenders}"
    # Nor does it name it in strings (subprocess commands, lazy imports by string).
    mentions = [
        str(p.relative_to(ROOT)) for p in PRODUCT.rglob("*.py") if DEV_PACKAGE in p.read_text()
    ]
    assert mentions == []


def test_the_wheel_ships_only_the_product() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == ["finance_pipeline"]
    assert all("finance_pipeline_dev" not in d for d in project["project"]["dependencies"])
    assert not (PRODUCT / "stripe_standin").exists()
    assert not (PRODUCT / "demo.py").exists()


def test_the_checker_sees_a_dev_import(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text(
        "import importlib\nfrom finance_pipeline_dev.standin import shapes\n"
        "importlib.import_module('finance_pipeline_dev.demo')\n"
    )
    assert {"finance_pipeline_dev.standin", "finance_pipeline_dev.demo"} <= _imported_modules(
        sample
    )
