"""Subscription history as half-open intervals of constant state (docs/metrics.md §4, "History").

Stripe returns only current state, so history is rebuilt from three sources, most exact first:

1. `customer.subscription.*` events (kept by the pipeline beyond Stripe's 30-day retention): each
   carries the subscription right after the change, so consecutive events give exact intervals;
2. the subscription as seen at the latest sync (the final state);
3. for the time before the first stored event, invoice lines: each non-proration line says which
   price and quantity an item had over its service period, each prorated "remaining time" line says
   an item changed at its period start; lifecycle fields (start, trial, cancellation) and payment
   attempts give the status. Changes Stripe does not invoice (an un-prorated downgrade, a pause)
   show only from the next invoice there: the reconciliation check reports such gaps.

Pure functions over Stripe payload dicts; the output feeds `lib.mrr_timeline`.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from operator import attrgetter
from typing import Any

from finance_pipeline.lib.mrr import (
    DiscountSpec,
    PriceSpec,
    SubscriptionItem,
    SubscriptionState,
    TierSpec,
    TransformQuantity,
)

Obj = Mapping[str, Any]


def _id(value: Any) -> str | None:
    if value is None:
        return None
    return value.get("id") if isinstance(value, Mapping) else str(value)


def price_spec(price: Obj, tax_rates: Iterable[Obj] = ()) -> PriceSpec:
    """The MRR-relevant part of a Stripe price; an inclusive price takes its item's tax rate."""
    rec = price.get("recurring") or {}
    transform = price.get("transform_quantity")
    inclusive_rate = None
    if price.get("tax_behavior") == "inclusive":
        rates = [Decimal(str(r["percentage"])) for r in tax_rates if r.get("inclusive")]
        inclusive_rate = sum(rates, Decimal(0)) if rates else None
    return PriceSpec(
        currency=price["currency"],
        unit_amount_decimal=None
        if price.get("unit_amount_decimal") is None
        else str(price["unit_amount_decimal"]),
        billing_scheme=price.get("billing_scheme") or "per_unit",
        tiers_mode=price.get("tiers_mode"),
        tiers=tuple(
            TierSpec(
                up_to=t.get("up_to"),
                unit_amount_decimal=None
                if t.get("unit_amount_decimal") is None
                else str(t["unit_amount_decimal"]),
                flat_amount_decimal=None
                if t.get("flat_amount_decimal") is None
                else str(t["flat_amount_decimal"]),
            )
            for t in price.get("tiers") or ()
        ),
        transform_quantity=None
        if not transform
        else TransformQuantity(int(transform["divide_by"]), transform["round"]),
        interval=rec.get("interval") or "month",
        interval_count=int(rec.get("interval_count") or 1),
        usage_type=rec.get("usage_type") or "licensed",
        tax_behavior=price.get("tax_behavior") or "unspecified",
        inclusive_tax_rate_percent=inclusive_rate,
        price_id=price.get("id"),
        product_id=_id(price.get("product")),
    )


def discount_spec(discount: Obj, once_end: int | None = None) -> DiscountSpec:
    """A Stripe discount with its coupon; a `once` discount ends with its first billing period."""
    coupon = (discount.get("source") or {}).get("coupon") or discount.get("coupon") or {}
    duration = coupon.get("duration") or "forever"
    pct = coupon.get("percent_off")
    end = discount.get("end")
    if duration == "once":
        end = once_end if once_end is not None else end
    return DiscountSpec(
        coupon_id=coupon.get("id") or discount["id"],
        percent_off=None if pct is None else Decimal(str(pct)),
        amount_off=coupon.get("amount_off"),
        currency=coupon.get("currency"),
        duration=duration,
        start=int(discount.get("start") or 0),
        end=None if end is None else int(end),
    )


@dataclass(frozen=True)
class HistoryInputs:
    """Everything known about one subscription, as synced."""

    workspace_id: str
    subscription: Obj  # current payload (as of the last sync)
    items: Sequence[Obj]  # every current item (beyond the 10 embedded)
    events: Sequence[Obj] = ()  # customer.subscription.* events, any order
    lines: Sequence[Obj] = ()  # invoice lines of this subscription, with `invoice_created`
    prices: Mapping[str, Obj] = field(default_factory=dict)
    discounts: Mapping[str, Obj] = field(default_factory=dict)
    # (invoice id, attempt instant, succeeded) for payment attempts of this subscription's invoices
    attempts: Sequence[tuple[str, int, bool]] = ()
    invoices: Mapping[str, Obj] = field(default_factory=dict)  # invoice id -> invoice row


@dataclass(frozen=True)
class _Snap:
    at: int
    obj: Obj


def _items_of(obj: Obj, fallback: Sequence[Obj] | None = None, at: int | None = None) -> list[Obj]:
    embedded = obj.get("items") or {}
    data = list(embedded.get("data") or [])
    if embedded.get("has_more") and fallback:
        # Events embed at most 10 items; beyond that the current full list is the best evidence,
        # limited to items that already existed at the snapshot's instant.
        known = {i["id"] for i in data}
        data += [
            i
            for i in fallback
            if i["id"] not in known and (at is None or int(i.get("created") or 0) <= at)
        ]
    return data


class _Builder:
    def __init__(self, inp: HistoryInputs) -> None:
        self.inp = inp
        self.sub = inp.subscription
        self.sub_id = inp.subscription["id"]
        # Tax rates live on subscription items, not on prices; invoice lines name only the item.
        self.item_tax_rates: dict[str, list[Obj]] = {}
        for ev in inp.events:
            for it in _items_of(ev["data"]["object"]):
                if it.get("tax_rates"):
                    self.item_tax_rates[it["id"]] = list(it["tax_rates"])
        for it in inp.items:
            if it.get("tax_rates"):
                self.item_tax_rates[it["id"]] = list(it["tax_rates"])
        # Specs already built from a payload (by its id, the payload kept alive alongside so the
        # id stays its own): every interval of a subscription names the same few prices and
        # discounts, and building a spec each time was a large part of the history build.
        self._prices: dict[tuple[int, Any], tuple[Obj, PriceSpec]] = {}
        self._discounts: dict[int, tuple[Obj, DiscountSpec]] = {}
        self._once_ends: dict[int, int | None] = {}

    # -- conversions ---------------------------------------------------------------------------
    def price(self, price: Any, tax_rates: Iterable[Obj] = ()) -> PriceSpec | None:
        pid = _id(price)
        payload = self.inp.prices.get(pid or "") or (price if isinstance(price, Mapping) else None)
        if payload is None:
            return None
        # The tax rates matter only to an inclusive price (`price_spec`).
        rates = tuple(tax_rates) if payload.get("tax_behavior") == "inclusive" else ()
        key = (id(payload), tuple((r.get("inclusive"), r.get("percentage")) for r in rates))
        hit = self._prices.get(key)
        if hit is not None and hit[0] is payload:
            return hit[1]
        spec = price_spec(payload, rates)
        self._prices[key] = (payload, spec)
        return spec

    def discounts_of(self, obj: Obj) -> tuple[DiscountSpec, ...]:
        out = []
        for d in obj.get("discounts") or ():
            payload = d if isinstance(d, Mapping) else self.inp.discounts.get(str(d))
            if payload is None:
                continue  # unknown discount id: nothing to apply (reported by reconciliation)
            hit = self._discounts.get(id(payload))
            if hit is None or hit[0] is not payload:
                hit = (payload, discount_spec(payload, self.once_end(payload)))
                self._discounts[id(payload)] = hit
            out.append(hit[1])
        return tuple(out)

    def known_discounts(self, anchor: Obj) -> list[Obj]:
        """Every discount known on this subscription, each in force only on [start, end).

        A discount no longer on the subscription was removed after the last invoice that used it.
        """
        current = {_id(d) for d in anchor.get("discounts") or ()}
        out = []
        for d in self.inp.discounts.values():
            if _id(d.get("subscription")) != self.sub_id:
                continue
            if d["id"] not in current and d.get("end") is None:
                used = [
                    int(ln["period_end"])
                    for ln in self.inp.lines
                    if d["id"] in (ln.get("discount_ids") or ()) and ln.get("period_end")
                ]
                if used:
                    d = {**d, "end": max(used)}
            out.append(d)
        return out

    def once_end(self, discount: Obj) -> int | None:
        """End of the first billing period a `once` discount applied to."""
        start = int(discount.get("start") or 0)
        if start in self._once_ends:
            return self._once_ends[start]
        self._once_ends[start] = end = self._once_end(start)
        return end

    def _once_end(self, start: int) -> int | None:
        ends = sorted(
            int(ln["period_end"])
            for ln in self.inp.lines
            if not ln.get("proration")
            and ln.get("period_start") is not None
            and int(ln["period_start"]) <= start < int(ln["period_end"])
        )
        if ends:
            return ends[0]
        periods = [
            int(i["current_period_end"]) for i in self.inp.items if i.get("current_period_end")
        ]
        return min(periods) if periods else None

    def state(
        self, obj: Obj, start: int, end: int | None, past_due_since: int | None
    ) -> SubscriptionState:
        items = []
        for it in _items_of(obj, self.inp.items, start):
            spec = self.price(
                it.get("price"), it.get("tax_rates") or self.item_tax_rates.get(it["id"], ())
            )
            if spec is not None:
                items.append(SubscriptionItem(it["id"], spec, int(it.get("quantity") or 0)))
        details = obj.get("cancellation_details") or {}
        return SubscriptionState(
            workspace_id=self.inp.workspace_id,
            subscription_id=self.sub_id,
            customer_id=_id(obj.get("customer")) or "",
            currency=obj.get("currency") or self.sub.get("currency") or "usd",
            valid_from=start,
            valid_to=end,
            status=obj.get("status") or "active",
            items=tuple(items),
            trial_end=obj.get("trial_end"),
            pause_collection=obj.get("pause_collection") is not None,
            cancel_scheduled=bool(obj.get("cancel_at_period_end") or obj.get("cancel_at")),
            discounts=self.discounts_of(obj),
            past_due_since=past_due_since,
            started_at=obj.get("start_date"),
            ended_at=obj.get("ended_at"),
            cancellation_reason=details.get("reason"),
        )

    # -- events --------------------------------------------------------------------------------
    def snapshots(self) -> tuple[list[_Snap], Obj | None]:
        """Event snapshots in time order, and the state just before the first one."""
        events = sorted(self.inp.events, key=lambda e: (int(e["created"]), e["id"]))
        snaps: list[_Snap] = []
        for i, ev in enumerate(events):
            obj = ev["data"]["object"]
            if snaps and snaps[-1].at == int(ev["created"]):
                # Several changes in one second: keep the one the next change builds on.
                nxt = events[i + 1] if i + 1 < len(events) else None
                if nxt is not None and not self._precedes(obj, nxt):
                    continue
                snaps[-1] = _Snap(int(ev["created"]), obj)
            else:
                snaps.append(_Snap(int(ev["created"]), obj))
        before = None
        if events and events[0]["type"] != "customer.subscription.created":
            prev = (events[0]["data"].get("previous_attributes")) or {}
            before = {**events[0]["data"]["object"], **prev}
        return snaps, before

    @staticmethod
    def _precedes(obj: Obj, later_event: Obj) -> bool:
        prev = later_event["data"].get("previous_attributes") or {}
        return all(obj.get(k) == v for k, v in prev.items())

    # -- invoices (before the first event) -----------------------------------------------------
    def item_timeline(self) -> tuple[list[int], dict[int, dict[str, tuple[Any, int]]]]:
        """Instants at which the item set changes, and the items (price, qty) from each."""
        cycles: dict[int, dict[str, tuple[Any, int]]] = {}
        changes: list[tuple[int, str, Any, int]] = []
        for ln in self.inp.lines:
            item = ln.get("subscription_item")
            price = self.inp.prices.get(ln.get("price") or "")
            if item is None or price is None or ln.get("period_start") is None:
                continue
            if ((price.get("recurring") or {}).get("usage_type")) == "metered":
                continue  # billed in arrears for the previous period; contributes no MRR
            qty = int(ln.get("quantity") or 0)
            if ln.get("proration"):
                if int(ln.get("amount") or 0) > 0:
                    changes.append((int(ln["period_start"]), item, price, qty))
            else:
                cycles.setdefault(int(ln["period_start"]), {})[item] = (price, qty)
        instants = sorted(set(cycles) | {c[0] for c in changes})
        states: dict[int, dict[str, tuple[Any, int]]] = {}
        current: dict[str, tuple[Any, int]] = {}
        by_instant: dict[int, list[tuple[str, Any, int]]] = {}
        for t, item, price, qty in changes:
            by_instant.setdefault(t, []).append((item, price, qty))
        for t in instants:
            if t in cycles:
                current = dict(cycles[t])  # a new period lists every item it bills
            for item, price, qty in by_instant.get(t, ()):
                current[item] = (price, qty)
            states[t] = dict(current)
        return instants, states

    def status_changes(self, until: int) -> list[tuple[int, str]]:
        """(instant, status) from lifecycle fields and payment attempts, before `until`."""
        sub = self.sub
        start = int(sub.get("start_date") or sub.get("created") or 0)
        out: list[tuple[int, str]] = []
        if sub.get("trial_start") and sub.get("trial_end"):
            out.append((int(sub["trial_start"]), "trialing"))
            out.append((int(sub["trial_end"]), "active"))
        else:
            out.append((start, "active"))
        by_invoice: dict[str, list[tuple[int, bool]]] = {}
        for inv, t, ok in self.inp.attempts:
            by_invoice.setdefault(inv, []).append((int(t), ok))
        for inv_id, attempts in by_invoice.items():
            attempts.sort()
            failures = [t for t, ok in attempts if not ok]
            if not failures:
                continue
            inv = self.inp.invoices.get(inv_id) or {}
            paid_at = inv.get("paid_at")
            first_status = (
                "incomplete" if inv.get("billing_reason") == "subscription_create" else "past_due"
            )
            out.append((failures[0], first_status))
            if paid_at:
                out.append((int(paid_at), "active"))
            elif (
                inv.get("status") in ("open", "uncollectible", "void")
                and first_status == "past_due"
            ):
                ended = sub.get("ended_at")
                if not (ended and abs(int(ended) - failures[-1]) <= 3600):
                    out.append((failures[-1], "unpaid"))
        if sub.get("ended_at"):
            out.append((int(sub["ended_at"]), "canceled"))
        return sorted(x for x in out if x[0] < until)

    def pre_history(self, until: int, anchor: Obj) -> list[SubscriptionState]:
        """States from the subscription's start to `until`, from invoices and lifecycle fields."""
        start = int(self.sub.get("start_date") or self.sub.get("created") or 0)
        if until <= start:
            return []
        item_instants, item_states = self.item_timeline()
        statuses = self.status_changes(until)
        cancel_at = self.sub.get("canceled_at")
        scheduled = bool(anchor.get("cancel_at_period_end") or anchor.get("cancel_at"))
        breaks = {start, *[t for t in item_instants if start <= t < until]}
        breaks |= {t for t, _ in statuses if start <= t < until}
        if scheduled and cancel_at and start <= int(cancel_at) < until:
            breaks.add(int(cancel_at))
        points = sorted(breaks)
        # The same discount objects for every interval (their specs are then built once).
        known = self.known_discounts(anchor)
        out: list[SubscriptionState] = []
        for i, t in enumerate(points):
            end = points[i + 1] if i + 1 < len(points) else until
            k = bisect_right(item_instants, t) - 1
            if k >= 0:
                items_now = item_states[item_instants[k]]
                items_obj = [
                    {"id": item, "price": price, "quantity": qty}
                    for item, (price, qty) in sorted(items_now.items())
                ]
            else:
                items_obj = list(_items_of(anchor, self.inp.items))
            status = "active"
            for ts, st in statuses:
                if ts <= t:
                    status = st
            obj = {
                **anchor,
                "discounts": known,
                "status": status,
                "items": {"data": items_obj, "has_more": False},
                "cancel_at_period_end": scheduled
                and cancel_at is not None
                and t >= int(cancel_at)
                and bool(anchor.get("cancel_at_period_end")),
                "cancel_at": anchor.get("cancel_at")
                if scheduled and cancel_at is not None and t >= int(cancel_at)
                else None,
                "pause_collection": None,
            }
            out.append(self.state(obj, t, end, None))
        return out

    # -- all -----------------------------------------------------------------------------------
    def build(self, now: int) -> list[SubscriptionState]:
        snaps, before = self.snapshots()
        current = {**self.sub, "items": {"data": list(self.inp.items), "has_more": False}}
        if not snaps:
            # Only invoices and the synced object: the object holds from the last known change.
            states = self.pre_history(now, current)
            if not states:
                return _finish(
                    [self.state(current, int(current.get("start_date") or now), None, None)]
                )
            states[-1] = self.state(current, states[-1].valid_from, None, None)
            return _finish(states)
        states = [] if before is None else self.pre_history(snaps[0].at, before)
        timeline = list(snaps)
        if _differs(snaps[-1].obj, current, self.inp.items):
            # The synced object changed after the newest stored event (events were missed).
            timeline.append(_Snap(max(now, snaps[-1].at), current))
        for i, snap in enumerate(timeline):
            end = timeline[i + 1].at if i + 1 < len(timeline) else None
            states.append(self.state(snap.obj, snap.at, end, None))
        return _finish(states)

    def due_at(self, now: int) -> int | None:
        """The last instant up to which `build(t)` equals `build(now)` (None: for every t).

        Only two things read `now`: the interval of a synced state that differs from the newest
        event starts at `now` (it moves with every build), and without events the invoice-derived
        history stops at `now`, so a break point at or after `now` enters once `now` passes it.
        """
        snaps, _before = self.snapshots()
        current = {**self.sub, "items": {"data": list(self.inp.items), "has_more": False}}
        if snaps:
            return now if _differs(snaps[-1].obj, current, self.inp.items) else None
        start = int(self.sub.get("start_date") or self.sub.get("created") or 0)
        if not current.get("start_date") and now <= start:
            return now  # the single interval starts at `now`
        # Every break point `pre_history(until, ...)` can take, with no `until` filter.
        item_instants, _states = self.item_timeline()
        candidates = {start, *item_instants}
        candidates |= {t for t, _ in self.status_changes(2**62)}
        cancel_at = self.sub.get("canceled_at")
        if cancel_at:
            candidates.add(int(cancel_at))
        later = [t for t in candidates if t >= now]
        return min(later) if later else None


_COMPARED = (
    "status",
    "trial_end",
    "pause_collection",
    "cancel_at_period_end",
    "cancel_at",
    "ended_at",
)


def _differs(a: Obj, b: Obj, items: Sequence[Obj]) -> bool:
    if any(a.get(k) != b.get(k) for k in _COMPARED):
        return True
    ia = sorted((i["id"], _id(i.get("price")), i.get("quantity")) for i in _items_of(a, items))
    ib = sorted((i["id"], _id(i.get("price")), i.get("quantity")) for i in _items_of(b, items))
    return ia != ib or [_id(d) for d in a.get("discounts") or ()] != [
        _id(d) for d in b.get("discounts") or ()
    ]


def _finish(states: list[SubscriptionState]) -> list[SubscriptionState]:
    """Drop empty intervals, merge equal neighbours, and date the start of each past_due run."""
    # [first state of a run of equal states, the run's valid_to]: each run's state is copied
    # once with its final valid_to, not once per merged neighbour.
    runs: list[list[Any]] = []
    for st in states:
        if st.valid_to is not None and st.valid_to <= st.valid_from:
            continue
        if runs and _same(runs[-1][0], st):
            runs[-1][1] = st.valid_to
            continue
        if runs and runs[-1][1] != st.valid_from:
            runs[-1][1] = st.valid_from
        runs.append([st, st.valid_to])
    out = [st if st.valid_to == to else replace(st, valid_to=to) for st, to in runs]
    since = None
    final = []
    for st in out:
        if st.status == "past_due":
            since = st.valid_from if since is None else since
            st = replace(st, past_due_since=since)
        else:
            since = None
        final.append(st)
    return final


# Every field of a state but its interval.
_STATE_VALUES = attrgetter(
    *(f.name for f in fields(SubscriptionState) if f.name not in ("valid_from", "valid_to"))
)


def _same(a: SubscriptionState, b: SubscriptionState) -> bool:
    """Equal states apart from their intervals (so two neighbours merge)."""
    return _STATE_VALUES(a) == _STATE_VALUES(b)


def build_history(inp: HistoryInputs, now: int) -> list[SubscriptionState]:
    """The subscription's states as contiguous half-open intervals from its start to now."""
    return _Builder(inp).build(now)


def build_history_until(inp: HistoryInputs, now: int) -> tuple[list[SubscriptionState], int | None]:
    """`build_history(inp, now)`, and until when it stays valid: a build at any later instant may
    differ (None: never, so it need not be rebuilt until its inputs change)."""
    builder = _Builder(inp)
    return builder.build(now), builder.due_at(now)
