"""Dependency audit for CI: every locked package (uv.lock, all groups) checked by pip-audit
against the vulnerability data PyPI serves. A vulnerability with a fixed version fails the run;
one without a fix yet is reported and does not (nothing to upgrade to)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Finding:
    """One known vulnerability of one locked package."""

    package: str
    version: str
    vuln_id: str
    fix_versions: tuple[str, ...]

    def line(self) -> str:
        fix = f"fixed in {', '.join(self.fix_versions)}" if self.fix_versions else "no fix yet"
        return f"{self.package} {self.version}: {self.vuln_id} ({fix})"


def findings(report: Mapping[str, Any]) -> list[Finding]:
    """The vulnerabilities of a pip-audit JSON report, by package."""
    return [
        Finding(dep["name"], dep["version"], v["id"], tuple(v.get("fix_versions") or ()))
        for dep in report.get("dependencies", [])
        for v in dep.get("vulns", [])
    ]


def verdict(found: Sequence[Finding]) -> int:
    """Exit status: 1 when some vulnerability has a fix to upgrade to, else 0."""
    return 1 if any(f.fix_versions for f in found) else 0


def run_pip_audit(root: Path = ROOT) -> dict[str, Any]:
    """Export the lock with hashes and audit it (no resolution, no pip: exactly what is locked)."""
    with tempfile.TemporaryDirectory() as tmp:
        requirements, report = Path(tmp) / "requirements.txt", Path(tmp) / "audit.json"
        export = ["uv", "export", "--frozen", "--quiet", "--format", "requirements-txt"]
        subprocess.run(
            [*export, "--no-emit-workspace", "--all-groups", "-o", str(requirements)],
            cwd=root,
            check=True,
        )
        audit = [sys.executable, "-m", "pip_audit", "-r", str(requirements), "--require-hashes"]
        done = subprocess.run(
            [
                *audit,
                "--disable-pip",
                "--progress-spinner",
                "off",
                "--format",
                "json",
                "-o",
                str(report),
            ],
            cwd=root,
            capture_output=True,
            text=True,
        )
        if not report.exists():  # pip-audit could not run (e.g. the advisory service is down)
            raise RuntimeError(f"pip-audit failed ({done.returncode}): {done.stderr.strip()}")
        return json.loads(report.read_text())


def main() -> int:
    """Audit the lock; print each finding; fail on a fixable one."""
    report = run_pip_audit()
    found = findings(report)
    print(f"audit: {len(report.get('dependencies', []))} locked packages checked by pip-audit")
    for f in found:
        print(f"audit: {f.line()}")
    status = verdict(found)
    if status:
        print("audit: upgrade the packages above (uv lock --upgrade-package NAME)", file=sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
