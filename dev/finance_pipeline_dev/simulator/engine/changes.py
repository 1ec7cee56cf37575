"""Mid-period changes of a subscription: seats, plan switches (and monthly to annual), add-ons,
coupons, pauses and cancellations, with Stripe's prorations."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

from finance_pipeline.lib.money import round_half_away

from ..catalog import PriceEntry
from .basics import DAY, HOUR, add_months_ts
from .objects import InvoiceSim, ItemSim, LineSpec


class _MidPeriodChanges:
    """Mid-period change methods of ``SubSim`` (a mixin over the subscription's state)."""

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
