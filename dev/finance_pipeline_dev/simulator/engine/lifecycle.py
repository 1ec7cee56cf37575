"""A subscription's lifecycle: its start (trial or first paid period), the loop over its timed
actions, and the actions themselves (trial end, renewals, dunning retries, resumes, endings)."""

from __future__ import annotations

import heapq
from fractions import Fraction

from finance_pipeline.lib.money import round_half_away

from ..model import SubState
from .basics import DAY, HOUR, add_months_ts
from .objects import DiscSim, InvoiceSim, LineSpec

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


class _Lifecycle:
    """Lifecycle methods and timed actions of ``SubSim`` (a mixin over the subscription's state)."""

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
