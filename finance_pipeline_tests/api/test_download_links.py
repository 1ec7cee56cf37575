"""Signed download links of report exports open their own file only (docs/security.md): a link's
signature does not carry over to another export (another tenant's or the same tenant's), to a
later expiry or from another purpose's key; an expired link is refused; and a catalogue path that
points outside the reports folder serves nothing. test_platform_finance_jobs covers the link's
happy path, tampering and expiry."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from collections.abc import Iterator

import pytest

from finance_pipeline.api.platform_finance import links
from finance_pipeline.reports.exports import run_export
from finance_pipeline.secrets import signing_key
from finance_pipeline_tests.api.conftest import ApiServer, _factory
from finance_pipeline_tests.api.test_platform_finance_jobs import _org
from finance_pipeline_tests.api.test_platform_finance_mrr import BASE, assert_pf_error

EXPORT = {
    "report_type": "revenue_trend",
    "format": "csv",
    "date_start": "2026-01-01",
    "date_end": "2026-01-31",
}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """Requests stay queued: the test renders the exports as the export sensor would."""
    make, started = _factory(tmp_path_factory.mktemp("links"))
    yield make(requests_inline=False)
    for server in started:
        server.stop()


def _completed_export(api: ApiServer) -> tuple[str, str, bytes]:
    """A new organization's completed export: its id, its download token and the file's bytes."""
    acct, _ = _org(api, stripe=False)
    r = api.client.post(f"{BASE}/reports/export", json=EXPORT, headers=acct.headers)
    assert r.status_code == 202, r.text
    export_id = r.json()["data"]["export_id"]
    done = run_export(api.wh, api.settings.resolved_reports_dir, export_id)
    assert done["status"] == "completed", done
    data = api.client.get(f"{BASE}/reports/export/{export_id}", headers=acct.headers).json()
    token = data["data"]["download_url"].rsplit("/", 1)[1]
    return export_id, token, (api.settings.resolved_reports_dir / done["path"]).read_bytes()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _download(api: ApiServer, token: str) -> tuple[int, str, bytes]:
    r = api.client.get(f"{BASE}/reports/download/{token}")
    code = r.json()["error"]["code"] if r.status_code >= 400 else ""
    return r.status_code, code, r.content


def test_a_link_opens_its_own_file_and_no_other(api: ApiServer) -> None:
    a_id, a_token, a_file = _completed_export(api)
    b_id, b_token, b_file = _completed_export(api)
    assert _download(api, a_token) == (200, "", a_file)
    assert _download(api, b_token) == (200, "", b_file)
    a_sig = a_token.split(".")[1]
    b_message, _ = b_token.split(".")
    expires = int(time.time()) + 600
    forged = {
        # A's signature replayed on B's export id (another tenant's file).
        "A's signature, B's export": f"{b_message}.{a_sig}",
        # A's signature on a later expiry.
        "A's signature, later expiry": f"{_b64(f'{a_id}:{expires + 3600}'.encode())}.{a_sig}",
        # A's id with the expiry of A's link but another export's separator trick.
        "B's id appended": f"{_b64(f'{a_id}:{b_id}:{expires}'.encode())}.{a_sig}",
    }
    # Signed with a key that is not this purpose's: another purpose's derived key, and the master
    # key itself.
    for name, key in {
        "another purpose's key": signing_key("jwt", api.settings),
        "the master key": api.settings.secret_key.get_secret_value().encode(),
    }.items():
        message = f"{b_id}:{expires}".encode()
        forged[name] = f"{_b64(message)}.{_b64(hmac.new(key, message, hashlib.sha256).digest())}"
    for name, token in forged.items():
        status, code, body = _download(api, token)
        assert (status, code) == (403, "invalid_link"), name
        assert a_file not in body and b_file not in body and b_id.encode() not in body, name
    # A link of A's that has expired, signed correctly: refused, whatever it names.
    for export_id in (a_id, b_id):
        expired = links.sign(api.settings, export_id, int(time.time()) - 1)
        assert _download(api, expired)[:2] == (403, "link_expired")


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink", "the key file"])
def test_a_catalogue_path_outside_the_reports_folder_serves_nothing(
    api: ApiServer, where: str
) -> None:
    """Even a correctly signed link serves only files inside the reports folder: a catalogue entry
    whose path leads out of it (as a tampered or corrupted catalogue would hold) is a 404."""
    export_id, token, _ = _completed_export(api)
    reports = api.settings.resolved_reports_dir
    outside = reports.parent / f"outside-{os.urandom(4).hex()}.csv"
    outside.write_bytes(b"not a report, never served\n")
    path = {
        "parent": f"../{outside.name}",
        "absolute": str(outside),
        "symlink": f"link-{os.urandom(4).hex()}/{outside.name}",
        "the key file": "../.jwt_secret",
    }[where]
    if where == "symlink":
        (reports / path.split("/")[0]).symlink_to(outside.parent)
    with api.wh.begin() as db:
        db.execute(
            api.wh.text(
                "UPDATE app.report_catalogue SET path = :p WHERE id ="
                " (SELECT catalogue_id FROM app.report_exports WHERE id = :i)"
            ),
            {"p": path, "i": export_id},
        )
    r = api.client.get(f"{BASE}/reports/download/{token}")
    assert_pf_error(r, 404, "resource_missing", "token")
    assert b"never served" not in r.content


def test_a_link_to_an_export_that_is_not_completed_serves_nothing(api: ApiServer) -> None:
    acct, _ = _org(api, stripe=False)
    r = api.client.post(f"{BASE}/reports/export", json=EXPORT, headers=acct.headers)
    export_id = r.json()["data"]["export_id"]
    for name in (export_id, "export_missing"):
        token = links.sign(api.settings, name, int(time.time()) + 600)
        assert_pf_error(api.client.get(f"{BASE}/reports/download/{token}"), 404, "resource_missing")
