"""The history generator: simulates customers and subscriptions and emits Stripe objects.

Each subscription runs as a small discrete-event simulation (a heap of timed actions: renewals,
mid-period changes, payment retries, discount ends, pause resumes, cancellations). Every change is
committed twice: as a ``SubState`` of the ground-truth timeline (``sim_model``) and as a render
version of the Stripe subscription, so events can show the object as it was at their time.
Objects that change after creation (subscriptions, invoices, charges) keep versions; immutable ones
(refunds, credit notes, balance transactions, invoice payments) are plain dicts.

Modules: ``basics`` (time units, billing boundaries, ids, fees), ``objects`` (versioned objects
and simulation records), ``recorder`` (``Engine``: objects, events, charges and refunds),
``subscription`` (``SubSim``) with its mixins ``lifecycle``, ``invoicing`` and ``changes``, and
``customers`` (scripts, plan choice, ``run_customer``); import from here.
"""

from __future__ import annotations

from .basics import DAY, EVENT_RETENTION, HOUR, Ids, add_months_ts, fee_for, period_boundary
from .customers import SCRIPTS, CustomerSim, Script, choose_plan, run_customer
from .invoicing import RETRY_OFFSETS_LONG, RETRY_OFFSETS_SHORT
from .lifecycle import MID_PROBS
from .objects import ChargeSim, DiscSim, InvoiceSim, ItemSim, LineSpec, Static, Versioned
from .recorder import FAILURE_CODES, Engine
from .subscription import SubSim

__all__ = [
    "DAY",
    "EVENT_RETENTION",
    "FAILURE_CODES",
    "HOUR",
    "MID_PROBS",
    "RETRY_OFFSETS_LONG",
    "RETRY_OFFSETS_SHORT",
    "SCRIPTS",
    "ChargeSim",
    "CustomerSim",
    "DiscSim",
    "Engine",
    "Ids",
    "InvoiceSim",
    "ItemSim",
    "LineSpec",
    "Script",
    "Static",
    "SubSim",
    "Versioned",
    "add_months_ts",
    "choose_plan",
    "fee_for",
    "period_boundary",
    "run_customer",
]
