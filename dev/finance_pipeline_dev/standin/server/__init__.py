"""The stand-in's HTTP server: Stripe's read API (v1 GETs) plus a ``/_standin/`` control plane.

A threaded HTTP/1.1 keep-alive server from the standard library. Requests are authenticated with
the store's API keys, may be failed by the fault injector, and are recorded in a request log that
never holds a full API key. ``StandIn`` is the in-process handle; ``RemoteStandIn`` drives a
stand-in served by another process through the control plane.

Modules: ``params`` (query decoding and validation), ``listing`` (resources, filters,
pagination), ``api`` (auth, routing, endpoints, expansion, request log), ``handler`` (HTTP
handler and server), ``control`` (control plane and ``RemoteStandIn``), ``inprocess``
(``StandIn``); import from here.
"""

from __future__ import annotations

from .api import PERMISSION_NAMES
from .control import RemoteStandIn
from .inprocess import StandIn
from .listing import RESOURCES, Predicate, Resource
from .params import ApiError, parse_query

__all__ = [
    "PERMISSION_NAMES",
    "RESOURCES",
    "ApiError",
    "Predicate",
    "RemoteStandIn",
    "Resource",
    "StandIn",
    "parse_query",
]
