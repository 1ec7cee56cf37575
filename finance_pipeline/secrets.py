"""Stored secrets (Stripe keys): Fernet-encrypted at rest, or a reference to an env var; never logged.
Also the local key files of the embedded default (the master key, the API's JWT signing key)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets as _secrets
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from finance_pipeline.settings import Settings, get_settings


class SecretError(RuntimeError):
    """A stored secret cannot be decrypted or resolved."""


def _local_key(settings: Settings, name: str, generate: Callable[[], bytes]) -> bytes:
    """A key kept in a 0600 file in data_dir, generated on first use (embedded default only:
    production sets the FP_ variable from a secret manager)."""
    path = Path(settings.data_dir) / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside and linked into place, so a concurrent reader (another API worker) sees
        # either no file or the whole key, and the first writer wins.
        tmp = path.with_name(f"{name}.{os.getpid()}.{_secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(generate())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_bytes().strip()


def _master_key(settings: Settings) -> bytes:
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    return _local_key(settings, ".secret_key", Fernet.generate_key)


def jwt_secret(settings: Settings | None = None) -> bytes:
    """The key that signs the API's access tokens (FP_JWT_SECRET, else the local key file)."""
    settings = settings or get_settings()
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value().encode()
    return _local_key(settings, ".jwt_secret", lambda: _secrets.token_urlsafe(48).encode())


def signing_key(purpose: str, settings: Settings | None = None) -> bytes:
    """A key for HMAC-signing one kind of token (e.g. export download links), derived from the
    master key so each purpose has its own and none is the master key itself."""
    master = _master_key(settings or get_settings())
    return hmac.new(master, f"finance_pipeline/{purpose}".encode(), hashlib.sha256).digest()


def encrypt_secret(plaintext: str, settings: Settings | None = None) -> str:
    """Encrypt a secret for storage in the warehouse."""
    return Fernet(_master_key(settings or get_settings())).encrypt(plaintext.encode()).decode()


def decrypt_secret(ciphertext: str, settings: Settings | None = None) -> str:
    """Decrypt a stored secret, with a clear error when the master key does not match."""
    try:
        return Fernet(_master_key(settings or get_settings())).decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise SecretError(
            "a stored Stripe key cannot be decrypted: FP_SECRET_KEY differs from the one used to "
            "store it; reconnect the workspace's Stripe account"
        ) from exc


def resolve_key_ref(ref: str) -> str:
    """Resolve a key reference such as `env:STRIPE_KEY_ACME`."""
    scheme, _, name = ref.partition(":")
    if scheme != "env" or not name:
        raise SecretError(f"unsupported key reference {ref!r}: use env:VARIABLE_NAME")
    value = os.environ.get(name)
    if not value:
        raise SecretError(f"key reference {ref!r}: environment variable {name} is not set")
    return value


def mask_key(key: str) -> str:
    """The form of a key safe to show: prefix and last four characters (`rk_live_****wxyz`)."""
    prefix = "_".join(key.split("_")[:2]) + "_" if key.count("_") >= 2 else key[:3]
    return f"{prefix}****{key[-4:]}"
