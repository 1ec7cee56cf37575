"""Stateful local Stripe stand-in (tests, demo, benchmarks) served to the real ``stripe`` SDK.

Public entry points (imported lazily so ``shapes`` stays cheap to import):
``Store``, ``Clock``, ``StandIn``, ``RemoteStandIn``, ``FaultInjector``, and the ``shapes`` builders.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Clock": "store",
    "Store": "store",
    "StoreError": "store",
    "StandIn": "server",
    "RemoteStandIn": "server",
    "FaultInjector": "faults",
    "FaultConfig": "faults",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
