"""The repository points only inside itself: no tracked text file cites documents outside it, and
every `docs/metrics.md §N` cited names a section that docs/metrics.md has."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METRICS = ROOT / "docs" / "metrics.md"
TEXT_SUFFIXES = (".py", ".md", ".sh", ".sql", ".toml", ".yaml")
# Built from pieces so that this file does not match itself.
FORBIDDEN = ("../" + "shared", "shared/" + "metrics.md", "seeds" + "/00")
CITATION = re.compile(r"docs/metrics\.md\s+(§\s*\d+(?:\s*-\s*\d+|\.\d+|\s*(?:,|and)\s*§\s*\d+)*)")
SECTION = re.compile(r"§\s*(\d+)(?:\s*-\s*(\d+))?")


def tracked_text_files() -> list[Path]:
    """Tracked files with a text suffix (git ls-files), as absolute paths that exist."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    paths = [ROOT / p for p in out.split("\0") if p.endswith(TEXT_SUFFIXES)]
    return [p for p in paths if p.is_file()]


def metrics_sections() -> set[int]:
    """Numbers N of the `## N.` headings of docs/metrics.md."""
    text = METRICS.read_text(encoding="utf-8")
    return {int(m.group(1)) for m in re.finditer(r"^## (\d+)\.", text, re.MULTILINE)}


def cited_sections(text: str) -> list[int]:
    """Section numbers cited as `docs/metrics.md §N` (also §N-M ranges and §N, §M lists)."""
    found: list[int] = []
    for cite in CITATION.finditer(text):
        for sec in SECTION.finditer(cite.group(1)):
            first = int(sec.group(1))
            last = int(sec.group(2)) if sec.group(2) else first
            found.extend(range(first, last + 1))
    return found


def test_no_references_outside_the_repository() -> None:
    offenders = []
    for path in tracked_text_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for needle in FORBIDDEN:
                if needle in line:
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {needle}")
    assert not offenders, "references outside the repository:\n" + "\n".join(offenders)


def test_section_citations_name_the_repos_file() -> None:
    """Section citations name the repo's own file, docs/metrics.md, never a bare metrics.md."""
    bare = re.compile(r"(?<![/\w])metrics\.md\s+§")
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in tracked_text_files()
        if path != METRICS
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if bare.search(line)
    ]
    assert not offenders, "cite docs/metrics.md, not metrics.md:\n" + "\n".join(offenders)


def test_metrics_md_has_numbered_sections() -> None:
    assert set(range(1, 17)) <= metrics_sections()


def test_cited_sections_exist() -> None:
    sections = metrics_sections()
    missing = []
    cited = 0
    for path in tracked_text_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for n in cited_sections(line):
                cited += 1
                if n not in sections:
                    missing.append(f"{path.relative_to(ROOT)}:{number}: §{n}")
    assert cited > 0, "expected the code to cite docs/metrics.md sections"
    assert not missing, "docs/metrics.md has no such section:\n" + "\n".join(missing)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(docs/metrics.md §7)", [7]),
        ("docs/metrics.md §3-5, §15 E3/E4", [3, 4, 5, 15]),
        ("docs/metrics.md §9 and §14 as grounding", [9, 14]),
        ("docs/metrics.md §3.2", [3]),
        ("(docs/metrics.md):", []),
        ("docs/metrics.md" + " §99", [99]),  # split: this file is scanned too
    ],
)
def test_citation_parsing(text: str, expected: list[int]) -> None:
    assert cited_sections(text) == expected
