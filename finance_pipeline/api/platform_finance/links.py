"""Signed, expiring download links for completed exports: the token carries the export id and
its expiry, HMAC-SHA256-signed with a key derived from the master key (`secrets.signing_key`), so
the link itself is the credential (like a presigned URL) and nothing is stored per link."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from finance_pipeline.secrets import signing_key, signing_keys
from finance_pipeline.settings import Settings

PURPOSE = "export-download"


class LinkError(ValueError):
    """A token that is malformed, tampered with (`invalid_link`) or past its expiry
    (`link_expired`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(settings: Settings, message: bytes) -> bytes:
    return hmac.new(signing_key(PURPOSE, settings), message, hashlib.sha256).digest()


def sign(settings: Settings, export_id: str, expires_at: int) -> str:
    """A URL-safe token granting the download of `export_id` until `expires_at` (Unix seconds)."""
    message = f"{export_id}:{expires_at}".encode()
    return f"{_b64(message)}.{_b64(_mac(settings, message))}"


def verify(settings: Settings, token: str, now: int | None = None) -> str:
    """The export id a token grants, if its signature holds and it has not expired."""
    try:
        encoded, _, signature = token.partition(".")
        message, mac = _unb64(encoded), _unb64(signature)
        export_id, _, expires = message.decode().rpartition(":")
        expires_at = int(expires)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LinkError("invalid_link", "The download link is malformed.") from exc
    # Compared in constant time; checked before the expiry so a forged one learns nothing.
    if not export_id or not any(
        hmac.compare_digest(mac, hmac.new(key, message, hashlib.sha256).digest())
        for key in signing_keys(PURPOSE, settings)
    ):
        raise LinkError("invalid_link", "The download link's signature does not match.")
    if (int(time.time()) if now is None else now) >= expires_at:
        raise LinkError("link_expired", "The download link has expired; ask for the export again.")
    return export_id
