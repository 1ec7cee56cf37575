"""Shared checks of rendered PDFs (close pack, report tables) through poppler: the text as laid
out, and each page rasterized to check it has content and nothing runs into its side margins."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

POPPLER = all(shutil.which(t) for t in ("pdftotext", "pdftoppm", "pdfdetach", "pdfinfo"))
needs_poppler = pytest.mark.skipif(not POPPLER, reason="poppler-utils are not installed")


def pdf_text(path: Path) -> str:
    """The PDF's text with its layout kept (`pdftotext -layout`); pages separated by form feeds."""
    return subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True
    ).stdout


def page_images(path: Path, out: Path) -> list[tuple[int, int, bytes]]:
    """Each page rendered at 50 dpi in grey: (width, height, pixels)."""
    subprocess.run(["pdftoppm", "-r", "50", "-gray", str(path), str(out / "p")], check=True)
    pages = []
    for f in sorted(out.glob("p-*.pgm")):
        raw = f.read_bytes()
        magic, w, h, maxval, pixels = raw.split(maxsplit=4)
        assert magic == b"P5" and maxval == b"255"
        pages.append((int(w), int(h), pixels[: int(w) * int(h)]))
    return pages


def assert_pages_inked_within_margins(
    pages: list[tuple[int, int, bytes]], side_margin_mm: float = 15
) -> None:
    """Every page has content (not blank) and its ink stays inside the side margins."""
    for n, (w, h, px) in enumerate(pages, start=1):
        mean = sum(px) / len(px)
        variance = sum((p - mean) ** 2 for p in px[::7]) / len(px[::7])
        assert variance > 50, f"page {n} looks blank"
        ink = [x for x in range(w) if any(px[y * w + x] < 200 for y in range(0, h, 2))]
        # 15 mm side margins are ~29 px at 50 dpi: content stays a few px inside them.
        margin = round(side_margin_mm / 25.4 * 50) - 4
        assert ink[0] >= margin and ink[-1] <= w - margin, f"page {n} runs into its margin"
