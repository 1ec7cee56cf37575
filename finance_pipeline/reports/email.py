"""Optional report emails over SMTP: the close pack (and any report) mailed to a workspace's
recipients, retried with the shared backoff, logged in app.report_emails so a re-run never resends.

A workspace opts in with the settings key "report_email": `{"recipients": ["cfo@example.com"]}`
(`set_report_email`). The relay comes from FP_SMTP_HOST, FP_SMTP_PORT, FP_SMTP_USER,
FP_SMTP_PASSWORD, FP_SMTP_FROM and FP_SMTP_STARTTLS (settings.py); the password is never logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import smtplib
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from finance_pipeline.lib.backoff import BackoffPolicy
from finance_pipeline.reports.pdf.render import MONTH_NAMES
from finance_pipeline.settings import Settings
from finance_pipeline.tenancy import Workspace, list_workspaces
from finance_pipeline.warehouse.db import Warehouse

SETTINGS_KEY = "report_email"
MAX_RECIPIENTS = 50
DEFAULT_MAX_ATTEMPTS = 5
# SMTP retries: 1-2 s, 2-4 s, 4-8 s, ... capped at 60 s (the shared lib.backoff policy).
EMAIL_BACKOFF = BackoffPolicy(base_seconds=2.0, max_seconds=60.0)
# A 'sending' claim older than this is taken to be a crashed run and may be retried.
STALE_CLAIM_SECONDS = 3600
PDF_MIME = "application/pdf"

log = logging.getLogger(__name__)

Attachment = tuple[str, bytes, str]  # (file name, bytes, MIME type such as "application/pdf")


class ReportEmailConfigError(ValueError):
    """A workspace's "report_email" setting or the SMTP settings are missing or malformed."""


class ReportEmailError(RuntimeError):
    """The message could not be handed to the SMTP server; `attempts` were made."""

    def __init__(self, reason: str, attempts: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts


@dataclass(frozen=True)
class SentEmail:
    """A message the SMTP server accepted: its Message-ID, who got it and who was refused."""

    message_id: str
    recipients: tuple[str, ...]
    attempts: int
    refused: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EmailOutcome:
    """What a delivery did: sent, already_sent (the log says delivered), not_configured (the
    workspace has no recipients), busy (another run is sending it) or failed (with the reason)."""

    status: str
    delivery_key: str
    recipients: tuple[str, ...] = ()
    attempts: int = 0
    error: str | None = None
    message_id: str | None = None


def _check_address(value: Any) -> str:
    if not isinstance(value, str) or "@" not in value:
        raise ReportEmailConfigError(f"{value!r} is not an email address")
    try:
        addr = Address(addr_spec=value.strip())
    except (ValueError, IndexError) as exc:
        raise ReportEmailConfigError(f"{value!r} is not an email address") from exc
    if not addr.username or "." not in addr.domain:
        raise ReportEmailConfigError(f"{value!r} is not an email address")
    return addr.addr_spec


def report_email_recipients(ws_settings: Mapping[str, Any]) -> tuple[str, ...]:
    """The workspace's report recipients; empty when report emails are off."""
    raw = ws_settings.get(SETTINGS_KEY)
    if not raw:
        return ()
    if not isinstance(raw, Mapping) or set(raw) - {"recipients"}:
        raise ReportEmailConfigError('report_email must be {"recipients": [addresses]}')
    recipients = raw.get("recipients") or []
    if not isinstance(recipients, list) or len(recipients) > MAX_RECIPIENTS:
        raise ReportEmailConfigError(
            f"report_email.recipients must be a list of at most {MAX_RECIPIENTS} addresses"
        )
    return tuple(dict.fromkeys(_check_address(r) for r in recipients))


def set_report_email(wh: Warehouse, workspace_id: str, recipients: Sequence[str]) -> dict[str, Any]:
    """Turn report emails on for a workspace (or off with no recipients); returns the setting."""
    value = {
        "recipients": list(
            report_email_recipients({SETTINGS_KEY: {"recipients": list(recipients)}})
        )
    }
    with wh.begin() as db:
        row = db.execute(
            wh.text("SELECT settings_json FROM app.workspaces WHERE id = :w"), {"w": workspace_id}
        ).first()
        if row is None:
            raise KeyError(f"workspace {workspace_id} does not exist")
        current = dict(json.loads(row[0]) if isinstance(row[0], str) else row[0] or {})
        current[SETTINGS_KEY] = value if value["recipients"] else None
        tbl = wh.table("app.workspaces")
        db.execute(
            tbl.update()
            .where(tbl.c.id == workspace_id)
            .values(settings_json=current, updated_at=int(time.time()))
        )
    return value


def _sender(settings: Settings) -> str:
    if not settings.smtp_host or not settings.smtp_from:
        raise ReportEmailConfigError("report emails need FP_SMTP_HOST and FP_SMTP_FROM")
    return settings.smtp_from


def build_message(
    settings: Settings,
    workspace: Workspace,
    recipients: Sequence[str],
    subject: str,
    body: str,
    attachments: Sequence[Attachment],
) -> EmailMessage:
    """The MIME message: plain-text body, each attachment with its type and file name."""
    sender = _sender(settings)
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].strip("> ") or None)
    msg["X-Finance-Pipeline-Workspace"] = workspace.id
    msg.set_content(body)
    for name, data, mime in attachments:
        maintype, _, subtype = mime.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg


def _redact(text: str, settings: Settings) -> str:
    # Servers sometimes echo what they were sent; the password must not reach a log or a row.
    secret = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
    return text.replace(secret, "***") if secret else text


def _classify(exc: Exception) -> tuple[str, bool]:
    """(reason, retry?): 4xx replies, dropped and refused connections are retried; 5xx are not."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        detail = "; ".join(f"{r}: {c} {m!r}" for r, (c, m) in sorted(exc.recipients.items()))
        return f"all recipients refused: {detail}", all(400 <= c < 500 for c in codes)
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else ""
        return f"SMTP {exc.smtp_code} {text or exc.smtp_error}", 400 <= exc.smtp_code < 500
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return f"connection dropped: {exc}", True
    if isinstance(exc, smtplib.SMTPException):
        return f"SMTP error: {type(exc).__name__}: {exc}", False
    return f"connection error: {type(exc).__name__}: {exc}", True


def _send_once(settings: Settings, msg: EmailMessage) -> dict[str, Any]:
    with smtplib.SMTP(
        settings.smtp_host or "", settings.smtp_port, timeout=settings.smtp_timeout_seconds
    ) as smtp:
        smtp.ehlo()
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()
        if settings.smtp_user:
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
            smtp.login(settings.smtp_user, password)
        return smtp.send_message(msg)


def send_report_email(
    settings: Settings,
    workspace: Workspace,
    subject: str,
    body: str,
    attachments: Sequence[Attachment],
    *,
    recipients: Sequence[str] | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    backoff: Callable[[int], float] = EMAIL_BACKOFF.delay,
    sleep: Callable[[float], None] = time.sleep,
) -> SentEmail:
    """Mail one message to the workspace's recipients (or `recipients`), retrying 4xx replies and
    connection failures; raises ReportEmailError with the last reason when every attempt failed.

    This sends unconditionally: `deliver_report_email` is the deduplicating entry point.
    """
    to = (
        tuple(recipients) if recipients is not None else report_email_recipients(workspace.settings)
    )
    if not to:
        raise ReportEmailConfigError(f"workspace {workspace.id} has no report email recipients")
    msg = build_message(settings, workspace, to, subject, body, attachments)
    reason = ""
    for attempt in range(1, max_attempts + 1):
        try:
            refused = _send_once(settings, msg)
        except Exception as exc:
            reason, retry = _classify(exc)
            reason = _redact(reason, settings)
            log.warning(
                "report email %r to %s: attempt %d failed: %s",
                subject,
                workspace.id,
                attempt,
                reason,
            )
            if not retry:
                raise ReportEmailError(reason, attempt) from None
            if attempt < max_attempts:
                sleep(backoff(attempt))
            continue
        log.info("report email %r sent for %s to %d recipient(s)", subject, workspace.id, len(to))
        return SentEmail(
            str(msg["Message-ID"]),
            to,
            attempt,
            {r: f"{c} {m!r}" for r, (c, m) in (refused or {}).items()},
        )
    raise ReportEmailError(f"gave up after {max_attempts} attempts: {reason}", max_attempts)


def _claim(wh: Warehouse, workspace_id: str, key: str, subject: str, to: Sequence[str]) -> str:
    """Take the delivery key for this run: 'claimed', or the row's status when it is taken."""
    now = int(time.time())
    params = {"w": workspace_id, "k": key, "s": subject, "r": ",".join(to), "t": now}
    with wh.begin() as db:
        taken = db.execute(
            wh.text(
                "UPDATE app.report_emails SET status = 'sending', subject = :s, recipients = :r,"
                " last_attempt_at = :t WHERE workspace_id = :w AND delivery_key = :k"
                " AND (status = 'failed' OR (status = 'sending' AND last_attempt_at < :stale))"
            ),
            {**params, "stale": now - STALE_CLAIM_SECONDS},
        ).rowcount
        if taken:
            return "claimed"
        row = db.execute(
            wh.text(
                "SELECT status FROM app.report_emails WHERE workspace_id = :w AND delivery_key = :k"
            ),
            params,
        ).first()
        if row is not None:
            return str(row[0])
        inserted = wh.insert_new(
            db,
            "app.report_emails",
            [
                {
                    "workspace_id": workspace_id,
                    "delivery_key": key,
                    "subject": subject,
                    "recipients": params["r"],
                    "status": "sending",
                    "attempts": 0,
                    "first_attempt_at": now,
                    "last_attempt_at": now,
                }
            ],
            key=("workspace_id", "delivery_key"),
        )
    # insert_new skips an existing key: a concurrent run inserted it first and is sending.
    return "claimed" if inserted else "sending"


def _record(
    wh: Warehouse, workspace_id: str, key: str, attempts: int, **values: str | None
) -> None:
    now = int(time.time())
    ok = values.get("status") == "delivered"
    with wh.begin() as db:
        db.execute(
            wh.text(
                "UPDATE app.report_emails SET status = :st, attempts = attempts + :n,"
                " last_error = :e, message_id = :m, last_attempt_at = :t, delivered_at = :d"
                " WHERE workspace_id = :w AND delivery_key = :k"
            ),
            {
                "st": values["status"],
                "n": attempts,
                "e": values.get("error"),
                "m": values.get("message_id"),
                "t": now,
                "d": now if ok else None,
                "w": workspace_id,
                "k": key,
            },
        )


def deliver_report_email(
    wh: Warehouse,
    settings: Settings,
    workspace: Workspace,
    delivery_key: str,
    subject: str,
    body: str,
    attachments: Sequence[Attachment],
    **send_options: Any,
) -> EmailOutcome:
    """Send once per (workspace, delivery key): skipped when logged delivered or being sent, or
    when the workspace has no recipients; the outcome is recorded in app.report_emails."""
    to = report_email_recipients(workspace.settings)
    if not to:
        return EmailOutcome("not_configured", delivery_key)
    state = _claim(wh, workspace.id, delivery_key, subject, to)
    if state == "delivered":
        return EmailOutcome("already_sent", delivery_key, to)
    if state != "claimed":
        return EmailOutcome("busy", delivery_key, to)
    try:
        sent = send_report_email(
            settings, workspace, subject, body, attachments, recipients=to, **send_options
        )
    except (ReportEmailError, ReportEmailConfigError) as exc:
        attempts = getattr(exc, "attempts", 0)
        _record(wh, workspace.id, delivery_key, attempts, status="failed", error=str(exc))
        return EmailOutcome("failed", delivery_key, to, attempts, str(exc))
    except BaseException:
        # Unknown whether the server got it: release the claim as failed so a re-run decides.
        _record(wh, workspace.id, delivery_key, 1, status="failed", error="interrupted")
        raise
    refused = "; ".join(f"refused {r}: {m}" for r, m in sorted(sent.refused.items())) or None
    _record(
        wh,
        workspace.id,
        delivery_key,
        sent.attempts,
        status="delivered",
        error=refused,
        message_id=sent.message_id,
    )
    return EmailOutcome("sent", delivery_key, to, sent.attempts, refused, sent.message_id)


def deliver_close_pack(
    wh: Warehouse,
    settings: Settings,
    workspace_id: str,
    month: str,
    pdf_bytes: bytes,
    file_name: str,
    **send_options: Any,
) -> EmailOutcome:
    """Mail a month's close pack PDF to the workspace's recipients, once per rendering: a re-run
    sends nothing, a restated pack (different bytes) is sent again."""
    ws = next((w for w in list_workspaces(wh) if w.id == workspace_id), None)
    if ws is None:
        raise KeyError(f"workspace {workspace_id} does not exist")
    digest = hashlib.sha256(pdf_bytes).hexdigest()
    label = f"{MONTH_NAMES[int(month[5:7]) - 1]} {month[:4]}"
    body = (
        f"The month-end close pack of {ws.name} for {label} is attached ({file_name}).\n\n"
        f"Amounts are in {ws.reporting_currency.upper()}; the month's CSV reports are attached "
        "inside the PDF.\n"
        f"SHA-256 of the PDF: {digest}\n\n"
        "Sent by finance_pipeline.\n"
    )
    return deliver_report_email(
        wh,
        settings,
        ws,
        f"close_pack/{month}/{digest}",
        f"{ws.name}: month-end close pack, {label}",
        body,
        [(file_name, pdf_bytes, PDF_MIME)],
        **send_options,
    )
