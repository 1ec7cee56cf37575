"""Master key rotation (docs/security.md): during a rotation the old and the new key both decrypt;
`secrets reencrypt` rewrites every stored secret under the new key in one transaction, after which
the old key is no longer needed; a secret no key decrypts stops it with nothing changed."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from finance_pipeline.alerts.delivery import set_alert_webhook, webhook_config
from finance_pipeline.api.platform_finance import links
from finance_pipeline.cli import main
from finance_pipeline.secret_rotation import reencrypt_stored_secrets
from finance_pipeline.secrets import (
    SecretError,
    decrypt_secret,
    encrypt_secret,
    previous_keys,
    rotate_local_key,
)
from finance_pipeline.settings import Settings
from finance_pipeline.stripe_sync.webhooks import set_webhook_secret, webhook_secret
from finance_pipeline.tenancy import (
    connect_stripe,
    create_organization,
    create_workspace,
    get_workspace,
    stripe_connections,
)
from finance_pipeline.warehouse import Warehouse

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def _settings(tmp_path: Path, key: str | None, previous: str | None = None) -> Settings:
    return Settings(data_dir=tmp_path, secret_key=key, secret_key_previous=previous)


def test_old_and_new_keys_both_decrypt_during_a_rotation(tmp_path: Path) -> None:
    old = _settings(tmp_path, OLD)
    token = encrypt_secret("sk_test_secret", old)
    rotating = _settings(tmp_path, NEW, f"{Fernet.generate_key().decode()}, {OLD}")
    assert decrypt_secret(token, rotating) == "sk_test_secret"
    # New secrets are encrypted under the new key only.
    fresh = encrypt_secret("whsec_fresh", rotating)
    assert decrypt_secret(fresh, _settings(tmp_path, NEW)) == "whsec_fresh"
    with pytest.raises(SecretError, match="FP_SECRET_KEY_PREVIOUS"):
        decrypt_secret(fresh, old)
    with pytest.raises(SecretError):
        decrypt_secret(token, _settings(tmp_path, NEW))
    with pytest.raises(SecretError, match="not a Fernet key"):
        encrypt_secret("x", _settings(tmp_path, "not-a-key"))


def test_download_links_signed_before_a_rotation_still_verify(tmp_path: Path) -> None:
    token = links.sign(_settings(tmp_path, OLD), "exp_1", 2_000_000_000)
    assert links.verify(_settings(tmp_path, NEW, OLD), token, now=1) == "exp_1"
    with pytest.raises(links.LinkError):
        links.verify(_settings(tmp_path, NEW), token, now=1)


def _store_every_kind(wh: Warehouse, settings: Settings) -> str:
    org = create_organization(wh, "Acme")
    ws = create_workspace(wh, org, "Acme")
    connect_stripe(
        wh, ws, account_id="acct_1", livemode=False, api_key="sk_test_stripe", settings=settings
    )
    set_webhook_secret(wh, ws, "whsec_0123456789abcdef", settings)
    set_alert_webhook(
        wh, ws, "https://hooks.example.com/fp", secret="alert-secret", settings=settings
    )
    with wh.begin() as db:
        db.execute(
            wh.text(
                "INSERT INTO app.idempotency_keys (principal, idempotency_key, request_method,"
                " request_path, body_sha256, status_code, response_content_type, response_body,"
                " created_at) VALUES ('u1', 'k1', 'POST', '/v1/x', 'sha', 201,"
                " 'application/json', :b, 1)"
            ),
            {"b": encrypt_secret('{"id": 1}', settings)},
        )
    return ws


def _every_secret(wh: Warehouse, ws: str, settings: Settings) -> list[str]:
    ws_settings = (get_workspace(wh, ws) or pytest.fail("no workspace")).settings
    alert = webhook_config(ws_settings, settings)
    body = wh.scalar("SELECT response_body FROM app.idempotency_keys WHERE principal = 'u1'")
    return [
        stripe_connections(wh, settings)[0].api_key,
        webhook_secret(wh, ws, settings) or "",
        alert.secret if alert else "",
        decrypt_secret(str(body), settings),
    ]


def test_reencrypt_rewrites_every_stored_secret_under_the_new_key(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    old = _settings(tmp_path, OLD)
    ws = _store_every_kind(warehouse, old)
    expected = ["sk_test_stripe", "whsec_0123456789abcdef", "alert-secret", '{"id": 1}']
    assert _every_secret(warehouse, ws, old) == expected
    rotating = _settings(tmp_path, NEW, OLD)
    assert _every_secret(warehouse, ws, rotating) == expected
    counts = reencrypt_stored_secrets(warehouse, rotating)
    assert counts == {
        "app.stripe_connections.key_ciphertext": 1,
        "app.stripe_connections.webhook_secret_ciphertext": 1,
        "app.idempotency_keys.response_body": 1,
        "app.workspaces.settings_json (alert webhook)": 1,
    }
    assert _every_secret(warehouse, ws, _settings(tmp_path, NEW)) == expected
    with pytest.raises(SecretError):
        _every_secret(warehouse, ws, old)
    # Idempotent: a second pass re-encrypts the same secrets, still readable.
    reencrypt_stored_secrets(warehouse, _settings(tmp_path, NEW))
    assert _every_secret(warehouse, ws, _settings(tmp_path, NEW)) == expected


def test_a_secret_no_key_decrypts_stops_the_reencryption_with_nothing_changed(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    ws = _store_every_kind(warehouse, _settings(tmp_path, OLD))
    stranger = encrypt_secret("lost", _settings(tmp_path, Fernet.generate_key().decode()))
    with warehouse.begin() as db:
        db.execute(
            warehouse.text("UPDATE app.idempotency_keys SET response_body = :b"), {"b": stranger}
        )
    before = warehouse.rows(
        "SELECT key_ciphertext, webhook_secret_ciphertext FROM app.stripe_connections"
    )
    with pytest.raises(SecretError, match="no master key in force"):
        reencrypt_stored_secrets(warehouse, _settings(tmp_path, NEW, OLD))
    assert (
        warehouse.rows(
            "SELECT key_ciphertext, webhook_secret_ciphertext FROM app.stripe_connections"
        )
        == before
    )
    old = _settings(tmp_path, OLD)
    assert stripe_connections(warehouse, old)[0].api_key == "sk_test_stripe"
    assert webhook_secret(warehouse, ws, old) == "whsec_0123456789abcdef"


def test_the_embedded_rotation_command_swaps_the_local_key(
    sqlite_warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    embedded = _settings(data, None)
    ws = _store_every_kind(sqlite_warehouse, embedded)
    first_key = (data / ".secret_key").read_bytes()
    # Between the two steps (a crash after the new key is written), both keys decrypt.
    rotate_local_key(embedded)
    assert previous_keys(embedded) == [first_key]
    assert _every_secret(sqlite_warehouse, ws, embedded)[0] == "sk_test_stripe"
    monkeypatch.setenv("FP_DATA_DIR", str(data))
    monkeypatch.setenv("FP_WAREHOUSE_URL", str(sqlite_warehouse.engine.url))
    monkeypatch.delenv("FP_SECRET_KEY", raising=False)
    from finance_pipeline.settings import get_settings

    get_settings.cache_clear()
    try:
        assert main(["secrets", "rotate"]) == 0
    finally:
        get_settings.cache_clear()
    assert not (data / ".secret_key.previous").exists()
    assert (data / ".secret_key").stat().st_mode & 0o777 == 0o600
    assert (data / ".secret_key").read_bytes() != first_key
    assert _every_secret(sqlite_warehouse, ws, embedded)[0] == "sk_test_stripe"
    # With FP_SECRET_KEY set the key lives elsewhere: rotate says how instead.
    with pytest.raises(SecretError, match="FP_SECRET_KEY_PREVIOUS"):
        rotate_local_key(_settings(data, NEW))
    assert previous_keys(_settings(data, NEW)) == []
