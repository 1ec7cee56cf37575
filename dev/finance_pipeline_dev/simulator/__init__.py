"""Seeded Stripe history simulator with an independent ground truth.

``simulate(seed, customers, months, ...)`` generates a realistic multi-year Stripe history (trials,
upgrades/downgrades with proration, seat changes, coupons, failed payments ending unpaid / void /
uncollectible, refunds, credit notes, churn, reactivation, pauses, several currencies incl. JPY,
fees, taxes, metered items, invoices with more than 10 lines) as a stand-in fixture; the exact MRR and
movements it implies (``sim_truth``, docs/metrics.md §3-5); daily FX rates; and the CSV files of the cost
landing folder. Deterministic for a seed: only ``random.Random(seed)`` streams, and the wall clock
only for the default ``end`` (today, UTC).
"""

from __future__ import annotations

import calendar
import csv
import json
import math
import pickle
import random
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from finance_pipeline.lib.ingest_validation import CSV_HEADERS
from finance_pipeline.lib.money import minor_unit_exponent, parse_decimal_amount
from finance_pipeline.lib.timeutil import day_start_ts
from finance_pipeline_dev.standin import shapes

from .catalog import Catalog, build_catalog, local_amount
from .engine import (
    DAY,
    SCRIPTS,
    ChargeSim,
    CustomerSim,
    Engine,
    Ids,
    InvoiceSim,
    Static,
    SubSim,
    Versioned,
    run_customer,
)
from .model import ManualRecurring, SubTimeline
from .truth import GroundTruth, compute_ground_truth, gc_paused

__all__ = ["LANDING_HEADERS", "EventHistory", "Simulation", "fx_table", "simulate"]

#: ``retention``: events of the last 30 days before the clock only (what Stripe still serves);
#: ``full``: every event of the whole history, for a time-travelling stand-in.
EventHistory = Literal["retention", "full"]

#: Approximate USD value of one unit of each currency at the start of the history.
USD_VALUE = {
    "usd": 1.0,
    "eur": 1.085,
    "gbp": 1.27,
    "jpy": 0.00672,
    "cad": 0.74,
    "aud": 0.66,
    "chf": 1.13,
    "sek": 0.095,
    "nok": 0.094,
    "dkk": 0.146,
    "inr": 0.012,
    "brl": 0.2,
    "mxn": 0.058,
}
CURRENCY_WEIGHTS = {"usd": 50, "eur": 20, "gbp": 15, "jpy": 15}
SEGMENTS = {
    "smb": 38,
    "growth": 20,
    "enterprise": 6,
    "consumer": 12,
    "weekly": 5,
    "api": 9,
    "teampack": 10,
}
# The landing CSV contract is the validator's: the simulator writes exactly what the pipeline reads.
LANDING_HEADERS = {kind: list(cols) for kind, cols in CSV_HEADERS.items()}
_NAME_A = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Wonka",
    "Stark",
    "Wayne",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Aperture",
    "Black Mesa",
    "Massive Dynamic",
    "Oscorp",
    "Gringotts",
    "Monarch",
    "Nakatomi",
    "Pied Piper",
    "Dunder",
    "Sterling",
    "Prestige",
    "Bluth",
    "Kramerica",
    "Nimbus",
    "Quantum",
    "Blue Sun",
    "Zorg",
    "Weyland",
    "Rekall",
    "Virtucon",
    "Axiom",
    "Helix",
    "Lumen",
    "Orbit",
    "Pixel",
    "Northwind",
    "Contoso",
    "Fabrikam",
    "Tailspin",
    "Litware",
    "Adatum",
    "Kaizen",
    "Sakura",
    "Fuji",
    "Tanuki",
    "Edelweiss",
    "Alpen",
    "Thames",
    "Highland",
    "Brightside",
]
_NAME_B = {
    "usd": ["Inc", "Corp", "Labs", "LLC", "Systems", "Analytics", "Studio", "Health", "Logistics"],
    "eur": ["GmbH", "SAS", "BV", "AG", "SARL", "Oy", "AB", "SpA"],
    "gbp": ["Ltd", "PLC", "Partners", "Digital", "Group"],
    "jpy": ["KK", "Co., Ltd.", "Holdings", "Tech"],
}
_COUNTRY = {"usd": "US", "eur": "DE", "gbp": "GB", "jpy": "JP"}
_MODELS = [
    ("gpt-4o", 2500, 10000),
    ("gpt-4o-mini", 150, 600),
    ("claude-sonnet-4", 3000, 15000),
    ("text-embedding-3-small", 20, 0),
]


def add_months_date(d: date, months: int) -> date:
    """A calendar date plus whole months, clamping the day."""
    y, m = divmod(d.month - 1 + months, 12)
    y += d.year
    m += 1
    return date(y, m, min(d.day, calendar.monthrange(y, m)[1]))


def _quantize_sig(x: float, digits: int = 7) -> Decimal:
    exp = math.floor(math.log10(abs(x))) - (digits - 1)
    return Decimal(repr(x)).quantize(Decimal(1).scaleb(exp))


def fx_table(
    seed: int, currencies: tuple[str, ...], reporting: str, first_day: date, last_day: date
) -> dict[tuple[str, date], Decimal]:
    """Daily rates (1 unit of currency = rate units of reporting) for every non-reporting currency.

    A seeded random walk per currency against USD, crossed to the reporting currency and rounded to
    7 significant digits; these Decimals are exactly what the CSV holds and what the truth uses.
    """
    rng = random.Random(seed * 7919 + 17)
    names = sorted(set(currencies) | {reporting})
    usd = {c: USD_VALUE.get(c, 1.0) for c in names}
    out: dict[tuple[str, date], Decimal] = {}
    d = first_day
    while d <= last_day:
        for c in names:
            if c != "usd":
                usd[c] *= math.exp(rng.gauss(0.0, 0.004))
        for c in names:
            if c != reporting:
                out[(c, d)] = _quantize_sig(usd[c] / usd[reporting])
        d += timedelta(days=1)
    return out


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _fmt_amount(minor: int, currency: str) -> str:
    exp = minor_unit_exponent(currency)
    return str(Decimal(minor).scaleb(-exp)) if exp else str(minor)


@dataclass
class Simulation:
    """A generated history: stand-in fixture, ground truth and landing-folder rows."""

    seed: int
    first_day: date
    last_day: date
    clock: int
    tz: str
    reporting_currency: str
    currencies: tuple[str, ...]
    accounts: list[str]
    fixture: dict[str, Any]
    ground_truth: GroundTruth
    landing: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    event_history: EventHistory = "retention"

    @property
    def timelines(self) -> dict[str, SubTimeline]:
        """The internal timeline of every subscription, by subscription id."""
        return self.ground_truth.timelines

    def objects(self, account: str | None = None) -> list[dict[str, Any]]:
        """All Stripe objects of one account (default: the first)."""
        return self.fixture["accounts"][account or self.accounts[0]]["objects"]

    def write_fixture(self, path: str | Path) -> Path:
        """Write the stand-in fixture as JSON."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        dumps = json.JSONEncoder(separators=(",", ":")).encode
        # Streamed object by object: a 10k-customer history is >1 GB of JSON, which should not
        # exist twice in memory.
        with out.open("w", encoding="utf-8") as fh:
            fh.write('{"clock":' + dumps(self.fixture["clock"]))
            for k, v in self.fixture.items():
                if k not in ("clock", "accounts"):
                    fh.write("," + dumps(k) + ":" + dumps(v))
            fh.write(',"accounts":{')
            for i, (acct, body) in enumerate(self.fixture["accounts"].items()):
                head = "".join(f"{dumps(k)}:{dumps(v)}," for k, v in body.items() if k != "objects")
                fh.write(("," if i else "") + dumps(acct) + ":{" + head + '"objects":[')
                for j, obj in enumerate(body["objects"]):
                    fh.write(("," if j else "") + dumps(obj))
                fh.write("]}")
            fh.write("}}")
        return out

    def write_ground_truth(self, path: str | Path) -> Path:
        """Write the ground truth as JSON (exact values as "n" or "num/den" strings)."""
        return self.ground_truth.write(path)

    def write_landing(self, folder: str | Path) -> dict[str, Path]:
        """Write one CSV per kind into the cost landing folder; returns kind -> path."""
        root = Path(folder)
        root.mkdir(parents=True, exist_ok=True)
        stamp = self.last_day.isoformat()
        paths = {}
        for kind, header in LANDING_HEADERS.items():
            p = root / f"{kind}_{stamp}.csv"
            with p.open("w", newline="", encoding="utf-8") as fh:
                w = csv.DictWriter(fh, fieldnames=header, lineterminator="\n")
                w.writeheader()
                w.writerows(self.landing.get(kind, []))
            paths[kind] = p
        return paths


def simulate(
    seed: int = 7,
    customers: int = 300,
    months: int = 24,
    end: date | None = None,
    accounts: int = 1,
    currencies: tuple[str, ...] = ("usd", "eur", "gbp", "jpy"),
    reporting_currency: str = "usd",
    tz: str = "UTC",
    event_history: EventHistory = "retention",
) -> Simulation:
    """Generate ``customers`` customers over ``months`` months ending on local day ``end``.

    The clock is the last second of ``end`` in ``tz``; the history starts on the day after
    ``end - months``. Customers are spread over ``accounts`` accounts. ``event_history="full"``
    emits every event of the whole history (a ``*.created`` event per object, an update event per
    change) and marks the fixture ``"time_travel": true`` so the stand-in serves the account as
    of its clock; the objects themselves are the same as with ``"retention"``.
    """
    if event_history not in ("retention", "full"):
        raise ValueError(f"event_history must be 'retention' or 'full', not {event_history!r}")
    with gc_paused():
        return _simulate(
            seed,
            customers,
            months,
            end,
            accounts,
            currencies,
            reporting_currency,
            tz,
            event_history,
        )


def _simulate(
    seed: int,
    customers: int,
    months: int,
    end: date | None,
    accounts: int,
    currencies: tuple[str, ...],
    reporting_currency: str,
    tz: str,
    event_history: EventHistory = "retention",
) -> Simulation:
    currencies = tuple(c.lower() for c in currencies)
    reporting_currency = reporting_currency.lower()
    if end is None:
        end = datetime.now(UTC).date()
    first_day = add_months_date(end, -months) + timedelta(days=1)
    start_ts = day_start_ts(first_day, tz)
    clock = day_start_ts(end + timedelta(days=1), tz) - 1
    rng = random.Random(seed)
    ids = Ids(seed)
    eng = Engine(rng, ids, start_ts, clock, full_history=event_history == "full")

    acct_ids = [ids("acct")[:21] for _ in range(max(1, accounts))]
    catalogs: dict[str, Catalog] = {}
    for acct in acct_ids:
        catalogs[acct] = build_catalog(ids, start_ts - 30 * DAY, currencies)

    weights = [CURRENCY_WEIGHTS.get(c, 10) for c in currencies]
    seg_names, seg_weights = list(SEGMENTS), list(SEGMENTS.values())
    used_names: set[str] = set()
    customers_sim: list[CustomerSim] = []
    subs: list[SubSim] = []
    span = max(clock - DAY - start_ts, DAY)
    for i in range(customers):
        acct = acct_ids[i % len(acct_ids)]
        cur = rng.choices(currencies, weights)[0]
        if rng.random() < 0.3:
            created = start_ts + rng.randint(0, min(20 * DAY, span))
        else:
            created = start_ts + rng.randint(0, span)
        # The first customers of each account follow scripts, so every feature exists at any size.
        script = SCRIPTS[i // len(acct_ids)] if i // len(acct_ids) < len(SCRIPTS) else None
        if script is not None:
            if script.currency in currencies:
                cur = script.currency
            created = (
                max(start_ts, clock - 6 * DAY)
                if script.recent
                else start_ts + rng.randint(0, min(5 * DAY, span))
            )
        base = f"{rng.choice(_NAME_A)} {rng.choice(_NAME_B.get(cur, _NAME_B['usd']))}"
        name = base
        n = 2
        while name in used_names:
            name = f"{base} {n}"
            n += 1
        used_names.add(name)
        seg = rng.choices(seg_names, seg_weights)[0]
        cid = ids("cus")
        taxed = rng.random() < 0.35
        if script is not None:
            seg = script.segment
            taxed = taxed if script.taxed is None else script.taxed
        obj = shapes.make_customer(
            cid,
            created=created,
            email=f"billing@{_slug(name)}.example",
            name=name,
            currency=None,
            description=None,
            metadata={"segment": seg},
            livemode=False,
        )
        obj["invoice_settings"]["default_payment_method"] = ids("pm")
        if taxed:
            obj["address"] = {
                "city": None,
                "country": _COUNTRY.get(cur, "US"),
                "line1": None,
                "line2": None,
                "postal_code": None,
                "state": "NY" if cur == "usd" else None,
            }
        cust = CustomerSim(
            id=cid,
            account=acct,
            currency=cur,
            created=created,
            name=name,
            email=obj["email"],
            segment=seg,
            risky=rng.random() < 0.1 and script is None,
            seat_heavy=(seg in ("growth", "enterprise", "teampack") and rng.random() < 0.12)
            or (script is not None and script.seat_heavy),
            taxed=taxed,
            obj=obj,
            script=script,
        )
        customers_sim.append(cust)
        created_obj = Static(dict(obj), created)
        eng.owner[id(created_obj)] = acct
        eng.event(created, "customer.created", created_obj, 0)

    customers_sim.sort(key=lambda c: (c.created, c.id))
    for cust in customers_sim:
        never = rng.random() < 0.04 and cust.script is None
        second = rng.random() < 0.05 and cust.script is None
        run_customer(eng, catalogs[cust.account], cust, never, second, subs.append)

    fixture = _assemble(eng, ids, acct_ids, catalogs, customers_sim, subs, seed)
    fx = fx_table(seed, currencies, reporting_currency, first_day - timedelta(days=1), end)
    landing, manual = _landing(
        seed, customers_sim, subs, fx, reporting_currency, first_day, end, tz
    )
    truth = compute_ground_truth(
        [s.timeline() for s in subs],
        fx_rates=fx,
        reporting_currency=reporting_currency,
        first_day=first_day,
        last_day=end,
        tz=tz,
        manual=manual,
    )
    return Simulation(
        seed=seed,
        first_day=first_day,
        last_day=end,
        clock=clock,
        tz=tz,
        reporting_currency=reporting_currency,
        currencies=currencies,
        accounts=acct_ids,
        fixture=fixture,
        ground_truth=truth,
        landing=landing,
        event_history=event_history,
    )


# --------------------------------------------------------------------------- assembly


def _assemble(
    eng: Engine,
    ids: Ids,
    acct_ids: list[str],
    catalogs: dict[str, Catalog],
    customers: list[CustomerSim],
    subs: list[SubSim],
    seed: int,
) -> dict[str, Any]:
    """Number invoices, settle customer fields, render final objects and retained events."""
    for cust in customers:
        finalized = sorted(
            (inv for inv in cust.invoices if inv.finalized_at is not None),
            key=lambda inv: (inv.finalized_at, inv.id),
        )
        prefix = cust.obj["invoice_prefix"]
        for n, inv in enumerate(finalized, start=1):
            inv.number = f"{prefix}-{n:04d}"
        cust.obj["next_invoice_sequence"] = len(finalized) + 1
        cust.obj["delinquent"] = any(
            inv.status == "open" and inv.attempt_count > 0 for inv in cust.invoices
        )

    if eng.full_history:
        _complete_history(eng, catalogs, customers, subs)

    key_rng = random.Random(seed * 31 + 5)
    accounts: dict[str, Any] = {}
    for acct in acct_ids:
        cat = catalogs[acct]
        objs: list[dict[str, Any]] = []
        objs.extend(cat.products)
        objs.extend(e.stripe for e in cat.prices)
        objs.extend(c.stripe for c in cat.coupons)
        objs.extend(c.obj for c in customers if c.account == acct)
        objs.extend(s.render() for s in subs if s.account == acct)
        for o in eng.objects.get(acct, []):
            objs.append(o.render())
        key = "sk_test_" + "".join(
            key_rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(32)
        )
        accounts[acct] = {
            "livemode": False,
            "keys": {key: {"permissions": None}},
            "connected_accounts": [],
            "objects": objs,
        }

    sub_owner = {id(s): s.account for s in subs}
    # Full history: the events of one version share one copy of it (a long history would
    # otherwise hold several copies of every invoice with all its lines).
    shared: dict[tuple[int, int], Any] | None = {} if eng.full_history else None
    renders: dict[tuple[int, int], dict[str, Any]] = {}

    def render(obj: Versioned, idx: int) -> dict[str, Any]:
        if shared is None:
            return obj.render(idx)
        out = renders.get((id(obj), idx))
        if out is None:
            out = renders[(id(obj), idx)] = obj.render(idx)
        return out

    for t, _seq, type_, obj, idx in sorted(eng.events, key=lambda e: (e[0], e[1])):
        acct = sub_owner.get(id(obj)) or eng.owner.get(id(obj))
        if acct is None:
            continue
        data = render(obj, idx)
        prev = None
        if type_.endswith(".updated") and idx > 0:
            before = render(obj, idx - 1)
            prev = {k: before[k] for k in data if k in before and before[k] != data[k]}
        if shared is not None:
            copy_ = shared.get((id(obj), idx))
            if copy_ is None:
                copy_ = shared[(id(obj), idx)] = pickle.loads(pickle.dumps(data, -1))
            body: dict[str, Any] = {"object": copy_}
            if prev is not None:
                body["previous_attributes"] = pickle.loads(pickle.dumps(prev, -1))
            accounts[acct]["objects"].append(
                {
                    "id": ids("evt"),
                    "object": "event",
                    "api_version": shapes.API_VERSION,
                    "created": t,
                    "data": body,
                    "livemode": False,
                    "pending_webhooks": 0,
                    "request": {"id": None, "idempotency_key": None},
                    "type": type_,
                }
            )
            continue
        # Events carry their own copy of the object as it was (pickle is a fast deep copy).
        accounts[acct]["objects"].append(
            {
                "id": ids("evt"),
                "object": "event",
                "api_version": shapes.API_VERSION,
                "created": t,
                "data": pickle.loads(
                    pickle.dumps({"object": data, "previous_attributes": prev}, -1)
                )
                if prev is not None
                else {"object": pickle.loads(pickle.dumps(data, -1))},
                "livemode": False,
                "pending_webhooks": 0,
                "request": {"id": None, "idempotency_key": None},
                "type": type_,
            }
        )
    if eng.full_history:
        return {"clock": eng.clock, "time_travel": True, "accounts": accounts}
    return {"clock": eng.clock, "accounts": accounts}


class _CustomerHistory(Versioned):
    """The customer fields that invoicing changes over time: currency, next number, delinquent."""

    def __init__(self, final: dict[str, Any], versions: list[tuple[int, Any]]) -> None:
        super().__init__()
        self.final = final
        self.versions = versions

    def render_snapshot(self, snap: Any) -> dict[str, Any]:
        """The customer as it was in a recorded version."""
        currency, next_seq, delinquent = snap
        return {
            **self.final,
            "currency": currency,
            "next_invoice_sequence": next_seq,
            "delinquent": delinquent,
        }


def _customer_history(cust: CustomerSim) -> _CustomerHistory:
    """Replay the customer's invoices: currency from the first invoice, one number per
    finalized invoice, delinquent while an attempted invoice is open."""
    deltas: list[tuple[int, int, int]] = []  # (instant, finalized +1, delinquent +-1)
    for inv in cust.invoices:
        if inv.finalized_at is not None:
            deltas.append((inv.finalized_at, 1, 0))
        was = False
        for t, snap in inv.versions:
            now = snap[0] == "open" and snap[5] > 0  # status, attempt_count
            if now != was:
                deltas.append((t, 0, 1 if now else -1))
                was = now
    first_invoice = min((inv.created for inv in cust.invoices), default=None)
    if first_invoice is not None:
        deltas.append((first_invoice, 0, 0))
    deltas.sort()
    versions: list[tuple[int, Any]] = [(cust.created, (None, 1, False))]
    finalized = open_attempted = 0
    for i, (t, fin, dl) in enumerate(deltas):
        finalized += fin
        open_attempted += dl
        if i + 1 < len(deltas) and deltas[i + 1][0] == t:
            continue
        currency = cust.currency if first_invoice is not None and t >= first_invoice else None
        state = (currency, finalized + 1, open_attempted > 0)
        if state != versions[-1][1]:
            versions.append((t, state))
    return _CustomerHistory(cust.obj, versions)


def _default_event(obj: Versioned, idx: int) -> str | None:
    """The event type Stripe sends for a version no simulated action reported (None: none)."""
    if isinstance(obj, SubSim):
        return "customer.subscription.created" if idx == 0 else "customer.subscription.updated"
    if isinstance(obj, InvoiceSim):
        return "invoice.created" if idx == 0 else "invoice.updated"
    if isinstance(obj, ChargeSim):
        if idx == 0:
            return "charge.succeeded" if obj.base["status"] == "succeeded" else "charge.failed"
        return "charge.updated"
    if isinstance(obj, Static):
        kind = obj.obj.get("object")
        if kind == "invoice_payment":
            # Stripe has no event for a canceled (failed) invoice payment.
            return "invoice_payment.paid" if obj.obj.get("status") == "paid" else None
        # Balance transactions have no events at all.
        return {
            "refund": "refund.created",
            "credit_note": "credit_note.created",
            "discount": "customer.discount.created",
        }.get(str(kind))
    return None


def _complete_history(
    eng: Engine,
    catalogs: dict[str, Catalog],
    customers: list[CustomerSim],
    subs: list[SubSim],
) -> None:
    """Full history: add the catalogue's and customers' events, then an event for every
    recorded version of every object that no simulated action reported."""
    for acct, cat in catalogs.items():
        for kind, objs in (
            ("product", cat.products),
            ("price", [e.stripe for e in cat.prices]),
            ("coupon", [c.stripe for c in cat.coupons]),
        ):
            for o in objs:
                st = Static(o, o["created"])
                eng.owner[id(st)] = acct
                eng.event(o["created"], f"{kind}.created", st, 0)
    for cust in customers:
        hist = _customer_history(cust)
        eng.owner[id(hist)] = cust.account
        for idx in range(1, len(hist.versions)):
            eng.event(hist.versions[idx][0], "customer.updated", hist, idx)
    covered: dict[int, set[int]] = {}
    for _t, _seq, _type, obj, idx in eng.events:
        covered.setdefault(id(obj), set()).add(idx)
    every: list[Versioned] = [*subs, *(o for objs in eng.objects.values() for o in objs)]
    for obj in every:
        have = covered.get(id(obj), set())
        for idx, (t, _snap) in enumerate(obj.versions):
            if idx not in have:
                type_ = _default_event(obj, idx)
                if type_ is not None:
                    eng.event(t, type_, obj, idx)


# --------------------------------------------------------------------------- landing folder


def _landing(
    seed: int,
    customers: list[CustomerSim],
    subs: list[SubSim],
    fx: dict[tuple[str, date], Decimal],
    reporting: str,
    first_day: date,
    last_day: date,
    tz: str,
) -> tuple[dict[str, list[dict[str, str]]], list[ManualRecurring]]:
    """Realistic cost / expense / usage / manual revenue / FX rows, and the manual recurring MRR."""
    rng = random.Random(seed * 1_000_003 + 11)
    months: list[date] = []
    m = first_day.replace(day=1)
    while m <= last_day:
        if m >= first_day:
            months.append(m)
        m = add_months_date(m, 1)

    costs: list[dict[str, str]] = []
    recurring = [
        ("aws", "AWS", "INFRASTRUCTURE", 180_000, 0.03, "usd"),
        ("vercel", "Vercel Pro", "INFRASTRUCTURE", 2_000, 0.0, "usd"),
        ("datadog", "Datadog", "INFRASTRUCTURE", 31_000, 0.02, "usd"),
        ("hetzner", "Hetzner dedicated", "INFRASTRUCTURE", 9_000, 0.0, "eur"),
        ("github", "GitHub Team", "TOOLS", 8_400, 0.01, "usd"),
        ("slack", "Slack Pro", "TOOLS", 15_000, 0.01, "usd"),
        ("sentry", "Sentry", "TOOLS", 2_600, 0.0, "usd"),
        ("openai", "OpenAI API", "THIRD_PARTY", 60_000, 0.05, "usd"),
        ("twilio", "Twilio", "THIRD_PARTY", 12_000, 0.03, "usd"),
        ("google-ads", "Google Ads", "MARKETING", 250_000, 0.04, "usd"),
    ]
    for i, mday in enumerate(months):
        for slug, name, cat, cents, growth, cur in recurring:
            amount = int(cents * (1 + growth) ** i * rng.uniform(0.95, 1.05)) if growth else cents
            costs.append(
                {
                    "external_id": f"cost-{slug}-{mday:%Y-%m}",
                    "name": name,
                    "amount": _fmt_amount(amount, cur),
                    "currency": cur.upper(),
                    "category": cat,
                    "is_recurring": "true",
                    "note": "",
                    "date": mday.isoformat(),
                    "customer_tag": "",
                }
            )
    oneoffs = [
        ("Conference booth", "MARKETING", 850_000),
        ("Legal review", "OTHER", 320_000),
        ("Laptop", "OTHER", 249_900),
        ("Pentest", "THIRD_PARTY", 600_000),
        ("Podcast sponsorship", "MARKETING", 150_000),
        ("Logo redesign", "OTHER", 90_000),
    ]
    for j, (name, cat, cents) in enumerate(oneoffs):
        d = first_day + timedelta(days=rng.randint(0, (last_day - first_day).days))
        costs.append(
            {
                "external_id": f"cost-oneoff-{j + 1}",
                "name": name,
                "amount": _fmt_amount(cents, "usd"),
                "currency": "USD",
                "category": cat,
                "is_recurring": "false",
                "note": "one-off",
                "date": d.isoformat(),
                "customer_tag": "",
            }
        )
    big = [c for c in customers if c.segment == "enterprise" and c.subs] or [
        c for c in customers if c.subs
    ]
    for j, cust in enumerate(big[:3]):
        for mday in months[-6:]:
            costs.append(
                {
                    "external_id": f"cost-dedicated-{j + 1}-{mday:%Y-%m}",
                    "name": f"Dedicated instance ({cust.name})",
                    "amount": _fmt_amount(40_000, "usd"),
                    "currency": "USD",
                    "category": "INFRASTRUCTURE",
                    "is_recurring": "true",
                    "note": "single-tenant",
                    "date": mday.isoformat(),
                    "customer_tag": cust.id,
                }
            )

    expenses: list[dict[str, str]] = []
    for mday in months:
        expenses.append(
            {
                "external_id": f"payroll-{mday:%Y-%m}",
                "subtype": "recurring_expense",
                "amount_cents": str(4_200_000),
                "currency": "USD",
                "occurred_at": mday.isoformat(),
                "vendor": "Gusto payroll",
            }
        )
        expenses.append(
            {
                "external_id": f"rent-{mday:%Y-%m}",
                "subtype": "recurring_expense",
                "amount_cents": str(350_000),
                "currency": "USD",
                "occurred_at": mday.isoformat(),
                "vendor": "WeWork",
            }
        )
    for j, (vendor, cents) in enumerate(
        [
            ("Design contractor", 500_000),
            ("Recruiter fee", 1_200_000),
            ("Office furniture", 230_000),
            ("Offsite", 780_000),
        ]
    ):
        d = first_day + timedelta(days=rng.randint(0, (last_day - first_day).days))
        expenses.append(
            {
                "external_id": f"onetime-{j + 1}",
                "subtype": "one_time_expense",
                "amount_cents": str(cents),
                "currency": "USD",
                "occurred_at": d.isoformat(),
                "vendor": vendor,
            }
        )

    usage: list[dict[str, str]] = []
    n = 0
    clock_limit = day_start_ts(last_day + timedelta(days=1), tz) - 1
    by_cust: dict[str, list[SubSim]] = {}
    for s in subs:
        by_cust.setdefault(s.cust.id, []).append(s)
    for cust in customers:
        mode = rng.random()
        tag = cust.id if mode < 0.85 else _slug(cust.name)
        for s in by_cust.get(cust.id, []):
            lo = s.created
            hi = min(s.ended_at or clock_limit, clock_limit)
            t = lo
            while t < hi:
                for _ in range(rng.randint(1, 3)):
                    model, in_cost, out_cost = rng.choice(_MODELS)
                    reqs = rng.randint(20, 4000)
                    when = rng.randint(t, min(t + 30 * DAY, hi))
                    n += 1
                    usage.append(
                        {
                            "external_id": f"usage-{n:07d}",
                            "customer_tag": tag,
                            "model": model,
                            "cost_microdollars": str(
                                reqs * rng.randint(in_cost // 2 + 1, in_cost + out_cost)
                            ),
                            "request_count": str(reqs),
                            "occurred_at": datetime.fromtimestamp(when, UTC).strftime(
                                "%Y-%m-%dT%H:%M:%SZ"
                            ),
                            "currency": "USD",
                        }
                    )
                t += 30 * DAY
    for tag in ("internal-testing", "gamma-inc", "staging-load-test"):
        for _ in range(3):
            d = first_day + timedelta(days=rng.randint(0, (last_day - first_day).days))
            n += 1
            reqs = rng.randint(100, 2000)
            usage.append(
                {
                    "external_id": f"usage-{n:07d}",
                    "customer_tag": tag,
                    "model": "gpt-4o-mini",
                    "cost_microdollars": str(reqs * 400),
                    "request_count": str(reqs),
                    "occurred_at": f"{d.isoformat()}T12:00:00Z",
                    "currency": "USD",
                }
            )

    revenue: list[dict[str, str]] = []
    manual: list[ManualRecurring] = []
    retainer = local_amount(250_000, reporting)
    start_idx = min(2, len(months) - 1)
    stop_idx = max(start_idx + 1, len(months) - 4)
    for idx, mday in enumerate(months):
        if start_idx <= idx < stop_idx or idx >= len(months) - 2:
            amt = _fmt_amount(retainer, reporting)
            revenue.append(
                {
                    "external_id": f"retainer-{mday:%Y-%m}",
                    "type": "subscription",
                    "subtype": "recurring",
                    "amount": amt,
                    "currency": reporting.upper(),
                    "date": mday.isoformat(),
                    "customer_id": "",
                    "source": "bank transfer",
                    "note": "Consulting retainer",
                }
            )
            manual.append(ManualRecurring("manual", mday, parse_decimal_amount(amt), reporting))
    paying = [c for c in customers if c.subs]
    extra = [
        ("one_time", 49_900, "paypal", "Setup fee"),
        ("lifetime", 29_900, "appsumo", "Lifetime deal"),
        ("advertising", 150_000, "carbon ads", "Newsletter sponsorship"),
        ("enterprise", 1_200_000, "wire", "Custom integration contract"),
        ("affiliate", 12_000, "partnerstack", "Referral commission"),
        ("refund", 4_900, "paypal", "Refunded setup fee"),
        ("other", 7_500, "manual", "Workshop"),
        ("one_time", 19_900, "stripe", "Data migration"),
    ]
    for j, (typ, cents, source, note) in enumerate(extra):
        d = first_day + timedelta(days=rng.randint(0, (last_day - first_day).days))
        cust_id = (
            paying[rng.randrange(len(paying))].id
            if paying and typ in ("one_time", "enterprise")
            else ""
        )
        revenue.append(
            {
                "external_id": f"manual-{j + 1}",
                "type": typ,
                "subtype": "one_time",
                "amount": _fmt_amount(
                    local_amount(cents, reporting) if reporting != "usd" else cents, reporting
                ),
                "currency": reporting.upper(),
                "date": d.isoformat(),
                "customer_id": cust_id,
                "source": source,
                "note": note,
            }
        )

    fx_rows = [
        {
            "date": d.isoformat(),
            "currency": cur.upper(),
            "rate": str(rate),
            "base": reporting.upper(),
        }
        for (cur, d), rate in sorted(fx.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    ]
    return (
        {
            "costs": costs,
            "expenses": expenses,
            "usage_costs": usage,
            "revenue": revenue,
            "fx_rates": fx_rows,
        },
        manual,
    )
