"""The CI dependency audit fails on a known vulnerability with a fix, not on one without."""

from __future__ import annotations

from finance_pipeline_dev.audit import Finding, findings, verdict

REPORT = {
    "dependencies": [
        {"name": "jinja2", "version": "3.1.2", "vulns": [
            {"id": "GHSA-h5c8-rqwp-cp95", "fix_versions": ["3.1.3"]},
        ]},
        {"name": "somepkg", "version": "1.0", "vulns": [{"id": "PYSEC-0", "fix_versions": []}]},
        {"name": "clean", "version": "2.0", "vulns": []},
        {"name": "finance-pipeline-dev", "skip_reason": "not on PyPI"},
    ]
}  # fmt: skip


def test_a_fixable_vulnerability_fails_and_an_unfixed_one_is_only_reported() -> None:
    found = findings(REPORT)
    assert found == [
        Finding("jinja2", "3.1.2", "GHSA-h5c8-rqwp-cp95", ("3.1.3",)),
        Finding("somepkg", "1.0", "PYSEC-0", ()),
    ]
    assert verdict(found) == 1
    assert verdict(found[1:]) == 0 and verdict([]) == 0
    assert found[0].line() == "jinja2 3.1.2: GHSA-h5c8-rqwp-cp95 (fixed in 3.1.3)"
    assert found[1].line() == "somepkg 1.0: PYSEC-0 (no fix yet)"
