"""Stored secrets (Stripe keys): Fernet-encrypted at rest, or a reference to an env var; never logged."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from finance_pipeline.settings import Settings, get_settings


class SecretError(RuntimeError):
    """A stored secret cannot be decrypted or resolved."""


def _master_key(settings: Settings) -> bytes:
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    path = Path(settings.data_dir) / ".secret_key"
    if not path.exists():
        # Embedded default only: production sets FP_SECRET_KEY from a secret manager.
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(Fernet.generate_key())
    return path.read_bytes().strip()


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
