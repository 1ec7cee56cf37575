"""Where a secret shows in clear: the one scan used by every secrets-never-leak test (docs/security.md).

A secret counts as leaked when its exact bytes appear in a file the product wrote (warehouse, Dagster
storage, event and compute logs, reports), in captured output, or in an answer. The key files that
hold the master key and the JWT signing key are the secrets' own home and are not scanned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from finance_pipeline.secrets import LOCAL_KEY_FILE

KEY_FILES = frozenset({LOCAL_KEY_FILE, ".jwt_secret"})


def written_files(*roots: Path) -> dict[str, bytes]:
    """Every file under the roots except the key files, by path, with its bytes."""
    places: dict[str, bytes] = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.name not in KEY_FILES:
                places[str(path)] = path.read_bytes()
    return places


def leaks(secrets: Mapping[str, str], places: Mapping[str, bytes]) -> list[str]:
    """One line per secret found in a place: "<secret name> in <place>"; empty when none leaked."""
    empty = [name for name, value in secrets.items() if not value]
    if empty:
        raise ValueError(f"secrets without a value cannot be scanned for: {empty}")
    return [
        f"{name} in {where}"
        for name, value in secrets.items()
        for where, content in places.items()
        if value.encode() in content
    ]


def joined(texts: Iterable[str]) -> bytes:
    """Many captured texts (response bodies, log messages) as one place to scan."""
    return "\n".join(texts).encode()
