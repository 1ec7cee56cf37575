"""`finance-pipeline org set-tier ORG TIER`: how an operator moves an organization between tiers
(the 003 margins API needs pro or above); new organizations are free."""

from __future__ import annotations

import pytest

from finance_pipeline import cli
from finance_pipeline.resources import warehouse_for
from finance_pipeline.settings import get_settings
from finance_pipeline.tenancy import create_organization, org_tier


def test_set_tier(capsys: pytest.CaptureFixture[str]) -> None:
    get_settings.cache_clear()
    wh = warehouse_for(get_settings().resolved_warehouse_url)
    org = create_organization(wh, "Acme")
    assert org_tier(wh, org) == "free"
    assert cli.main(["org", "set-tier", org, "pro"]) == 0
    assert org_tier(wh, org) == "pro"
    assert f"{org}: tier pro" in capsys.readouterr().out
    assert cli.main(["org", "set-tier", org, "gold"]) == 2
    assert "free, pro, enterprise" in capsys.readouterr().err
    assert cli.main(["org", "set-tier", "org_nobody", "pro"]) == 1
    assert org_tier(wh, org) == "pro"
    assert org_tier(wh, "org_nobody") is None
