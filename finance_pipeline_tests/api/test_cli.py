"""`finance-pipeline api`: uvicorn with the app factory (so workers > 1 work), production checks."""

from __future__ import annotations

from typing import Any

import pytest

from finance_pipeline import cli
from finance_pipeline.settings import get_settings


def test_api_command_runs_uvicorn_with_the_factory(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    assert cli.main(["api", "--host", "0.0.0.0", "--port", "8123", "--workers", "2"]) == 0
    app, kw = calls[0]
    assert app == "finance_pipeline.api.app:app_from_settings"
    assert kw["factory"] is True
    assert (kw["host"], kw["port"], kw["workers"]) == ("0.0.0.0", 8123, 2)


def test_production_needs_a_shared_jwt_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("must not start"))
    monkeypatch.setenv("FP_DEPLOYMENT", "production")
    monkeypatch.setenv("FP_WAREHOUSE_URL", "postgresql://fp@db/fp")
    get_settings.cache_clear()
    assert cli.main(["api"]) == 1
    assert "FP_JWT_SECRET" in capsys.readouterr().err
