"""First-run behaviour of the scripts and commands a new user types: test.sh's exit status, every
CLI option documented in --help, and the commands the demo prints resolvable in a fresh shell."""

from __future__ import annotations

import argparse
import os
import stat
import subprocess
from pathlib import Path

import pytest

from finance_pipeline.settings import PROJECT_ROOT


def _stub_uv(tmp_path: Path, pytest_status: int) -> dict[str, str]:
    """An env whose `uv` does nothing except return `pytest_status` for `uv run ... pytest`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    uv = bin_dir / "uv"
    uv.write_text(
        "#!/usr/bin/env bash\n"
        f'for a in "$@"; do [ "$a" = pytest ] && exit {pytest_status}; done\n'
        "exit 0\n"
    )
    uv.chmod(uv.stat().st_mode | stat.S_IXUSR)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


@pytest.mark.parametrize(("pytest_status", "expected"), [(0, 0), (1, 1), (5, 5)])
def test_test_sh_fails_when_pytest_collects_nothing(
    tmp_path: Path, pytest_status: int, expected: int
) -> None:
    proc = subprocess.run(
        ["bash", str(PROJECT_ROOT / "scripts" / "test.sh"), "-k", "no_such_test"],
        env=_stub_uv(tmp_path, pytest_status),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == expected, proc.stdout + proc.stderr
    if pytest_status == 5:
        assert "collected no tests" in proc.stderr


def _parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    """Every parser of both commands and of the stand-in, subcommands included, by name."""
    from finance_pipeline_dev.cli import build_parser as dev_parser
    from finance_pipeline_dev.standin.serve import _parser as standin_parser

    from finance_pipeline.cli import build_parser as product_parser

    found: list[tuple[str, argparse.ArgumentParser]] = []
    todo = [product_parser(), dev_parser(), standin_parser()]
    while todo:
        parser = todo.pop()
        found.append((parser.prog, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo += list(action.choices.values())
    return found


def test_every_cli_option_and_argument_has_help() -> None:
    parsers = _parsers()
    names = {name for name, _ in parsers}
    assert {"finance-pipeline ingest-file", "finance-pipeline-dev demo"} <= names
    undocumented = [
        f"{name}: {action.dest}"
        for name, parser in parsers
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip()
    ]
    assert undocumented == []
    for name, parser in parsers:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                # Each subcommand is described in its parent's listing as well.
                helps = {a.dest: a.help for a in action._choices_actions}
                assert set(helps) == set(action.choices), name
                assert all((h or "").strip() for h in helps.values()), name


def test_bootstrap_makes_a_pip_user_uv_reachable_from_a_new_shell(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".local" / "bin").mkdir(parents=True)
    uv = home / ".local" / "bin" / "uv"
    uv.write_text('#!/usr/bin/env bash\necho "uv stub $*"\n')
    uv.chmod(0o755)
    link_dir = tmp_path / "usr_local_bin"
    link_dir.mkdir()
    shell = {"HOME": str(home), "PATH": "/usr/bin:/bin", "FP_UV_LINK_DIR": str(link_dir)}
    proc = subprocess.run(
        ["bash", str(PROJECT_ROOT / "scripts" / "bootstrap.sh")],
        env=shell,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # A new shell whose PATH has the link folder (as /usr/local/bin is on every default PATH).
    new_shell = {**shell, "PATH": f"{link_dir}:/usr/bin:/bin"}
    again = subprocess.run(
        ["bash", "-c", "uv --version"], env=new_shell, capture_output=True, text=True
    )
    assert again.stdout.strip() == "uv stub --version"
