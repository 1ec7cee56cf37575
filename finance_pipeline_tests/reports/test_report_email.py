"""Report emails against a local SMTP server (aiosmtpd on 127.0.0.1, ephemeral port): the close
pack arrives with its attachment, a re-run sends nothing, 4xx replies and refused connections are
retried then reported, 5xx are not retried, and the SMTP password never reaches a log."""

from __future__ import annotations

import email
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from finance_pipeline.reports.email import (
    ReportEmailConfigError,
    deliver_close_pack,
    report_email_recipients,
    send_report_email,
    set_report_email,
)
from finance_pipeline.settings import Settings, get_settings
from finance_pipeline.tenancy import create_organization, create_workspace, list_workspaces
from finance_pipeline.warehouse import Warehouse

PASSWORD = "s3cret-smtp-pa55"
PDF = b"%PDF-1.7\n% a close pack\n" + bytes(range(256)) * 4
NAME = "close_pack-2026-10.pdf"
RECIPIENTS = ["cfo@example.com", "controller@example.com"]


@dataclass
class Inbox:
    """The aiosmtpd handler: keeps each accepted message; answers DATA with queued replies first."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[Any] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.replies:
            return self.replies.pop(0)
        self.envelopes.append(envelope)
        msg = email.message_from_bytes(envelope.original_content, policy=default_policy)
        self.messages.append(msg)  # type: ignore[arg-type]
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login, data.password))
        # handled=False: aiosmtpd answers a failure itself (535).
        return AuthResult(success=data.password == PASSWORD.encode(), handled=False)


class EphemeralController(Controller):
    """A Controller bound to port 0: reads the port the OS gave before its self-check connects."""

    def _trigger_server(self) -> None:
        assert self.server is not None
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    box = Inbox()
    ctl = EphemeralController(
        box, hostname="127.0.0.1", port=0, authenticator=box.authenticate, auth_require_tls=False
    )
    ctl.start()
    try:
        yield box, ctl.port
    finally:
        ctl.stop()


def _settings(port: int, **kw: Any) -> Settings:
    base: dict[str, Any] = {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_user": "pipeline",
        "smtp_password": PASSWORD,
        "smtp_from": "Finance <finance@example.com>",
        "smtp_starttls": False,
        "smtp_timeout_seconds": 5,
    }
    return Settings(**{**base, **kw})


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _workspace(wh: Warehouse, recipients: list[str] | None = RECIPIENTS) -> None:
    create_workspace(wh, create_organization(wh, "Org", org_id="o"), "Northwind", workspace_id="w")
    if recipients:
        set_report_email(wh, "w", recipients)


def _log(wh: Warehouse) -> list[dict[str, Any]]:
    return wh.rows("SELECT * FROM app.report_emails ORDER BY delivery_key")


NO_WAIT: dict[str, Any] = {"sleep": lambda s: None}


def test_close_pack_arrives_once_with_its_attachment(
    warehouse: Warehouse,
    inbox: tuple[Inbox, int],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    box, port = inbox
    _workspace(warehouse)
    # The relay from the FP_SMTP_* environment, as deployed.
    for name, value in {
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "USER": "pipeline",
        "PASSWORD": PASSWORD,
        "FROM": "finance@example.com",
        "STARTTLS": "false",
    }.items():
        monkeypatch.setenv(f"FP_SMTP_{name}", value)
    get_settings.cache_clear()
    settings = get_settings()
    caplog.set_level(logging.DEBUG)
    out = deliver_close_pack(warehouse, settings, "w", "2026-10", PDF, NAME, **NO_WAIT)
    assert out.status == "sent" and out.attempts == 1 and out.error is None
    assert box.logins == [(b"pipeline", PASSWORD.encode())]
    [msg] = box.messages
    assert box.envelopes[0].rcpt_tos == RECIPIENTS
    assert msg["Subject"] == "Northwind: month-end close pack, October 2026"
    assert msg["From"] == "finance@example.com" and msg["Message-ID"] == out.message_id
    [part] = list(msg.iter_attachments())
    assert part.get_filename() == NAME and part.get_content_type() == "application/pdf"
    assert part.get_content() == PDF
    assert "October 2026" in msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]

    # A re-run (same pack) sends nothing; the log says delivered once.
    again = deliver_close_pack(warehouse, settings, "w", "2026-10", PDF, NAME, **NO_WAIT)
    assert again.status == "already_sent" and len(box.messages) == 1
    [row] = _log(warehouse)
    assert row["status"] == "delivered" and row["attempts"] == 1
    assert row["recipients"] == ",".join(RECIPIENTS) and row["delivery_key"].startswith(
        "close_pack/2026-10/"
    )
    # A restated pack is new content: it is sent.
    restated = deliver_close_pack(warehouse, settings, "w", "2026-10", PDF + b"v2", NAME, **NO_WAIT)
    assert restated.status == "sent" and len(box.messages) == 2
    assert PASSWORD not in caplog.text and PASSWORD not in repr(settings)


def test_a_4xx_reply_is_retried_with_the_backoff(
    sqlite_warehouse: Warehouse, inbox: tuple[Inbox, int]
) -> None:
    box, port = inbox
    _workspace(sqlite_warehouse)
    box.replies = ["451 4.3.0 Mailbox busy, try later", "421 4.7.0 Slow down"]
    waits: list[float] = []
    out = deliver_close_pack(
        sqlite_warehouse,
        _settings(port),
        "w",
        "2026-10",
        PDF,
        NAME,
        sleep=waits.append,
        backoff=lambda attempt: 0.01 * attempt,
    )
    assert out.status == "sent" and out.attempts == 3 and len(box.messages) == 1
    assert waits == [0.01, 0.02]
    assert _log(sqlite_warehouse)[0]["attempts"] == 3


def test_a_refused_connection_is_retried_then_reported(
    warehouse: Warehouse, inbox: tuple[Inbox, int]
) -> None:
    box, port = inbox
    _workspace(warehouse)
    down = _settings(_closed_port())
    waits: list[float] = []
    out = deliver_close_pack(
        warehouse, down, "w", "2026-10", PDF, NAME, max_attempts=3, sleep=waits.append
    )
    assert out.status == "failed" and out.attempts == 3 and len(waits) == 2
    assert out.error and "gave up after 3 attempts" in out.error and "Connection" in out.error
    [row] = _log(warehouse)
    assert row["status"] == "failed" and row["attempts"] == 3 and row["last_error"] == out.error
    # The next run (server back) sends it; the log keeps counting attempts.
    ok = deliver_close_pack(warehouse, _settings(port), "w", "2026-10", PDF, NAME, **NO_WAIT)
    assert ok.status == "sent" and len(box.messages) == 1
    [row] = _log(warehouse)
    assert row["status"] == "delivered" and row["attempts"] == 4 and row["last_error"] is None


def test_a_5xx_reply_is_not_retried(sqlite_warehouse: Warehouse, inbox: tuple[Inbox, int]) -> None:
    box, port = inbox
    _workspace(sqlite_warehouse)
    box.replies = ["554 5.7.1 Message rejected"]
    out = deliver_close_pack(sqlite_warehouse, _settings(port), "w", "2026-10", PDF, NAME)
    assert out.status == "failed" and out.attempts == 1
    assert out.error == "SMTP 554 5.7.1 Message rejected" and box.messages == []


def test_wrong_password_is_reported_without_the_password(
    sqlite_warehouse: Warehouse, inbox: tuple[Inbox, int], caplog: pytest.LogCaptureFixture
) -> None:
    _, port = inbox
    _workspace(sqlite_warehouse)
    caplog.set_level(logging.DEBUG)
    bad = _settings(port, smtp_password="not-" + PASSWORD)
    out = deliver_close_pack(sqlite_warehouse, bad, "w", "2026-10", PDF, NAME)
    assert out.status == "failed" and out.error and out.error.startswith("SMTP 535")
    assert "not-" + PASSWORD not in caplog.text + out.error


def test_without_recipients_nothing_is_sent_or_logged(
    sqlite_warehouse: Warehouse, inbox: tuple[Inbox, int]
) -> None:
    box, port = inbox
    _workspace(sqlite_warehouse, recipients=None)
    out = deliver_close_pack(sqlite_warehouse, _settings(port), "w", "2026-10", PDF, NAME)
    assert out.status == "not_configured" and box.messages == [] and _log(sqlite_warehouse) == []
    [ws] = list_workspaces(sqlite_warehouse)
    assert ws.settings["report_email"] is None
    with pytest.raises(ReportEmailConfigError):
        send_report_email(_settings(port), ws, "s", "b", [])
    # A direct send names its recipients; the SMTP relay must be configured.
    sent = send_report_email(
        _settings(port), ws, "Report", "Body", [("a.csv", b"x,y\r\n", "text/csv")],
        recipients=["ops@example.com"],
    )  # fmt: skip
    assert sent.recipients == ("ops@example.com",) and len(box.messages) == 1
    with pytest.raises(ReportEmailConfigError, match="FP_SMTP_HOST"):
        send_report_email(Settings(), ws, "s", "b", [], recipients=["ops@example.com"])


def test_the_workspace_setting_is_validated(sqlite_warehouse: Warehouse) -> None:
    _workspace(sqlite_warehouse, recipients=None)
    stored = set_report_email(sqlite_warehouse, "w", ["cfo@example.com", "cfo@example.com"])
    assert stored == {"recipients": ["cfo@example.com"]}
    [ws] = list_workspaces(sqlite_warehouse)
    assert report_email_recipients(ws.settings) == ("cfo@example.com",)
    for bad in (["not an address"], ["a@localhost"], ["x@example.com\r\nBcc: y@example.com"]):
        with pytest.raises(ReportEmailConfigError):
            set_report_email(sqlite_warehouse, "w", bad)
    with pytest.raises(ReportEmailConfigError):
        report_email_recipients({"report_email": {"recipients": "cfo@example.com"}})
    set_report_email(sqlite_warehouse, "w", [])
    assert list_workspaces(sqlite_warehouse)[0].settings["report_email"] is None


def test_starttls_required_but_not_offered_fails_at_once(
    sqlite_warehouse: Warehouse, inbox: tuple[Inbox, int]
) -> None:
    box, port = inbox
    _workspace(sqlite_warehouse)
    # The local server offers no STARTTLS: with FP_SMTP_STARTTLS on nothing goes out in clear.
    out = deliver_close_pack(
        sqlite_warehouse, _settings(port, smtp_starttls=True), "w", "2026-10", PDF, NAME
    )
    assert out.status == "failed" and out.attempts == 1 and box.messages == []
    assert out.error and "STARTTLS" in out.error and box.logins == []
