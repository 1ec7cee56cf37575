"""Customers: their traits, the scripted first subscriptions that guarantee every feature appears,
the choice of plan per segment, and running all of a customer's subscriptions."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..catalog import Catalog, PriceEntry
from .basics import DAY, HOUR
from .objects import InvoiceSim
from .recorder import Engine
from .subscription import SubSim


@dataclass(frozen=True)
class Script:
    """A scripted first subscription that guarantees one feature appears in every dataset."""

    name: str
    segment: str = "smb"
    currency: str | None = None
    plan: tuple[str, str, int] | None = None  # (family, interval key, quantity)
    trial: bool = False
    converts: bool = True
    coupon: str | None = None
    force: frozenset[str] = frozenset()
    dunning: str = "unpaid"
    recent: bool = False
    seat_heavy: bool = False
    taxed: bool | None = None


SCRIPTS = [
    Script("trial_now", plan=("pro", "month", 3), trial=True, recent=True),
    Script("trial_expire", plan=("starter", "month", 1), trial=True, converts=False),
    Script(
        "unpaid", plan=("starter", "month", 1), force=frozenset({"fail_renewal", "stay_unpaid"})
    ),
    Script(
        "uncollectible",
        plan=("pro", "month", 4),
        force=frozenset({"fail_renewal"}),
        dunning="cancel_uncollectible",
    ),
    Script(
        "void", plan=("pro", "month", 2), force=frozenset({"fail_renewal"}), dunning="cancel_void"
    ),
    Script("incomplete", plan=("starter", "month", 1), force=frozenset({"fail_first"})),
    Script("pause", plan=("pro", "month", 5), force=frozenset({"pause"})),
    Script(
        "reactivation", plan=("starter", "month", 1), force=frozenset({"cancel_now", "reactivate"})
    ),
    Script(
        "enterprise_jpy", segment="enterprise", currency="jpy", plan=("enterprise", "month", 40)
    ),
    Script("refunds", plan=("pro", "month", 6), force=frozenset({"refunds"}), taxed=True),
    Script("coupon_repeating", plan=("pro", "month", 3), coupon="LAUNCH25"),
    Script("coupon_once", plan=("starter", "month", 1), coupon="WELCOME20"),
    Script("coupon_amount_off", plan=("pro", "year", 2), coupon="SAVE10"),
    Script("seat_heavy", segment="growth", plan=("pro", "month", 5), seat_heavy=True),
    Script("cancel_period_end", plan=("starter", "month", 1), force=frozenset({"cape_now"})),
    Script("switch_annual", plan=("starter", "month", 1), force=frozenset({"switch_annual"})),
    Script("metered", segment="api"),
    Script("weekly", segment="weekly", plan=("sprint", "week", 2)),
    Script("inclusive_tax", segment="consumer", currency="eur", plan=("personal", "month", 1)),
    Script("quarterly", plan=("pro", "quarter", 2), taxed=True),
    Script("graduated", segment="growth", plan=("business", "month", 14)),
    Script("pack", segment="teampack", plan=("teampack", "month", 12)),
]


@dataclass
class CustomerSim:
    """A customer and the traits that drive their subscriptions."""

    id: str
    account: str
    currency: str
    created: int
    name: str
    email: str
    segment: str
    risky: bool
    seat_heavy: bool
    taxed: bool
    obj: dict[str, Any]
    subs: list[SubSim] = field(default_factory=list)
    invoices: list[InvoiceSim] = field(default_factory=list)
    credit_notes: int = 0
    script: Script | None = None


def choose_plan(
    rng: random.Random, cat: Catalog, cust: CustomerSim
) -> tuple[list[tuple[PriceEntry, int]], bool]:
    """The items of a new subscription for this customer's segment; (items, allows_trial)."""
    cur = cust.currency
    seg = cust.segment

    def pick(family: str, keys: list[str], weights: list[int]) -> PriceEntry:
        """A price of a family, choosing the interval by weight."""
        while True:
            key = rng.choices(keys, weights)[0]
            e = cat.price(family, key, cur)
            if e is not None:
                return e

    if seg == "consumer" and cat.price("personal", "month", cur) is not None:
        return [(pick("personal", ["month", "year"], [4, 1]), 1)], True
    if seg == "weekly":
        return [(pick("sprint", ["week"], [1]), rng.randint(1, 5))], True
    if seg == "enterprise":
        key = rng.choice(["month", "year"])
        items = [(pick("enterprise", [key], [1]), rng.randint(20, 150))]
        modules = [
            e
            for e in cat.prices
            if e.kind == "module"
            and e.stripe["currency"] == cur
            and e.stripe["recurring"]["interval"] == ("year" if key == "year" else "month")
        ]
        for e in rng.sample(modules, rng.randint(10, min(13, len(modules)))):
            items.append((e, 1))
        return items, False
    if seg == "growth":
        fam = rng.choice(["pro", "business"])
        main = pick(fam, ["month", "year"], [3, 1])
        items = [(main, rng.randint(3, 40))]
        ikey = "year" if main.stripe["recurring"]["interval"] == "year" else "month"
        for key in rng.sample(["support", "sso", "audit"], rng.randint(0, 2)):
            e = cat.price(f"addon_{key}", ikey, cur)
            if e is not None:
                items.append((e, 1))
        return items, True
    if seg == "teampack":
        return [(pick("teampack", ["month", "year"], [4, 1]), rng.randint(3, 40))], True
    if seg == "api":
        main = pick("pro", ["month"], [1])
        return [(main, rng.randint(1, 10)), (cat.price("api", "month", cur), 1)], True  # type: ignore[list-item]
    # smb
    fam = rng.choice(["starter", "starter", "pro"])
    if fam == "pro":
        return [(pick("pro", ["month", "quarter", "year"], [6, 1, 2]), rng.randint(1, 8))], True
    return [(pick("starter", ["month", "year"], [4, 1]), 1)], True


def run_customer(
    eng: Engine,
    cat: Catalog,
    cust: CustomerSim,
    never_subscribes: bool,
    second_sub: bool,
    on_sub: Callable[[SubSim], None],
) -> None:
    """All subscriptions of one customer: the first, reactivations after churn, maybe a second."""
    rng = eng.rng
    t = cust.created + rng.randint(60, 2 * HOUR)
    if never_subscribes:
        return
    first = True
    while t <= eng.clock:
        sub = _new_sub(eng, cat, cust, t, first)
        first = False
        sub.run()
        cust.subs.append(sub)
        on_sub(sub)
        p = {
            "voluntary": 0.3,
            "delinquent": 0.1,
            "trial_expired": 0.15,
            "incomplete_expired": 0.5,
        }.get(sub.end_kind or "", 0.0)
        if "reactivate" in sub.force:
            p = 1.0
        if sub.ended_at is None or rng.random() >= p:
            break
        t = sub.ended_at + (
            20 * DAY if "reactivate" in sub.force else rng.randint(10 * DAY, 150 * DAY)
        )
    if second_sub:
        t2 = cust.created + rng.randint(5 * DAY, 200 * DAY)
        if t2 <= eng.clock:
            e = (
                cat.price("sprint", "week", cust.currency)
                if cust.segment != "weekly"
                else cat.price("starter", "month", cust.currency)
            )
            if e is not None:
                sub = SubSim(eng, cat, cust, t2, [(e, rng.randint(1, 3))], dunning="cancel_void")
                sub.run()
                cust.subs.append(sub)
                on_sub(sub)


def _new_sub(eng: Engine, cat: Catalog, cust: CustomerSim, t: int, first: bool) -> SubSim:
    rng = eng.rng
    sc = cust.script
    if first and sc is not None:
        items, _ = choose_plan(rng, cat, cust)
        if sc.plan is not None:
            family, ikey, qty = sc.plan
            entry = cat.price(family, ikey, cust.currency)
            if entry is not None:
                items = [(entry, qty)] + [
                    (e, q) for e, q in items if e.kind in ("module", "metered")
                ]
        coupon = None
        if sc.coupon is not None:
            coupon = next(
                (
                    c
                    for c in cat.coupons
                    if c.model.id in (sc.coupon, f"{sc.coupon}_{cust.currency.upper()}")
                ),
                None,
            )
        return SubSim(
            eng,
            cat,
            cust,
            t,
            items,
            trial_days=14 if sc.trial else 0,
            trial_converts=sc.converts,
            coupon=coupon,
            dunning=sc.dunning,
            force=sc.force,
        )
    items, allows_trial = choose_plan(rng, cat, cust)
    trial_days = 0
    if allows_trial and rng.random() < (0.3 if first else 0.1):
        trial_days = 7 if items[0][0].kind == "weekly" else 14
    coupon = None
    kinds = {e.kind for e, _ in items}
    if "inclusive" not in kinds and rng.random() < 0.22:
        options = [
            c
            for c in cat.coupons
            if (
                c.model.percent_off is not None
                or (c.model.currency == cust.currency and "metered" not in kinds)
            )
            and not (trial_days and c.model.duration == "once")
        ]
        coupon = rng.choice(options)
    dunning = rng.choices(["unpaid", "cancel_uncollectible", "cancel_void"], [2, 1, 1])[0]
    return SubSim(
        eng,
        cat,
        cust,
        t,
        items,
        trial_days=trial_days,
        trial_converts=rng.random() < 0.8,
        coupon=coupon,
        dunning=dunning,
    )
