"""The ``Engine``: collects each account's objects and the (retained) event log, and books the
money movements: charges with their invoice payments, refunds, balance transactions."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from finance_pipeline_dev.standin import shapes

from .basics import DAY, EVENT_RETENTION, Ids, fee_for
from .objects import ChargeSim, InvoiceSim, Static, Versioned

if TYPE_CHECKING:
    from .customers import CustomerSim


FAILURE_CODES = [
    ("card_declined", "Your card was declined."),
    ("insufficient_funds", "Your card has insufficient funds."),
    ("expired_card", "Your card has expired."),
]


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
