"""Invoicing and payments of a subscription: Stripe-side amounts, invoices with discounts and
taxes, payment attempts and dunning, refunds and credit notes."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction
from typing import Any

from finance_pipeline.lib.money import round_half_away
from finance_pipeline_dev.standin import shapes

from ..catalog import PriceEntry
from .basics import DAY, HOUR
from .objects import ChargeSim, InvoiceSim, LineSpec, Static

RETRY_OFFSETS_LONG = (3 * DAY, 7 * DAY, 14 * DAY)
RETRY_OFFSETS_SHORT = (1 * DAY, 3 * DAY, 5 * DAY)


class _Invoicing:
    """Invoicing and payment methods of ``SubSim`` (a mixin over the subscription's state)."""

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

    def on_pre_credit(self, t: int, inv: InvoiceSim) -> None:
        """A pre-payment credit note on an open invoice (reduces what is still due)."""
        if inv.status != "open" or inv.amount_due <= 0:
            return
        line = next((ln for ln in inv.lines if ln["amount"] > 0), None)
        if line is None:
            return
        share = Fraction(self.rng.choice([20, 25, 50]), 100)
        self.credit_note(inv, t, [(line, share)], "pre_payment", None)

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
