"""``SubSim``: one subscription's state, its ground-truth commits and Stripe renderings, and its
discounts. Its behaviour is mixed in from ``lifecycle``, ``invoicing`` and ``changes``."""

from __future__ import annotations

import heapq
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from finance_pipeline_dev.standin import shapes

from ..catalog import Catalog, CouponEntry, PriceEntry
from ..model import DiscountSpan, ItemState, SubState, SubTimeline
from .basics import DAY, add_months_ts, period_boundary
from .changes import _MidPeriodChanges
from .invoicing import _Invoicing
from .lifecycle import _Lifecycle
from .objects import DiscSim, ItemSim, LineSpec, Static, Versioned
from .recorder import Engine

if TYPE_CHECKING:
    from .customers import CustomerSim


class SubSim(_Lifecycle, _Invoicing, _MidPeriodChanges, Versioned):
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
