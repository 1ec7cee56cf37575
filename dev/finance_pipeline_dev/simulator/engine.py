"""The history generator: simulates customers and subscriptions and emits Stripe objects.

Each subscription runs as a small discrete-event simulation (a heap of timed actions: renewals,
mid-period changes, payment retries, discount ends, pause resumes, cancellations). Every change is
committed twice: as a ``SubState`` of the ground-truth timeline (``sim_model``) and as a render
version of the Stripe subscription, so events can show the object as it was at their time.
Objects that change after creation (subscriptions, invoices, charges) keep versions; immutable ones
(refunds, credit notes, balance transactions, invoice payments) are plain dicts.
"""

from __future__ import annotations

import calendar
import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from finance_pipeline.lib.money import round_half_away
from finance_pipeline_dev.standin import shapes

from .catalog import FEES, Catalog, CouponEntry, PriceEntry
from .model import DiscountSpan, ItemState, SubState, SubTimeline

DAY = 86_400
HOUR = 3_600
EVENT_RETENTION = 30 * DAY

# Monthly probabilities of mid-period changes for an ordinary active subscription.
MID_PROBS = {
    "seats": 0.07,
    "plan_change": 0.025,
    "switch_annual": 0.012,
    "addon_add": 0.02,
    "addon_remove": 0.012,
    "coupon": 0.012,
    "pause": 0.005,
    "cancel_now": 0.008,
    "cancel_period_end": 0.02,
    "cancel_at": 0.004,
}
RETRY_OFFSETS_LONG = (3 * DAY, 7 * DAY, 14 * DAY)
RETRY_OFFSETS_SHORT = (1 * DAY, 3 * DAY, 5 * DAY)
FAILURE_CODES = [
    ("card_declined", "Your card was declined."),
    ("insufficient_funds", "Your card has insufficient funds."),
    ("expired_card", "Your card has expired."),
]


def add_months_ts(ts: int, months: int) -> int:
    """``ts`` plus whole calendar months in UTC, clamping the day (Stripe's billing anchor rule)."""
    dt = datetime.fromtimestamp(ts, UTC)
    y, m = divmod(dt.month - 1 + months, 12)
    y += dt.year
    m += 1
    d = min(dt.day, calendar.monthrange(y, m)[1])
    return int(dt.replace(year=y, month=m, day=d).timestamp())


def period_boundary(anchor: int, interval: str, count: int, k: int) -> int:
    """The k-th billing-period boundary after ``anchor`` (k=0 is the anchor itself)."""
    if interval == "month":
        return add_months_ts(anchor, k * count)
    if interval == "year":
        return add_months_ts(anchor, 12 * k * count)
    if interval == "week":
        return anchor + k * count * 7 * DAY
    return anchor + k * count * DAY


_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B62_PAIRS = [a + b for a in _B62 for b in _B62]


class Ids:
    """Deterministic, unique, random-looking Stripe ids (``sub_1Nq...``) from a counter."""

    MOD = 62**22
    # ~0.618 x MOD and coprime with 62, so n -> n * MULT mod 62**22 is a well-spread bijection.
    MULT = 1673514689202993931592439337416514338817

    def __init__(self, seed: int, salt: int = 0) -> None:
        self.n = 0
        self.salt = (seed * 2_654_435_761 + salt * 97 + 1) % self.MOD

    def __call__(self, prefix: str) -> str:
        self.n += 1
        x = (self.n * self.MULT + self.salt) % self.MOD
        chars = []
        for _ in range(11):
            x, r = divmod(x, 3844)
            chars.append(_B62_PAIRS[r])
        return f"{prefix}_1{''.join(chars)}"


def fee_for(amount: int, currency: str) -> int:
    """Processing fee of a card charge (percentage + fixed, in the charge currency)."""
    bps, fixed = FEES.get(currency, (290, 30))
    return round_half_away(Fraction(amount * bps, 10_000)) + fixed


# --------------------------------------------------------------------------- versioned objects


class Versioned:
    """An object whose state changes: ``versions`` holds (instant, snapshot) in time order."""

    def __init__(self) -> None:
        self.versions: list[tuple[int, Any]] = []

    def snapshot(self) -> Any:
        """The mutable state to remember for this version."""
        raise NotImplementedError

    def render_snapshot(self, snap: Any) -> dict[str, Any]:
        """The Stripe object as it was in a recorded version."""
        raise NotImplementedError

    def push(self, t: int) -> tuple[int, bool]:
        """Record the current state at ``t``; returns (version index, replaced same-instant one)."""
        snap = self.snapshot()
        if self.versions and self.versions[-1][0] == t:
            self.versions[-1] = (t, snap)
            return len(self.versions) - 1, True
        self.versions.append((t, snap))
        return len(self.versions) - 1, False

    def render(self, idx: int = -1) -> dict[str, Any]:
        """The Stripe object at version ``idx`` (default: the current one)."""
        return self.render_snapshot(self.versions[idx][1])


class Static(Versioned):
    """An immutable object (one version)."""

    def __init__(self, obj: dict[str, Any], t: int) -> None:
        super().__init__()
        self.obj = obj
        self.versions.append((t, None))

    def render_snapshot(self, snap: Any) -> dict[str, Any]:
        """The Stripe object as it was in a recorded version."""
        return self.obj


@dataclass
class LineSpec:
    """An invoice line before discounts and taxes are allocated."""

    amount: int
    description: str
    period: tuple[int, int]
    price: PriceEntry | None
    quantity: int | None
    item_id: str | None
    proration: bool = False
    discountable: bool = True
    invoice_item: str | None = None


class InvoiceSim(Versioned):
    """An invoice: immutable lines and totals, plus its payment/void/credit history."""

    def __init__(self, base: dict[str, Any], customer: CustomerSim, sub: SubSim | None) -> None:
        super().__init__()
        self.base = base
        self.id: str = base["id"]
        self.customer = customer
        self.sub = sub
        self.created: int = base["created"]
        self.currency: str = base["currency"]
        self.total: int = base["total"]
        self.status = "draft"
        self.finalized_at: int | None = None
        self.paid_at: int | None = None
        self.voided_at: int | None = None
        self.uncollectible_at: int | None = None
        self.attempt_count = 0
        self.next_payment_attempt: int | None = None
        self.amount_paid = 0
        self.pre_cn = 0
        self.post_cn = 0
        self.number: str | None = None
        self.first_attempt: int | None = None
        self.paid_charge: ChargeSim | None = None
        self.forced_fail = False
        self.lines: list[dict[str, Any]] = base["lines"]["data"]

    @property
    def amount_due(self) -> int:
        """What is still to be charged: total less pre-payment credit notes."""
        return self.total - self.pre_cn

    def snapshot(self) -> Any:
        """The mutable state to remember for this version."""
        return (
            self.status,
            self.finalized_at,
            self.paid_at,
            self.voided_at,
            self.uncollectible_at,
            self.attempt_count,
            self.next_payment_attempt,
            self.amount_paid,
            self.pre_cn,
            self.post_cn,
        )

    def render_snapshot(self, snap: Any) -> dict[str, Any]:
        """The Stripe object as it was in a recorded version."""
        (status, fin, paid, void, unc, attempts, nxt, amount_paid, pre, post) = snap
        due = self.total - pre
        remaining = 0 if status in ("paid", "void") else due - amount_paid
        obj = dict(self.base)
        obj.update(
            status=status,
            amount_due=due,
            amount_paid=amount_paid,
            amount_remaining=remaining,
            attempt_count=attempts,
            attempted=attempts > 0,
            auto_advance=status in ("draft", "open"),
            effective_at=fin,
            ending_balance=0 if fin is not None else None,
            next_payment_attempt=nxt,
            number=self.number if fin is not None else None,
            post_payment_credit_notes_amount=post,
            pre_payment_credit_notes_amount=pre,
            status_transitions={
                "finalized_at": fin,
                "marked_uncollectible_at": unc,
                "paid_at": paid,
                "voided_at": void,
            },
            webhooks_delivered_at=self.created,
        )
        if status == "draft":
            obj["hosted_invoice_url"] = None
            obj["invoice_pdf"] = None
        return obj


class ChargeSim(Versioned):
    """A charge; ``amount_refunded`` grows with refunds."""

    def __init__(self, base: dict[str, Any]) -> None:
        super().__init__()
        self.base = base
        self.id: str = base["id"]
        self.amount: int = base["amount"]
        self.currency: str = base["currency"]
        self.created: int = base["created"]
        self.amount_refunded = 0

    def snapshot(self) -> Any:
        """The mutable state to remember for this version."""
        return self.amount_refunded

    def render_snapshot(self, snap: Any) -> dict[str, Any]:
        """The Stripe object as it was in a recorded version."""
        obj = dict(self.base)
        obj["amount_refunded"] = snap
        obj["refunded"] = snap >= self.amount > 0
        return obj


@dataclass
class ItemSim:
    """A live subscription item."""

    id: str
    price: PriceEntry
    quantity: int
    created: int
    tax_rates: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class DiscSim:
    """A discount attached to a subscription, with its ground-truth span."""

    id: str
    coupon: CouponEntry
    start: int
    stripe_end: int | None
    gt_start: int
    gt_end: int | None
    obj: dict[str, Any]
    # The fixture object of the discount (its events point at it).
    static: Static | None = None


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


# --------------------------------------------------------------------------- the engine


class Engine:
    """Runs the simulation of one or more accounts and collects objects, events and timelines."""

    def __init__(
        self,
        rng: random.Random,
        ids: Ids,
        start_ts: int,
        clock: int,
        livemode: bool = False,
        *,
        full_history: bool = False,
    ) -> None:
        self.rng = rng
        self.ids = ids
        self.start_ts = start_ts
        self.clock = clock
        self.livemode = livemode
        # Keep every event of the whole history (not only the 30 days Stripe retains).
        self.full_history = full_history
        self.objects: dict[str, list[Any]] = {}
        self.events: list[tuple[int, int, str, Versioned, int]] = []
        self._event_keys: set[tuple[int, str, int]] = set()
        self._seq = 0
        self.owner: dict[int, str] = {}

    def add(self, account: str, obj: Versioned) -> None:
        """Keep an object for the fixture, owned by ``account``."""
        self.objects.setdefault(account, []).append(obj)
        self.owner[id(obj)] = account

    def event(self, t: int, type_: str, obj: Versioned, idx: int) -> None:
        """Log an event; kept only inside the 30-day retention window unless ``full_history``."""
        if not self.full_history and (t > self.clock or t < self.clock - EVENT_RETENTION):
            return
        key = (id(obj), type_, t)
        if key in self._event_keys:
            return
        self._event_keys.add(key)
        self._seq += 1
        self.events.append((t, self._seq, type_, obj, idx))

    # ------------------------------------------------------------------ money objects

    def charge(
        self, account: str, cust: CustomerSim, inv: InvoiceSim, t: int, amount: int, ok: bool
    ) -> ChargeSim:
        """A card charge for an invoice plus its invoice_payment and (if paid) balance txn."""
        ch_id = self.ids("ch")
        bt_id = None
        if ok:
            bt_id = self.ids("txn")
            fee = fee_for(amount, inv.currency)
            available = t + 2 * DAY
            bt = shapes.make_balance_transaction(
                bt_id,
                amount=amount,
                currency=inv.currency,
                created=t,
                type="charge",
                source=ch_id,
                fee=fee,
                available_on=available,
                status="available" if available <= self.clock else "pending",
                description=f"Payment for Invoice {inv.id}",
            )
            self.add(account, Static(bt, t))
            code, msg = None, None
        else:
            code, msg = self.rng.choice(FAILURE_CODES)
        base = shapes.make_charge(
            ch_id,
            amount=amount,
            currency=inv.currency,
            created=t,
            customer=cust.id,
            status="succeeded" if ok else "failed",
            balance_transaction=bt_id,
            failure_code=code,
            failure_message=msg,
            description="Subscription creation"
            if inv.base["billing_reason"] == "subscription_create"
            else "Subscription update",
            livemode=self.livemode,
        )
        base["billing_details"] = {
            "address": None,
            "email": cust.email,
            "name": cust.name,
            "phone": None,
            "tax_id": None,
        }
        ch = ChargeSim(base)
        idx, _ = ch.push(t)
        self.add(account, ch)
        self.event(t, "charge.succeeded" if ok else "charge.failed", ch, idx)
        pay = shapes.make_invoice_payment(
            self.ids("inpay"),
            invoice=inv.id,
            amount=amount,
            currency=inv.currency,
            created=t,
            charge=ch_id,
            status="paid" if ok else "canceled",
            paid_at=t if ok else None,
            canceled_at=None if ok else t,
            is_default=inv.attempt_count == 0,
            livemode=self.livemode,
        )
        st = Static(pay, t)
        self.add(account, st)
        if ok:
            self.event(t, "invoice_payment.paid", st, 0)
        return ch

    def refund(
        self,
        account: str,
        cust: CustomerSim,
        ch: ChargeSim,
        amount: int,
        t: int,
        reason: str | None = "requested_by_customer",
    ) -> str:
        """A succeeded refund of (part of) a charge with its (negative) balance transaction."""
        re_id = self.ids("re")
        bt_id = self.ids("txn")
        bt = shapes.make_balance_transaction(
            bt_id,
            amount=-amount,
            currency=ch.currency,
            created=t,
            type="refund",
            source=re_id,
            fee=0,
            available_on=t,
            status="available",
            description="REFUND FOR CHARGE",
        )
        self.add(account, Static(bt, t))
        ref = shapes.make_refund(
            re_id,
            charge=ch.id,
            amount=amount,
            currency=ch.currency,
            created=t,
            reason=reason,
            balance_transaction=bt_id,
        )
        ref["customer"] = cust.id
        st = Static(ref, t)
        self.add(account, st)
        self.event(t, "refund.created", st, 0)
        ch.amount_refunded += amount
        idx, _ = ch.push(t)
        self.event(t, "charge.refunded", ch, idx)
        return re_id


# --------------------------------------------------------------------------- subscriptions


class SubSim(Versioned):
    """One subscription's life, as timed actions; records the truth and the Stripe renderings."""

    def __init__(
        self,
        eng: Engine,
        cat: Catalog,
        cust: CustomerSim,
        t0: int,
        plan: list[tuple[PriceEntry, int]],
        *,
        trial_days: int = 0,
        trial_converts: bool = True,
        coupon: CouponEntry | None = None,
        dunning: str = "unpaid",
        force: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__()
        self.force = force
        self.eng = eng
        self.cat = cat
        self.cust = cust
        self.rng = eng.rng
        self.account = cust.account
        self.id = eng.ids("sub")
        self.created = t0
        self.currency = cust.currency
        self.items: list[ItemSim] = []
        for entry, qty in plan:
            self.items.append(ItemSim(eng.ids("si"), entry, qty, t0, self._item_tax_rates(entry)))
        self.status = "incomplete"
        self.anchor = t0
        self.k = 0
        self.gen = 0
        self.period = (t0, t0)
        self.discounts: list[DiscSim] = []
        self.all_discounts: list[DiscSim] = []
        self.pause: dict[str, Any] | None = None
        self.cancel_at_period_end = False
        self.cancel_at: int | None = None
        self.canceled_at: int | None = None
        self.ended_at: int | None = None
        self.cancel_reason: str | None = None
        self.feedback: str | None = None
        self.delinquent = False
        self.trial_start: int | None = None
        self.trial_end: int | None = None
        self.trial_days = trial_days
        self.trial_converts = trial_converts
        self.trial_behavior = "create_invoice" if trial_converts else "cancel"
        self.latest_invoice: str | None = None
        self.pending: list[LineSpec] = []
        self.default_tax_rates: list[dict[str, Any]] = (
            [cat.tax_rates[cust.currency]]
            if cust.taxed and cust.currency in cat.tax_rates and not self._has_inclusive()
            else []
        )
        self.dunning = dunning
        self.end_kind: str | None = None
        self.states: list[SubState] = []
        self._heap: list[tuple[int, int, int, str, tuple[Any, ...]]] = []
        self._hseq = 0
        self._initial_coupon = coupon

    # ------------------------------------------------------------------ basics

    def _has_inclusive(self) -> bool:
        return any(i.price.kind == "inclusive" for i in self.items)

    def _item_tax_rates(self, entry: PriceEntry) -> list[dict[str, Any]]:
        if entry.kind == "inclusive":
            return [self.cat.tax_rates[f"{entry.model.currency}_inclusive"]]
        return []

    @property
    def interval(self) -> tuple[str, int]:
        """The billing interval of the subscription (that of its main item)."""
        m = self.main_item.price.model
        return m.interval, m.interval_count

    @property
    def main_item(self) -> ItemSim:
        """The plan item (not an add-on, module or metered item)."""
        for it in self.items:
            if it.price.kind not in ("addon", "module", "metered"):
                return it
        return self.items[0]

    def boundary(self, k: int) -> int:
        """The k-th period boundary from the billing cycle anchor."""
        interval, count = self.interval
        return period_boundary(self.anchor, interval, count, k)

    def schedule(self, t: int, action: str, *args: Any) -> None:
        # Discount ends come first at a shared instant: a coupon ending exactly at a renewal must
        # not apply to the renewal invoice (its span is [start, end)).
        """Queue a timed action for this subscription."""
        prio = 0 if action == "discount_end" else 1
        self._hseq += 1
        heapq.heappush(self._heap, (t, prio, self._hseq, action, args))

    @property
    def ended(self) -> bool:
        """True once the subscription is canceled or expired incomplete."""
        return self.status in ("canceled", "incomplete_expired")

    def _month_fraction(self) -> float:
        ps, pe = self.period
        return max(pe - ps, DAY) / (30.44 * DAY)

    # ------------------------------------------------------------------ commits

    def snapshot(self) -> Any:
        """The mutable state to remember for this version."""
        return (
            self.status,
            tuple(
                (i.id, i.price, i.quantity, i.created, tuple(r["id"] for r in i.tax_rates))
                for i in self.items
            ),
            self.period,
            self.anchor,
            tuple(d.id for d in self.discounts),
            None if self.pause is None else dict(self.pause),
            self.cancel_at_period_end,
            self.cancel_at,
            self.canceled_at,
            self.ended_at,
            self.cancel_reason,
            self.feedback,
            self.latest_invoice,
            self.trial_start,
            self.trial_end,
        )

    def render_snapshot(self, snap: Any) -> dict[str, Any]:
        """The Stripe object as it was in a recorded version."""
        (
            status,
            items,
            period,
            anchor,
            discounts,
            pause,
            cape,
            cancel_at,
            canceled_at,
            ended_at,
            reason,
            feedback,
            latest,
            trial_start,
            trial_end,
        ) = snap
        tax_by_id = {r["id"]: r for r in self.cat.tax_rates.values()}
        rendered = []
        for item_id, entry, qty, created, rate_ids in items:
            metered = entry.model.usage_type == "metered"
            si = shapes.make_subscription_item(
                item_id,
                subscription=self.id,
                price=entry.stripe,
                created=created,
                current_period_start=period[0],
                current_period_end=period[1],
                quantity=None if metered else qty,  # type: ignore[arg-type]
                tax_rates=[tax_by_id[r] for r in rate_ids],
            )
            plan = si["plan"]
            plan["tiers_mode"] = entry.stripe.get("tiers_mode")
            if entry.stripe.get("tiers") is not None:
                plan["tiers"] = entry.stripe["tiers"]
            if entry.stripe.get("transform_quantity") is not None:
                plan["transform_usage"] = dict(entry.stripe["transform_quantity"])
            rendered.append(si)
        obj = shapes.make_subscription(
            self.id,
            customer=self.cust.id,
            created=self.created,
            items=rendered,
            status=status,
            currency=self.currency,
            start_date=self.created,
            billing_cycle_anchor=anchor,
            cancel_at_period_end=cape,
            cancel_at=cancel_at,
            canceled_at=canceled_at,
            ended_at=ended_at,
            cancellation_reason=reason,
            trial_start=trial_start,
            trial_end=trial_end,
            discounts=list(discounts),
            latest_invoice=latest,
            livemode=self.eng.livemode,
        )
        obj["cancellation_details"]["feedback"] = feedback
        obj["pause_collection"] = pause
        obj["default_tax_rates"] = list(self.default_tax_rates)
        obj["trial_settings"] = {"end_behavior": {"missing_payment_method": self.trial_behavior}}
        obj["billing_mode"] = {"flexible": None, "type": "classic", "updated_at": None}
        return obj

    def commit(self, t: int, event: str = "customer.subscription.updated") -> None:
        """Close the current truth state at ``t`` and open the new one; record a render version."""
        st = SubState(
            start=t,
            end=None,
            status=self.status,
            items=tuple(ItemState(i.id, i.price.model, i.quantity) for i in self.items),
            paused=self.pause is not None,
            cancel_scheduled=self.cancel_at is not None or self.cancel_at_period_end,
            delinquent=self.delinquent,
        )
        if self.states:
            last = self.states[-1]
            if last.start == t:
                self.states[-1] = st
            elif (last.status, last.items, last.paused, last.cancel_scheduled, last.delinquent) != (
                st.status,
                st.items,
                st.paused,
                st.cancel_scheduled,
                st.delinquent,
            ):
                self.states[-1] = SubState(
                    last.start,
                    t,
                    last.status,
                    last.items,
                    last.paused,
                    last.cancel_scheduled,
                    last.delinquent,
                )
                self.states.append(st)
        else:
            self.states.append(st)
        idx, replaced = self.push(t)
        if not replaced or event != "customer.subscription.updated":
            self.eng.event(t, event, self, idx)

    def timeline(self) -> SubTimeline:
        """The ground-truth view of this subscription."""
        return SubTimeline(
            account_id=self.account,
            customer_id=self.cust.id,
            subscription_id=self.id,
            currency=self.currency,
            states=list(self.states),
            discounts=[
                DiscountSpan(d.id, d.coupon.model, d.gt_start, d.gt_end)
                for d in self.all_discounts
                if d.gt_end is None or d.gt_end > d.gt_start
            ],
        )

    # ------------------------------------------------------------------ discounts

    def attach_discount(
        self, coupon: CouponEntry, t: int, gt_start: int, gt_end: int | None
    ) -> DiscSim:
        """Apply a coupon at ``t``; its MRR span is ``[gt_start, gt_end)``."""
        c = coupon.model
        stripe_end = (
            add_months_ts(t, c.duration_in_months or 0) if c.duration == "repeating" else None
        )
        did = self.eng.ids("di")
        obj = shapes.make_discount(
            did,
            coupon=coupon.stripe,
            start=t,
            end=stripe_end,
            customer=self.cust.id,
            subscription=self.id,
        )
        coupon.stripe["times_redeemed"] += 1
        static = Static(obj, t)
        d = DiscSim(did, coupon, t, stripe_end, gt_start, gt_end, obj, static)
        self.discounts.append(d)
        self.all_discounts.append(d)
        self.eng.add(self.account, static)
        if self.eng.full_history:
            self.eng.event(t, "customer.discount.created", static, 0)
        if stripe_end is not None:
            self.schedule(stripe_end, "discount_end", d)
        return d

    def _discounts_removed(self, t: int, removed: list[DiscSim]) -> None:
        # Only the full history reports removals; the retained window must stay as it was.
        if self.eng.full_history:
            for d in removed:
                if d.static is not None:
                    self.eng.event(t, "customer.discount.deleted", d.static, 0)

    def percent_now(self) -> Fraction:
        """The percent-off of the attached discount (0 if none), for prorations."""
        for d in self.discounts:
            if d.coupon.model.percent_off is not None:
                return Fraction(d.coupon.model.percent_off) / 100
        return Fraction(0)

    # ------------------------------------------------------------------ amounts (Stripe-side)

    def gross_amount(self, entry: PriceEntry, qty: int) -> int:
        """Billing-period amount of an item as Stripe invoices it (integer minor units)."""
        p = entry.stripe
        if p["billing_scheme"] == "tiered":
            tiers = p["tiers"]
            if p["tiers_mode"] == "volume":
                for tier in tiers:
                    if tier["up_to"] is None or qty <= tier["up_to"]:
                        return tier["unit_amount"] * qty + (tier["flat_amount"] or 0)
            total, prev = 0, 0
            for tier in tiers:
                top = qty if tier["up_to"] is None else min(qty, tier["up_to"])
                if top <= prev:
                    break
                total += tier["unit_amount"] * (top - prev) + (tier["flat_amount"] or 0)
                prev = top
            return total
        units = qty
        tq = p.get("transform_quantity")
        if tq:
            units = -(-qty // tq["divide_by"]) if tq["round"] == "up" else qty // tq["divide_by"]
        if p["unit_amount"] is not None:
            return p["unit_amount"] * units
        return round_half_away(Fraction(p["unit_amount_decimal"]) * units)

    def describe(self, entry: PriceEntry, qty: int | None) -> str:
        """Stripe's line text, e.g. ``3 × Pro (at $49.00 / month)``."""
        p = entry.stripe
        rec = p["recurring"]
        every = (
            rec["interval"]
            if rec["interval_count"] == 1
            else f"every {rec['interval_count']} {rec['interval']}s"
        )
        if p["unit_amount"] is None:
            return f"{qty or 1} × {entry.product_name} (Tiered, {every})"
        cur = p["currency"]
        sym = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥"}.get(cur, cur.upper() + " ")
        amt = p["unit_amount"] if cur == "jpy" else Decimal(p["unit_amount"]).scaleb(-2)
        return f"{qty or 1} × {entry.product_name} (at {sym}{amt} / {every})"

    # ------------------------------------------------------------------ invoices

    def new_invoice(
        self, t: int, reason: str, specs: list[LineSpec], period: tuple[int, int]
    ) -> InvoiceSim:
        """Build an invoice: allocate discounts to discountable lines, tax every line, total it."""
        eng = self.eng
        inv_id = eng.ids("in")
        cur = self.currency
        remaining = [s.amount if s.discountable else 0 for s in specs]
        alloc: list[list[dict[str, Any]]] = [[] for _ in specs]
        totals: dict[str, int] = {}
        for d in self.discounts:
            c = d.coupon.model
            if c.percent_off is not None:
                for i, s in enumerate(specs):
                    if s.discountable and remaining[i] > 0:
                        amt = round_half_away(
                            Fraction(remaining[i]) * Fraction(c.percent_off) / 100
                        )
                        if amt:
                            alloc[i].append({"amount": amt, "discount": d.id})
                            remaining[i] -= amt
                            totals[d.id] = totals.get(d.id, 0) + amt
            elif c.amount_off is not None:
                base = sum(r for r in remaining if r > 0)
                off = min(c.amount_off, base)
                if off <= 0:
                    continue
                # Split across lines in proportion, largest remainder, so the parts sum exactly.
                shares = [Fraction(off * max(r, 0), base) for r in remaining]
                floors = [math.floor(x) for x in shares]
                left = off - sum(floors)
                order = sorted(range(len(specs)), key=lambda i: (-(shares[i] - floors[i]), i))
                for i in order[:left]:
                    floors[i] += 1
                for i, amt in enumerate(floors):
                    if amt:
                        alloc[i].append({"amount": amt, "discount": d.id})
                        remaining[i] -= amt
                totals[d.id] = totals.get(d.id, 0) + off
        lines = []
        subtotal = excl_tax = incl_tax = 0
        tax_totals: dict[tuple[str, str], list[int]] = {}
        for i, s in enumerate(specs):
            net = s.amount - sum(a["amount"] for a in alloc[i])
            taxes = []
            rates = list(self.default_tax_rates)
            if s.item_id is not None and s.price is not None and s.price.kind == "inclusive":
                rates = [self.cat.tax_rates[f"{cur}_inclusive"]]
            for rate in rates:
                pct = Fraction(str(rate["percentage"]))
                if rate["inclusive"]:
                    taxable = round_half_away(Fraction(net) / (1 + pct / 100))
                    tax = net - taxable
                    incl_tax += tax
                    behavior = "inclusive"
                else:
                    taxable = net
                    tax = round_half_away(Fraction(net) * pct / 100)
                    excl_tax += tax
                    behavior = "exclusive"
                taxes.append(
                    {
                        "amount": tax,
                        "tax_behavior": behavior,
                        "tax_rate_details": {"tax_rate": rate["id"]},
                        "taxability_reason": "standard_rated",
                        "taxable_amount": taxable,
                        "type": "tax_rate_details",
                    }
                )
                agg = tax_totals.setdefault((rate["id"], behavior), [0, 0])
                agg[0] += tax
                agg[1] += taxable
            line = shapes.make_invoice_line(
                eng.ids("il"),
                invoice=inv_id,
                amount=s.amount,
                currency=cur,
                period_start=s.period[0],
                period_end=s.period[1],
                price=s.price.stripe if s.price is not None else None,
                quantity=s.quantity,
                description=s.description,
                subscription=self.id,
                subscription_item=s.item_id,
                invoice_item=s.invoice_item,
                proration=s.proration,
                discount_amounts=alloc[i],
                livemode=eng.livemode,
            )
            line["discountable"] = s.discountable
            line["taxes"] = taxes
            lines.append(line)
            subtotal += s.amount
        discount_total = sum(totals.values())
        total = subtotal - discount_total + excl_tax
        if total < 0:
            raise AssertionError(f"negative invoice total {total} on {self.id}")
        base = shapes.make_invoice(
            inv_id,
            customer=self.cust.id,
            created=t,
            currency=cur,
            lines=lines,
            status="draft",
            subscription=self.id,
            billing_reason=reason,
            period_start=period[0],
            period_end=period[1],
            total_discount_amounts=[{"amount": a, "discount": k} for k, a in totals.items()],
            discounts=[d.id for d in self.discounts],
            customer_email=self.cust.email,
            customer_name=self.cust.name,
            livemode=eng.livemode,
        )
        base.update(
            subtotal=subtotal,
            subtotal_excluding_tax=subtotal - incl_tax,
            total=total,
            total_excluding_tax=total - excl_tax - incl_tax,
            total_taxes=[
                {
                    "amount": amt,
                    "tax_behavior": beh,
                    "tax_rate_details": {"tax_rate": rid},
                    "taxability_reason": "standard_rated",
                    "taxable_amount": taxable,
                    "type": "tax_rate_details",
                }
                for (rid, beh), (amt, taxable) in tax_totals.items()
            ],
            account_country="US",
            account_name="Stand-in SaaS Inc.",
            hosted_invoice_url=f"https://invoice.stripe.com/i/{self.account}/test_{inv_id[3:]}",
            invoice_pdf=f"https://pay.stripe.com/invoice/{self.account}/test_{inv_id[3:]}/pdf",
        )
        if self.default_tax_rates:
            base["customer_tax_exempt"] = "none"
        inv = InvoiceSim(base, self.cust, self)
        inv.push(t)
        self.cust.invoices.append(inv)
        eng.add(self.account, inv)
        eng.event(t, "invoice.created", inv, len(inv.versions) - 1)
        if self.cust.obj.get("currency") is None:
            self.cust.obj["currency"] = cur
        return inv

    def inv_event(self, inv: InvoiceSim, t: int, *types: str) -> None:
        """Record an invoice version at ``t`` and log the given events."""
        idx, _ = inv.push(t)
        for ty in types:
            self.eng.event(t, ty, inv, idx)

    def finalize(self, inv: InvoiceSim, t: int) -> None:
        """Draft -> open."""
        inv.status = "open"
        inv.finalized_at = t
        self.inv_event(inv, t, "invoice.finalized")

    def void(self, inv: InvoiceSim, t: int) -> None:
        # Only finalized invoices can be voided (a draft would be deleted instead).
        """Void an invoice (nothing more is due)."""
        if inv.status == "draft":
            self.finalize(inv, t - 1)
        inv.status = "void"
        inv.voided_at = t
        inv.next_payment_attempt = None
        self.inv_event(inv, t, "invoice.voided")

    def mark_uncollectible(self, inv: InvoiceSim, t: int) -> None:
        """Give up collecting an invoice."""
        inv.status = "uncollectible"
        inv.uncollectible_at = t
        inv.next_payment_attempt = None
        self.inv_event(inv, t, "invoice.marked_uncollectible")

    def attempt(self, inv: InvoiceSim, t: int, fail_p: float) -> ChargeSim | None:
        """One payment attempt; returns the charge when it succeeded."""
        ok = self.rng.random() >= fail_p
        ch = self.eng.charge(self.account, self.cust, inv, t, inv.amount_due, ok)
        inv.attempt_count += 1
        if inv.first_attempt is None:
            inv.first_attempt = t
        if ok:
            inv.status = "paid"
            inv.paid_at = t
            inv.amount_paid = inv.amount_due
            inv.next_payment_attempt = None
            inv.paid_charge = ch
            self.inv_event(inv, t, "invoice.paid", "invoice.payment_succeeded")
            self.maybe_refund(inv, ch, t)
            return ch
        self.inv_event(inv, t, "invoice.payment_failed")
        return None

    def maybe_refund(self, inv: InvoiceSim, ch: ChargeSim, t: int) -> None:
        """Occasionally schedule a refund or credit note after a payment."""
        if "refunds" in self.force and self.k <= 3 and inv.amount_paid > 0:
            kinds = ["refund_full", "refund_partial", "cn_partial", "cn_full"]
            self.schedule(t + 2 * DAY, "refund", inv, ch, kinds[self.k])
            return
        if inv.amount_paid <= 0 or self.rng.random() >= 0.035:
            return
        when = t + self.rng.randint(HOUR, 20 * DAY)
        kind = self.rng.choices(
            ["refund_full", "refund_partial", "cn_partial", "cn_full"], [3, 3, 3, 2]
        )[0]
        self.schedule(when, "refund", inv, ch, kind)

    def collect(self, inv: InvoiceSim, t_final: int) -> None:
        """Finalize and charge an invoice; failures move the subscription to past_due and retry."""
        self.finalize(inv, t_final)
        if inv.amount_due == 0:
            inv.status = "paid"
            inv.paid_at = t_final
            self.inv_event(inv, t_final, "invoice.paid", "invoice.payment_succeeded")
            return
        t = t_final + self.rng.randint(5, 90)
        fail_p = 0.35 if self.cust.risky else 0.03
        if (
            "fail_renewal" in self.force
            and self.k == 1
            and inv.base["billing_reason"] == "subscription_cycle"
        ):
            fail_p = 1.0
            inv.forced_fail = True
        if self.attempt(inv, t, fail_p) is not None:
            return
        offsets = RETRY_OFFSETS_SHORT if self.interval[0] in ("week", "day") else RETRY_OFFSETS_LONG
        inv.next_payment_attempt = t + offsets[0]
        self.inv_event(inv, t)
        if not self.ended and self.status == "active":
            self.status = "past_due"
            self.commit(t)
        if self.rng.random() < 0.1:
            self.schedule(t + DAY, "pre_credit", inv)
        self.schedule(t + offsets[0], "retry", inv, 1, offsets)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Create the subscription at ``created`` (trial or first paid period)."""
        t0 = self.created
        if self.trial_days:
            self.status = "trialing"
            self.trial_start = t0
            self.trial_end = t0 + self.trial_days * DAY
            self.anchor = self.trial_end
            self.period = (t0, self.trial_end)
            if self._initial_coupon is not None:
                self._attach_initial_coupon(t0)
            self.commit(t0, "customer.subscription.created")
            specs = [
                LineSpec(
                    0,
                    f"Trial period for {i.price.product_name}",
                    self.period,
                    i.price,
                    None if i.price.kind == "metered" else i.quantity,
                    i.id,
                )
                for i in self.items
            ]
            inv = self.new_invoice(t0, "subscription_create", specs, (t0, t0))
            self.latest_invoice = inv.id
            self.push(t0)
            self.finalize(inv, t0 + 1)
            inv.status = "paid"
            inv.paid_at = t0 + 1
            self.inv_event(inv, t0 + 1, "invoice.paid", "invoice.payment_succeeded")
            self.schedule(self.trial_end - 3 * DAY, "trial_will_end")
            self.schedule(self.trial_end, "trial_end")
            return
        self.period = (t0, self.boundary(1))
        if self._initial_coupon is not None:
            self._attach_initial_coupon(t0)
        fail_p = 0.3 if self.cust.risky else 0.04
        ok = self.rng.random() >= fail_p and "fail_first" not in self.force
        self.status = "active" if ok else "incomplete"
        self.commit(t0, "customer.subscription.created")
        inv = self.new_invoice(t0, "subscription_create", self.period_lines(self.period), (t0, t0))
        self.latest_invoice = inv.id
        self.push(t0)
        self.finalize(inv, t0 + 1)
        if inv.amount_due == 0:
            inv.status = "paid"
            inv.paid_at = t0 + 1
            self.inv_event(inv, t0 + 1, "invoice.paid", "invoice.payment_succeeded")
        else:
            self.attempt(inv, t0 + 2, 0.0 if ok else 1.0)
        if ok:
            self.after_period_start()
            return
        inv.next_payment_attempt = None
        if self.rng.random() < 0.4 and "fail_first" not in self.force:
            self.schedule(t0 + self.rng.randint(HOUR, 22 * HOUR), "incomplete_pay", inv)
        else:
            self.schedule(t0 + 23 * HOUR, "incomplete_expire", inv)

    def _attach_initial_coupon(self, t0: int) -> None:
        coupon = self._initial_coupon
        assert coupon is not None
        if coupon.model.duration == "once":
            # Covers the whole first billing period it applies to (docs/metrics.md §3).
            self.attach_discount(coupon, t0, self.period[0], self.period[1])
        elif coupon.model.duration == "repeating":
            end = add_months_ts(t0, coupon.model.duration_in_months or 0)
            self.attach_discount(coupon, t0, t0, end)
        else:
            self.attach_discount(coupon, t0, t0, None)

    def period_lines(self, period: tuple[int, int]) -> list[LineSpec]:
        """Non-proration lines for the licensed items over a service period."""
        out = []
        for it in self.items:
            if it.price.kind == "metered":
                continue
            out.append(
                LineSpec(
                    self.gross_amount(it.price, it.quantity),
                    self.describe(it.price, it.quantity),
                    period,
                    it.price,
                    it.quantity,
                    it.id,
                )
            )
        return out

    def after_period_start(self) -> None:
        """Schedule the next renewal and this period's random changes."""
        ps, pe = self.period
        self.schedule(pe, "renew", self.gen)
        clock = self.eng.clock
        scripted = {"pause": 1, "switch_annual": 1, "cancel_now": 2}
        for kind, k in scripted.items():
            if kind in self.force and self.k == k:
                self.schedule(ps + 3 * DAY, "mid", kind, self.gen)
        if "cape_now" in self.force and pe > clock:
            self.schedule(
                max(ps + HOUR, min(clock - HOUR, ps + DAY)), "mid", "cancel_period_end", self.gen
            )
        months = self._month_fraction()
        for kind, p_month in MID_PROBS.items():
            if self.force and kind != "seats":
                continue
            if kind == "seats" and self.cust.seat_heavy:
                for _ in range(self.rng.choice([0, 2, 3, 4, 5, 6])):
                    self.schedule(self.rng.randint(ps + DAY, pe - DAY), "mid", kind, self.gen)
                continue
            p = 1 - (1 - p_month) ** months
            if self.rng.random() < p:
                lo, hi = ps + 2 * DAY, pe - DAY
                if hi > lo:
                    self.schedule(self.rng.randint(lo, hi), "mid", kind, self.gen)

    def run(self) -> None:
        """Process timed actions until the clock."""
        self.start()
        clock = self.eng.clock
        while self._heap:
            t, _, _, action, args = heapq.heappop(self._heap)
            if t > clock:
                break
            getattr(self, f"on_{action}")(t, *args)
        if self.states:
            last = self.states[-1]
            self.states[-1] = SubState(
                last.start,
                None,
                last.status,
                last.items,
                last.paused,
                last.cancel_scheduled,
                last.delinquent,
            )

    # ------------------------------------------------------------------ actions

    def on_trial_will_end(self, t: int) -> None:
        """Stripe's three-day trial reminder event."""
        if self.status == "trialing":
            self.eng.event(t, "customer.subscription.trial_will_end", self, len(self.versions) - 1)

    def on_trial_end(self, t: int) -> None:
        """Trial over: convert (active, first paid period) or cancel."""
        if self.status != "trialing":
            return
        if not self.trial_converts:
            self.status = "canceled"
            self.ended_at = t
            self.canceled_at = t
            self.end_kind = "trial_expired"
            self.commit(t, "customer.subscription.deleted")
            return
        self.status = "active"
        self.k = 0
        self.period = (t, self.boundary(1))
        self.commit(t)
        inv = self.new_invoice(
            t, "subscription_cycle", self.period_lines(self.period), (self.trial_start or t, t)
        )
        self.latest_invoice = inv.id
        self.push(t)
        self.collect(inv, t + HOUR)
        self.after_period_start()

    def on_incomplete_pay(self, t: int, inv: InvoiceSim) -> None:
        """The customer completes the first payment within 23 hours."""
        if self.status != "incomplete":
            return
        self.attempt(inv, t, 0.0)
        self.status = "active"
        self.commit(t)
        self.after_period_start()

    def on_incomplete_expire(self, t: int, inv: InvoiceSim) -> None:
        """First payment never completed: incomplete_expired, invoice void."""
        if self.status != "incomplete":
            return
        self.void(inv, t)
        self.status = "incomplete_expired"
        self.ended_at = t
        self.end_kind = "incomplete_expired"
        self.commit(t, "customer.subscription.deleted")

    def on_renew(self, t: int, gen: int) -> None:
        """Period boundary: end if cancellation is due, else invoice the next period."""
        if gen != self.gen or self.ended or self.status == "unpaid":
            return
        if self.cancel_at is not None and self.cancel_at <= t:
            self.end(t, "voluntary")
            return
        prev = self.period
        # A once discount covered exactly the period that just ended.
        done = [
            d
            for d in self.discounts
            if d.coupon.model.duration == "once" and d.gt_end is not None and d.gt_end <= t
        ]
        if done:
            self._discounts_removed(t, done)
            self.discounts = [d for d in self.discounts if all(d is not x for x in done)]
        self.k += 1
        self.period = (t, self.boundary(self.k + 1))
        specs = self.period_lines(self.period)
        for it in self.items:
            if it.price.kind == "metered":
                since = max(it.created, prev[0])
                if since < prev[1]:
                    usage = self.rng.randint(2_000, 400_000)
                    specs.append(
                        LineSpec(
                            round_half_away(
                                Fraction(it.price.stripe["unit_amount_decimal"]) * usage
                            ),
                            f"{usage} × {it.price.product_name} (usage)",
                            (since, prev[1]),
                            it.price,
                            usage,
                            it.id,
                        )
                    )
        specs.extend(self.pending)
        self.pending = []
        inv = self.new_invoice(t, "subscription_cycle", specs, prev)
        self.latest_invoice = inv.id
        self.commit(t)
        if self.pause is not None:
            if self.pause["behavior"] == "void":
                self.void(inv, t + HOUR + 1)
            else:
                self.finalize(inv, t + HOUR)
                self.mark_uncollectible(inv, t + HOUR + 1)
        else:
            self.collect(inv, t + HOUR)
        self.after_period_start()

    def on_retry(self, t: int, inv: InvoiceSim, n: int, offsets: tuple[int, ...]) -> None:
        """A dunning retry; the last failure ends in unpaid or canceled."""
        if inv.status != "open":
            return
        if self.attempt(inv, t, 1.0 if inv.forced_fail else 0.55) is not None:
            if self.status == "past_due":
                self.status = "active"
                self.commit(t)
            return
        if n < len(offsets):
            inv.next_payment_attempt = (inv.first_attempt or t) + offsets[n]
            self.inv_event(inv, t)
            self.schedule(inv.next_payment_attempt, "retry", inv, n + 1, offsets)
            return
        inv.next_payment_attempt = None
        self.inv_event(inv, t)
        if self.ended:
            self.mark_uncollectible(inv, t + 1)
            return
        self.delinquent = True
        if self.dunning == "unpaid":
            self.status = "unpaid"
            self.end_kind = None
            self.commit(t)
            if self.rng.random() < 0.6 and "stay_unpaid" not in self.force:
                self.schedule(t + self.rng.randint(7 * DAY, 60 * DAY), "unpaid_cancel", inv)
            return
        self.status = "canceled"
        self.ended_at = t
        self.canceled_at = t
        self.cancel_reason = "payment_failed"
        self.end_kind = "delinquent"
        self.commit(t, "customer.subscription.deleted")
        if self.dunning == "cancel_void":
            self.void(inv, t + 1)
        else:
            self.mark_uncollectible(inv, t + 1)

    def on_unpaid_cancel(self, t: int, inv: InvoiceSim) -> None:
        """The merchant cancels an unpaid subscription."""
        if self.status != "unpaid":
            return
        self.status = "canceled"
        self.ended_at = t
        self.canceled_at = t
        self.cancel_reason = "payment_failed"
        self.end_kind = "delinquent"
        self.commit(t, "customer.subscription.deleted")
        if inv.status == "open" and self.rng.random() < 0.5:
            self.void(inv, t + 1)

    def on_pre_credit(self, t: int, inv: InvoiceSim) -> None:
        """A pre-payment credit note on an open invoice (reduces what is still due)."""
        if inv.status != "open" or inv.amount_due <= 0:
            return
        line = next((ln for ln in inv.lines if ln["amount"] > 0), None)
        if line is None:
            return
        share = Fraction(self.rng.choice([20, 25, 50]), 100)
        self.credit_note(inv, t, [(line, share)], "pre_payment", None)

    def on_discount_end(self, t: int, d: DiscSim) -> None:
        """A repeating discount reaches its end."""
        if d in self.discounts:
            self.discounts.remove(d)
            if not self.ended:
                self._discounts_removed(t, [d])
                self.commit(t)

    def on_resume(self, t: int) -> None:
        """pause_collection ends."""
        if self.pause is None or self.ended:
            return
        self.pause = None
        self.commit(t)

    def on_uncancel(self, t: int) -> None:
        """The customer withdraws a cancel-at-period-end."""
        if self.ended or not self.cancel_at_period_end:
            return
        self.cancel_at_period_end = False
        self.cancel_at = None
        self.canceled_at = None
        self.cancel_reason = None
        self.feedback = None
        self.commit(t)

    def on_refund(self, t: int, inv: InvoiceSim, ch: ChargeSim, kind: str) -> None:
        """A refund (full/partial) or a post-payment credit note with refund."""
        if ch.amount_refunded > 0 or inv.post_cn > 0:
            return
        if kind == "refund_full":
            self.eng.refund(self.account, self.cust, ch, ch.amount, t)
        elif kind == "refund_partial":
            amt = max(1, ch.amount * self.rng.choice([10, 25, 40, 50]) // 100)
            self.eng.refund(self.account, self.cust, ch, amt, t)
        elif kind == "cn_full" and inv.pre_cn == 0:
            self.credit_note(
                inv,
                t,
                [(ln, Fraction(1)) for ln in inv.lines if ln["amount"] > 0],
                "post_payment",
                ch,
            )
        else:
            line = next((ln for ln in inv.lines if ln["amount"] > 0), None)
            if line is not None:
                self.credit_note(inv, t, [(line, Fraction(1, 2))], "post_payment", ch)

    def credit_note(
        self,
        inv: InvoiceSim,
        t: int,
        parts: list[tuple[dict[str, Any], Fraction]],
        type_: str,
        ch: ChargeSim | None,
    ) -> None:
        """A credit note over (line, share) parts; post-payment ones refund the charge."""
        eng = self.eng
        cn_id = eng.ids("cn")
        lines = []
        subtotal = excl = incl = 0
        for line, share in parts:
            net_line = line["amount"] - sum(d["amount"] for d in line["discount_amounts"] or [])
            amount = round_half_away(Fraction(net_line) * share)
            if amount <= 0:
                continue
            taxes = []
            for tx in line["taxes"] or []:
                tax = round_half_away(Fraction(tx["amount"]) * amount / net_line) if net_line else 0
                taxes.append(
                    {
                        **tx,
                        "amount": tax,
                        "taxable_amount": amount - tax
                        if tx["tax_behavior"] == "inclusive"
                        else amount,
                    }
                )
                if tx["tax_behavior"] == "inclusive":
                    incl += tax
                else:
                    excl += tax
            cnl = shapes.make_credit_note_line(
                eng.ids("cnli"),
                amount=amount,
                description=line["description"],
                invoice_line_item=line["id"],
                quantity=line["quantity"] or 1,
                unit_amount=None,
                livemode=eng.livemode,
            )
            cnl["unit_amount"] = None
            cnl["unit_amount_decimal"] = None
            cnl["taxes"] = taxes
            lines.append(cnl)
            subtotal += amount
        if not lines:
            return
        total = subtotal + excl
        if type_ == "pre_payment":
            total = min(total, inv.amount_due)
        elif ch is not None:
            total = min(total, ch.amount - ch.amount_refunded)
        if total <= 0:
            return
        refunds = []
        if type_ == "post_payment" and ch is not None:
            re_id = eng.refund(self.account, self.cust, ch, total, t)
            refunds.append({"refund": re_id, "amount_refunded": total})
        inv.customer.credit_notes += 1
        number = f"{inv.customer.obj['invoice_prefix']}-CN-{inv.customer.credit_notes:04d}"
        cn = shapes.make_credit_note(
            cn_id,
            invoice=inv.id,
            customer=self.cust.id,
            created=t,
            currency=inv.currency,
            lines=lines,
            number=number,
            reason=self.rng.choice(["product_unsatisfactory", "order_change", "duplicate", None]),
            type=type_,
            refunds=refunds,
            livemode=eng.livemode,
        )
        cn.update(
            amount=total,
            subtotal=subtotal,
            subtotal_excluding_tax=subtotal - incl,
            total=total,
            total_excluding_tax=total - excl - incl,
            total_taxes=[{k: v for k, v in tx.items()} for ln in lines for tx in ln["taxes"]],
            post_payment_amount=total if type_ == "post_payment" else 0,
            pre_payment_amount=total if type_ == "pre_payment" else 0,
        )
        st = Static(cn, t)
        eng.add(self.account, st)
        eng.event(t, "credit_note.created", st, 0)
        if type_ == "pre_payment":
            inv.pre_cn += total
        else:
            inv.post_cn += total
        self.inv_event(inv, t, "invoice.updated")

    def end(self, t: int, kind: str) -> None:
        """End the subscription at ``t`` (status canceled)."""
        self.status = "canceled"
        self.ended_at = t
        if self.canceled_at is None:
            self.canceled_at = t
        self.cancel_reason = self.cancel_reason or "cancellation_requested"
        self.end_kind = kind
        self.commit(t, "customer.subscription.deleted")
        if self.pending:
            specs, self.pending = self.pending, []
            inv = self.new_invoice(t, "subscription_update", specs, (t, t))
            self.collect(inv, t + 1)

    def on_mid(self, t: int, kind: str, gen: int) -> None:
        """A random mid-period change, if the subscription is still active and unpaused."""
        if gen != self.gen or self.status != "active" or self.pause is not None:
            return
        if self.cancel_at_period_end and kind not in ("seats",):
            return
        getattr(self, f"mid_{kind}")(t)

    # ------------------------------------------------------------------ mid-period changes

    def _proration(self, t: int, entry: PriceEntry, qty: int, item_id: str, sign: int) -> LineSpec:
        ps, pe = self.period
        frac = Fraction(pe - t, pe - ps)
        amount = round_half_away(
            Fraction(self.gross_amount(entry, qty)) * frac * (1 - self.percent_now())
        )
        when = datetime.fromtimestamp(t, UTC).strftime("%d %b %Y")
        label = "Remaining time on" if sign > 0 else "Unused time on"
        return LineSpec(
            sign * amount,
            f"{label} {qty} × {entry.product_name} after {when}",
            (t, pe),
            entry,
            qty,
            item_id,
            proration=True,
            discountable=False,
            invoice_item=self.eng.ids("ii"),
        )

    def mid_seats(self, t: int) -> None:
        """Seat (quantity) change; increases are prorated, decreases are not."""
        it = self.main_item
        if it.price.kind not in ("seat", "graduated", "volume", "pack"):
            return
        q = it.quantity
        # Seats drift up more often than down, but a team does not grow without bound.
        cap = 400 if it.price.kind == "volume" else 250
        up = self.rng.random() < (0.8 if self.cust.seat_heavy else 0.65) and q < cap
        if up:
            new_q = min(cap, q + self.rng.randint(1, max(1, q // 8 + 2)))
        else:
            new_q = max(1, q - self.rng.randint(1, max(1, q // 5 + 1)))
        if new_q == q:
            return
        if self.gross_amount(it.price, new_q) > self.gross_amount(it.price, q):
            self.pending.append(self._proration(t, it.price, q, it.id, -1))
            self.pending.append(self._proration(t, it.price, new_q, it.id, +1))
        it.quantity = new_q
        self.commit(t)

    def mid_plan_change(self, t: int) -> None:
        """Switch plan at the same interval; upgrades are prorated, downgrades not."""
        it = self.main_item
        if it.price.kind in ("inclusive", "weekly"):
            return
        interval_key = {("month", 1): "month", ("month", 3): "quarter", ("year", 1): "year"}.get(
            self.interval
        )
        if interval_key is None:
            return
        options = [
            e
            for fam in ("starter", "pro", "teampack", "business", "enterprise")
            if (e := self.cat.price(fam, interval_key, self.currency)) is not None
            and fam != it.price.family
        ]
        if not options:
            return
        new = self.rng.choice(options)
        old_entry, old_q = it.price, it.quantity
        if new.kind == "flat":
            new_q = 1
        elif old_entry.kind == "flat":
            new_q = self.rng.randint(2, 12)
        else:
            new_q = old_q
        if new.kind == "volume":
            new_q = max(new_q, 10)
        upgrade = self.gross_amount(new, new_q) > self.gross_amount(old_entry, old_q)
        if upgrade:
            self.pending.append(self._proration(t, old_entry, old_q, it.id, -1))
            self.pending.append(self._proration(t, new, new_q, it.id, +1))
        it.price = new
        it.quantity = new_q
        self.commit(t)

    def mid_switch_annual(self, t: int) -> None:
        """Monthly -> yearly: new anchor, immediate invoice with a proration credit."""
        if self.interval != ("month", 1) or len(self.items) != 1:
            return
        if any(d.coupon.model.duration == "once" for d in self.discounts):
            return
        it = self.items[0]
        yearly = self.cat.price(it.price.family, "year", self.currency)
        if yearly is None or it.price.kind == "metered":
            return
        credit = self._proration(t, it.price, it.quantity, it.id, -1)
        it.price = yearly
        self.anchor = t
        self.k = 0
        self.gen += 1
        self.period = (t, self.boundary(1))
        specs = [*self.period_lines(self.period), credit, *self.pending]
        self.pending = []
        self.commit(t)
        inv = self.new_invoice(t, "subscription_update", specs, (t, t))
        self.latest_invoice = inv.id
        self.push(t)
        self.collect(inv, t + 1)
        self.after_period_start()

    def mid_addon_add(self, t: int) -> None:
        """Add an add-on item (prorated for the rest of the period)."""
        interval_key = {("month", 1): "month", ("year", 1): "year"}.get(self.interval)
        if interval_key is None or self.main_item.price.kind in ("inclusive", "weekly"):
            return
        have = {i.price.family for i in self.items}
        options = [
            e
            for key in ("support", "sso", "audit", "storage")
            if (e := self.cat.price(f"addon_{key}", interval_key, self.currency)) is not None
            and e.family not in have
        ]
        if not options:
            return
        entry = self.rng.choice(options)
        qty = self.rng.randint(1, 10) if entry.family == "addon_storage" else 1
        item = ItemSim(self.eng.ids("si"), entry, qty, t)
        self.items.append(item)
        self.pending.append(self._proration(t, entry, qty, item.id, +1))
        self.commit(t)

    def mid_addon_remove(self, t: int) -> None:
        """Remove an add-on item (no proration)."""
        addons = [i for i in self.items if i.price.kind == "addon"]
        if not addons:
            return
        self.items.remove(self.rng.choice(addons))
        self.commit(t)

    def mid_coupon(self, t: int) -> None:
        """Attach a forever or repeating coupon mid-period."""
        if self.discounts or self._has_inclusive():
            return
        has_metered = any(i.price.kind == "metered" for i in self.items)
        options = [
            c
            for c in self.cat.coupons
            if c.model.duration != "once"
            and (
                c.model.percent_off is not None
                or (c.model.currency == self.currency and not has_metered)
            )
        ]
        coupon = self.rng.choice(options)
        end = (
            add_months_ts(t, coupon.model.duration_in_months or 0)
            if coupon.model.duration == "repeating"
            else None
        )
        self.attach_discount(coupon, t, t, end)
        self.commit(t)

    def mid_pause(self, t: int) -> None:
        """Pause collection (invoices voided or marked uncollectible) until resumed."""
        resumes = t + self.rng.randint(20 * DAY, 100 * DAY) if self.rng.random() < 0.6 else None
        if "pause" in self.force:
            resumes = t + 40 * DAY
        self.pause = {
            "behavior": self.rng.choice(["void", "void", "mark_uncollectible"]),
            "resumes_at": resumes,
        }
        self.commit(t)
        if resumes is not None:
            self.schedule(resumes, "resume")
        elif self.rng.random() < 0.6:
            self.schedule(t + self.rng.randint(15 * DAY, 120 * DAY), "resume")

    def mid_cancel_now(self, t: int) -> None:
        """Cancel immediately; sometimes credit the unused time with a refund."""
        self.feedback = self.rng.choice(
            ["too_expensive", "missing_features", "switched_service", "unused", None]
        )
        last = self.latest_paid_cycle_invoice()
        self.end(t, "voluntary")
        if last is not None and last.paid_charge is not None and self.rng.random() < 0.4:
            ps, pe = self.period
            share = Fraction(max(pe - t, 0), max(pe - ps, 1))
            parts = [
                (ln, share)
                for ln in last.lines
                if ln["amount"] > 0 and not ln["parent"]["subscription_item_details"]["proration"]
            ]
            if parts and share > 0:
                self.credit_note(last, t + 60, parts, "post_payment", last.paid_charge)

    def latest_paid_cycle_invoice(self) -> InvoiceSim | None:
        """The last paid period invoice of this subscription."""
        for inv in reversed(self.cust.invoices):
            if (
                inv.sub is self
                and inv.status == "paid"
                and inv.base["billing_reason"] in ("subscription_cycle", "subscription_create")
            ):
                return inv
        return None

    def mid_cancel_period_end(self, t: int) -> None:
        """Schedule cancellation at the end of the current period."""
        self.cancel_at_period_end = True
        self.cancel_at = self.period[1]
        self.canceled_at = t
        self.cancel_reason = "cancellation_requested"
        self.feedback = self.rng.choice(
            ["too_expensive", "missing_features", "low_quality", "unused", None]
        )
        self.commit(t)
        if self.rng.random() < 0.2 and "cape_now" not in self.force:
            self.schedule(
                t + self.rng.randint(HOUR, max(HOUR + 1, (self.period[1] - t) // 2)), "uncancel"
            )

    def mid_cancel_at(self, t: int) -> None:
        """Schedule cancellation at the end of the next period (``cancel_at``)."""
        self.cancel_at = self.boundary(self.k + 2)
        self.canceled_at = t
        self.cancel_reason = "cancellation_requested"
        self.commit(t)


# --------------------------------------------------------------------------- customers


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
