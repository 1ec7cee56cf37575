"""The fuzz suite's budget and its count of cases tried (a pytest plugin, registered in the root
conftest so the count survives pytest-xdist).

Each generated case calls `tally(target, outcome)`. After the run the counts of every worker are
summed, printed as a table in the terminal summary and written as JSON to `FP_FUZZ_REPORT` (a path)
or, without it, to the pytest cache (`.pytest_cache/v/finance_pipeline/fuzz_cases`).

Budgets: every fuzz test takes `fuzz_settings(n)`, `n` generated cases in the `fuzz-ci` Hypothesis
profile (the default, what CI runs), ten times as many in `fuzz-deep` (`FP_FUZZ_PROFILE=fuzz-deep`,
for a long run by hand).
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings

_SCALE = {"fuzz-ci": 1, "fuzz-deep": 10}
for _name in _SCALE:
    settings.register_profile(
        _name,
        deadline=None,
        database=None,
        # The cases are driven by Hypothesis inside tests that hold a server, a warehouse or a
        # folder for the whole run; each case leaves them as the property requires.
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )

_COUNTS: defaultdict[str, Counter[str]] = defaultdict(Counter)
CACHE_KEY = "finance_pipeline/fuzz_cases"


def profile() -> str:
    """The fuzz profile of this run: FP_FUZZ_PROFILE, `fuzz-ci` by default."""
    name = os.environ.get("FP_FUZZ_PROFILE", "fuzz-ci")
    if name not in _SCALE:
        raise ValueError(f"FP_FUZZ_PROFILE={name!r}: use one of {', '.join(_SCALE)}")
    return name


def fuzz_settings(examples: int, *, shrink: bool = True) -> settings:
    """Hypothesis settings of one fuzz target: `examples` cases in CI, scaled by the profile.
    `shrink=False` for targets whose cases take seconds (a Dagster run, a server round trip per
    step): a failure is reported as found, with its seed, instead of minutes of shrinking."""
    name = profile()
    phases = tuple(Phase) if shrink else (Phase.explicit, Phase.reuse, Phase.generate)
    return settings(settings.get_profile(name), max_examples=examples * _SCALE[name], phases=phases)


def tally(target: str, outcome: str) -> None:
    """Count one generated case of `target` and how it ended ("accepted", "413 request_too_large")."""
    _COUNTS[target][outcome] += 1


def counts() -> dict[str, dict[str, int]]:
    """Cases per target and outcome so far, in this process."""
    return {t: dict(c) for t, c in sorted(_COUNTS.items())}


def _merge(data: dict[str, dict[str, int]]) -> None:
    for target, outcomes in data.items():
        _COUNTS[target].update(outcomes)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On an xdist worker: hand this worker's counts to the controller."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["fuzz_cases"] = json.dumps(counts())


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """On the xdist controller: add a finished worker's counts."""
    data = getattr(node, "workeroutput", {}).get("fuzz_cases")
    if data:
        _merge(json.loads(data))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """The table of cases tried per target, and where its JSON went."""
    if hasattr(config, "workerinput") or not _COUNTS:
        return
    data = counts()
    total = sum(sum(o.values()) for o in data.values())
    tr = terminalreporter
    tr.section(f"fuzz cases tried ({profile()}): {total:,}")
    width = max(len(t) for t in data)
    for target, outcomes in data.items():
        shown = ", ".join(f"{n:,} {o}" for o, n in sorted(outcomes.items(), key=lambda x: -x[1]))
        tr.write_line(f"{target:<{width}}  {sum(outcomes.values()):>6,}  {shown}")
    report = {"profile": profile(), "total": total, "targets": data}
    path = os.environ.get("FP_FUZZ_REPORT")
    if path:
        Path(path).write_text(json.dumps(report, indent=2) + "\n")
        tr.write_line(f"written to {path}")
    elif getattr(config, "cache", None) is not None:
        config.cache.set(CACHE_KEY, report)
        tr.write_line(f"written to the pytest cache, key {CACHE_KEY}")
