"""Stored secrets (Stripe keys, webhook secrets, replayed responses): Fernet-encrypted at rest, or a
reference to an env var; never logged. Also the local key files of the embedded default (the
master key, the API's JWT signing key), and the master key's rotation: the previous keys still
decrypt (MultiFernet) until everything is re-encrypted under the current one."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets as _secrets
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

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


LOCAL_KEY_FILE = ".secret_key"
# The embedded default's rotated-out keys, one per line, newest first (see rotate_local_key).
LOCAL_PREVIOUS_FILE = ".secret_key.previous"


def _master_key(settings: Settings) -> bytes:
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    return _local_key(settings, LOCAL_KEY_FILE, Fernet.generate_key)


def previous_keys(settings: Settings) -> list[bytes]:
    """The master keys of a rotation in progress, newest first: FP_SECRET_KEY_PREVIOUS, or the
    embedded default's file of rotated-out keys."""
    if settings.secret_key is not None:
        raw = (
            settings.secret_key_previous.get_secret_value() if settings.secret_key_previous else ""
        )
        return [k.strip().encode() for k in raw.split(",") if k.strip()]
    path = Path(settings.data_dir) / LOCAL_PREVIOUS_FILE
    if not path.exists():
        return []
    return [line.strip().encode() for line in path.read_text().splitlines() if line.strip()]


def _fernet(settings: Settings) -> MultiFernet:
    """Encrypts under the current master key; decrypts under it or any previous one."""
    try:
        return MultiFernet([Fernet(k) for k in [_master_key(settings), *previous_keys(settings)]])
    except ValueError as exc:  # not urlsafe base64 of 32 bytes
        raise SecretError(
            "FP_SECRET_KEY (or FP_SECRET_KEY_PREVIOUS) is not a Fernet key: generate one with "
            "`finance-pipeline secrets new-key`"
        ) from exc


def rotate_local_key(settings: Settings) -> None:
    """Embedded default: make a new master key current and keep the old one as the newest
    previous key, so stored secrets still decrypt until they are re-encrypted."""
    if settings.secret_key is not None:
        raise SecretError(
            "FP_SECRET_KEY is set: rotate it where it is kept (set FP_SECRET_KEY to a new key and "
            "FP_SECRET_KEY_PREVIOUS to the old one, run `finance-pipeline secrets reencrypt`, "
            "then unset FP_SECRET_KEY_PREVIOUS)"
        )
    data = Path(settings.data_dir)
    old = _master_key(settings)
    previous = data / LOCAL_PREVIOUS_FILE
    kept = [k.decode() for k in [old, *previous_keys(settings)]]
    _write_private(previous, "\n".join(kept) + "\n")
    _write_private(data / LOCAL_KEY_FILE, Fernet.generate_key().decode())


def forget_previous_keys(settings: Settings) -> None:
    """Embedded default: drop the rotated-out keys once nothing is encrypted under them."""
    if settings.secret_key is None:
        (Path(settings.data_dir) / LOCAL_PREVIOUS_FILE).unlink(missing_ok=True)


def _write_private(path: Path, text: str) -> None:
    """Replace a key file atomically with mode 0600 (a reader sees the old or the new file)."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{_secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def jwt_secret(settings: Settings | None = None) -> bytes:
    """The key that signs the API's access tokens (FP_JWT_SECRET, else the local key file)."""
    settings = settings or get_settings()
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value().encode()
    return _local_key(settings, ".jwt_secret", lambda: _secrets.token_urlsafe(48).encode())


def _derive(master: bytes, purpose: str) -> bytes:
    return hmac.new(master, f"finance_pipeline/{purpose}".encode(), hashlib.sha256).digest()


def signing_key(purpose: str, settings: Settings | None = None) -> bytes:
    """A key for HMAC-signing one kind of token (e.g. export download links), derived from the
    master key so each purpose has its own and none is the master key itself."""
    return _derive(_master_key(settings or get_settings()), purpose)


def signing_keys(purpose: str, settings: Settings | None = None) -> list[bytes]:
    """The keys a signature of `purpose` is accepted under: the current one, then those derived
    from the previous master keys of a rotation in progress (tokens signed before it still hold)."""
    settings = settings or get_settings()
    return [_derive(k, purpose) for k in [_master_key(settings), *previous_keys(settings)]]


def encrypt_secret(plaintext: str, settings: Settings | None = None) -> str:
    """Encrypt a secret for storage in the warehouse (under the current master key)."""
    return _fernet(settings or get_settings()).encrypt(plaintext.encode()).decode()


def decrypt_secret(ciphertext: str, settings: Settings | None = None) -> str:
    """Decrypt a stored secret, with a clear error when no master key in force matches."""
    try:
        return _fernet(settings or get_settings()).decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise SecretError(
            "a stored secret cannot be decrypted: it was stored under a master key that is neither "
            "FP_SECRET_KEY nor one of FP_SECRET_KEY_PREVIOUS; restore that key (as "
            "FP_SECRET_KEY_PREVIOUS) or reconnect the workspace's Stripe account"
        ) from exc


def reencrypt_secret(ciphertext: str, settings: Settings | None = None) -> str:
    """The same secret encrypted under the current master key (a rotation's re-encryption)."""
    try:
        return _fernet(settings or get_settings()).rotate(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise SecretError(
            "a stored secret cannot be re-encrypted: no master key in force decrypts it"
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
