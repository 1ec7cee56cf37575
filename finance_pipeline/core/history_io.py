"""Reading raw Stripe rows into history inputs, and (de)serializing core.subscription_history rows."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any

from finance_pipeline.lib.mrr import (
    DiscountSpec,
    PriceSpec,
    SubscriptionItem,
    SubscriptionState,
    TierSpec,
    TransformQuantity,
)
from finance_pipeline.lib.subscription_history import HistoryInputs
from finance_pipeline.warehouse.db import Warehouse


def _discount_id(value: Any) -> str | None:
    return value.get("id") if isinstance(value, Mapping) else value


def load_history_inputs(
    wh: Warehouse, workspace_id: str, subscription_ids: Collection[str] | None = None
) -> list[HistoryInputs]:
    """Everything synced about each subscription of a workspace, grouped per subscription.

    With `subscription_ids`, only those subscriptions; each one's inputs are then exactly those a
    whole-workspace read gives it provided the set holds every subscription of their customers
    (a discount or an invoice line never crosses customers). Rows are put in id order whatever
    the read, so both reads hand the history builder the same sequences.
    """
    q = {"w": workspace_id}
    subs = sorted(
        (
            r["payload"]
            for r in wh.rows_in(
                "SELECT payload FROM raw.stripe_subscriptions WHERE workspace_id = :w",
                "id",
                subscription_ids,
                **q,
            )
        ),
        key=lambda p: p["id"],
    )
    items: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in sorted(
        wh.rows_in(
            "SELECT id, subscription, payload FROM raw.stripe_subscription_items"
            " WHERE workspace_id = :w",
            "subscription",
            subscription_ids,
            **q,
        ),
        key=lambda r: r["id"],
    ):
        items[r["subscription"]].append(r["payload"])
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    discounts: dict[str, dict[str, Any]] = {}
    # Every discount event (they are few): the last one of a discount gives its object.
    event_rows = wh.rows(
        "SELECT id, created, object_type, object_id, payload FROM raw.stripe_events"
        " WHERE workspace_id = :w AND object_type = 'discount'",
        **q,
    ) + wh.rows_in(
        "SELECT id, created, object_type, object_id, payload FROM raw.stripe_events"
        " WHERE workspace_id = :w AND object_type = 'subscription'",
        "object_id",
        subscription_ids,
        **q,
    )
    for r in sorted(event_rows, key=lambda r: (int(r["created"]), r["id"])):
        ev = r["payload"]
        if r["object_type"] == "subscription":
            events[r["object_id"]].append(ev)
        else:
            discounts[r["object_id"]] = ev["data"]["object"]
    lines: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in sorted(
        wh.rows_in(
            "SELECT id, subscription, subscription_item, price, quantity, amount, period_start,"
            f" period_end, proration, {wh.json_field('payload', 'discount_amounts')} AS discount_amounts_json"
            " FROM raw.stripe_invoice_lines WHERE workspace_id = :w AND subscription IS NOT NULL",
            "subscription",
            subscription_ids,
            **q,
        ),
        key=lambda r: r["id"],
    ):
        row = dict(r)
        del row["id"]
        amounts = row.pop("discount_amounts_json")
        row["discount_ids"] = [_discount_id(d.get("discount")) for d in amounts or ()]
        lines[r["subscription"]].append(row)
    prices = {
        r["id"]: r["payload"]
        for r in wh.rows("SELECT id, payload FROM raw.stripe_prices WHERE workspace_id = :w", **q)
    }
    invoices = {
        r["id"]: dict(r)
        for r in sorted(
            wh.rows_in(
                "SELECT id, subscription, status, billing_reason, paid_at,"
                f" {wh.json_field('payload', 'discounts')} AS discounts_json FROM raw.stripe_invoices"
                " WHERE workspace_id = :w AND subscription IS NOT NULL",
                "subscription",
                subscription_ids,
                **q,
            ),
            key=lambda r: r["id"],
        )
    }
    for inv in invoices.values():
        for d in inv.pop("discounts_json") or ():
            if isinstance(d, Mapping):
                discounts[d["id"]] = dict(d)
    for sub in subs:
        for d in sub.get("discounts") or ():
            if isinstance(d, Mapping):
                discounts[d["id"]] = dict(d)
    attempts: dict[str, list[tuple[str, int, bool]]] = defaultdict(list)
    for r in wh.rows_in(
        "SELECT p.invoice, c.created, c.status FROM raw.stripe_invoice_payments p"
        " JOIN raw.stripe_charges c ON c.workspace_id = p.workspace_id AND c.id = p.charge"
        " WHERE p.workspace_id = :w",
        "p.invoice",
        None if subscription_ids is None else list(invoices),
        **q,
    ):
        inv = invoices.get(r["invoice"])
        if inv is not None:
            attempts[inv["subscription"]].append(
                (r["invoice"], int(r["created"]), r["status"] == "succeeded")
            )
    by_sub_invoices: dict[str, dict[str, Any]] = defaultdict(dict)
    for inv_id, inv in invoices.items():
        by_sub_invoices[inv["subscription"]][inv_id] = inv
    # Discounts are grouped per subscription, in their workspace order: the history builder scans
    # every discount it is given for each interval, and handing it the whole workspace's made the
    # rebuild grow with subscriptions x discounts.
    owned: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for did, d in discounts.items():
        owner = _ref_id(d.get("subscription"))
        if owner is not None:
            owned[owner][did] = d
    return [
        HistoryInputs(
            workspace_id=workspace_id,
            subscription=sub,
            items=items.get(sub["id"], []),
            events=events.get(sub["id"], []),
            lines=lines.get(sub["id"], []),
            prices=prices,
            discounts=_discounts_for(sub, events.get(sub["id"], ()), owned, discounts),
            attempts=attempts.get(sub["id"], []),
            invoices=by_sub_invoices.get(sub["id"], {}),
        )
        for sub in subs
    ]


def customer_batches(
    wh: Warehouse,
    workspace_id: str,
    subscription_ids: Collection[str] | None,
    customers_per_batch: int,
) -> Iterator[list[str]]:
    """The workspace's subscriptions (or those of `subscription_ids`) in batches of whole
    customers: each batch holds every listed subscription of its customers, as
    `load_history_inputs` needs, so a build's memory is bounded by a batch of customers."""
    by_customer: dict[str, list[str]] = defaultdict(list)
    for r in wh.rows_in(
        "SELECT id, customer FROM raw.stripe_subscriptions WHERE workspace_id = :w",
        "id",
        subscription_ids,
        w=workspace_id,
    ):
        by_customer[r["customer"] or ""].append(r["id"])
    batch: list[str] = []
    customers = 0
    for customer in sorted(by_customer):
        batch += by_customer[customer]
        customers += 1
        if customers == customers_per_batch:
            yield sorted(batch)
            batch, customers = [], 0
    if batch:
        yield sorted(batch)


def _ref_id(value: Any) -> str | None:
    """An expandable reference's id (as `subscription_history` reads it)."""
    if value is None:
        return None
    return value.get("id") if isinstance(value, Mapping) else str(value)


def _discounts_for(
    sub: Mapping[str, Any],
    events: Iterable[Mapping[str, Any]],
    owned: Mapping[str, Mapping[str, dict[str, Any]]],
    every: Mapping[str, dict[str, Any]],
) -> dict[str, dict[str, Any]]:
    """The discounts the history of one subscription can use: those attached to it, plus any
    other one its current payload or events name by id (a customer-level discount)."""
    out = dict(owned.get(sub["id"], {}))
    named = [sub.get("discounts")]
    for ev in events:
        data = ev.get("data") or {}
        named.append((data.get("object") or {}).get("discounts"))
        named.append((data.get("previous_attributes") or {}).get("discounts"))
    for refs in named:
        for ref in refs or ():
            if isinstance(ref, Mapping):
                continue  # expanded: used as it is, never looked up
            key = str(ref)
            if key not in out and key in every:
                out[key] = every[key]
    return out


def _price_json(p: PriceSpec) -> dict[str, Any]:
    return {
        "currency": p.currency,
        "unit_amount_decimal": p.unit_amount_decimal,
        "billing_scheme": p.billing_scheme,
        "tiers_mode": p.tiers_mode,
        "tiers": [[t.up_to, t.unit_amount_decimal, t.flat_amount_decimal] for t in p.tiers],
        "transform_quantity": list(p.transform_quantity) if p.transform_quantity else None,
        "interval": p.interval,
        "interval_count": p.interval_count,
        "usage_type": p.usage_type,
        "tax_behavior": p.tax_behavior,
        "inclusive_tax_rate_percent": None
        if p.inclusive_tax_rate_percent is None
        else str(p.inclusive_tax_rate_percent),
        "price_id": p.price_id,
        "product_id": p.product_id,
    }


def _price_from(d: Mapping[str, Any]) -> PriceSpec:
    return PriceSpec(
        currency=d["currency"],
        unit_amount_decimal=d["unit_amount_decimal"],
        billing_scheme=d["billing_scheme"],
        tiers_mode=d["tiers_mode"],
        tiers=tuple(TierSpec(*t) for t in d["tiers"]),
        transform_quantity=TransformQuantity(*d["transform_quantity"])
        if d["transform_quantity"]
        else None,
        interval=d["interval"],
        interval_count=d["interval_count"],
        usage_type=d["usage_type"],
        tax_behavior=d["tax_behavior"],
        inclusive_tax_rate_percent=None
        if d["inclusive_tax_rate_percent"] is None
        else Decimal(d["inclusive_tax_rate_percent"]),
        price_id=d["price_id"],
        product_id=d["product_id"],
    )


def _discounts_json(ds: Iterable[DiscountSpec]) -> list[dict[str, Any]]:
    return [
        {
            "coupon_id": d.coupon_id,
            "percent_off": None if d.percent_off is None else str(d.percent_off),
            "amount_off": d.amount_off,
            "currency": d.currency,
            "duration": d.duration,
            "start": d.start,
            "end": d.end,
        }
        for d in ds
    ]


def history_rows(states: Iterable[SubscriptionState]) -> list[dict[str, Any]]:
    """core.subscription_history rows: one per item per interval ('' item when none)."""
    out = []
    for st in states:
        base = {
            "workspace_id": st.workspace_id,
            "subscription_id": st.subscription_id,
            "valid_from": st.valid_from,
            "valid_to": st.valid_to,
            "customer_id": st.customer_id,
            "currency": st.currency,
            "status": st.status,
            "trial_end": st.trial_end,
            "pause_collection": st.pause_collection,
            "cancel_scheduled": st.cancel_scheduled,
            "past_due_since": st.past_due_since,
            "started_at": st.started_at,
            "ended_at": st.ended_at,
            "cancellation_reason": st.cancellation_reason,
            "discounts_json": _discounts_json(st.discounts),
        }
        if not st.items:
            out.append(
                {
                    **base,
                    "item_id": "",
                    "price_id": None,
                    "product_id": None,
                    "quantity": None,
                    "price_json": None,
                }
            )
        for it in st.items:
            out.append(
                {
                    **base,
                    "item_id": it.item_id,
                    "price_id": it.price.price_id,
                    "product_id": it.price.product_id,
                    "quantity": it.quantity,
                    "price_json": _price_json(it.price),
                }
            )
    return out


# core.subscription_history read with its two JSON documents as text: a state's price and its
# discounts repeat across its items and intervals (a few hundred prices per workspace), so each
# distinct text is parsed once per read instead of decoded row by row.
HISTORY_SELECT = (
    "SELECT workspace_id, subscription_id, valid_from, item_id, valid_to, customer_id, currency,"
    " status, price_id, product_id, quantity, trial_end, pause_collection, cancel_scheduled,"
    " past_due_since, started_at, ended_at, cancellation_reason,"
    " CAST(price_json AS TEXT) AS price_text, CAST(discounts_json AS TEXT) AS discounts_text"
    " FROM core.subscription_history"
)


def _discounts_from(docs: Iterable[Mapping[str, Any]]) -> tuple[DiscountSpec, ...]:
    return tuple(
        DiscountSpec(
            coupon_id=d["coupon_id"],
            percent_off=None if d["percent_off"] is None else Decimal(d["percent_off"]),
            amount_off=d["amount_off"],
            currency=d["currency"],
            duration=d["duration"],
            start=d["start"],
            end=d["end"],
        )
        for d in docs
    )


def states_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[SubscriptionState]:
    """Reassemble SubscriptionState intervals from core.subscription_history rows (as stored, with
    `price_json`/`discounts_json` documents, or read by HISTORY_SELECT with their texts)."""
    grouped: dict[tuple[str, str, int], list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        grouped[(r["workspace_id"], r["subscription_id"], int(r["valid_from"]))].append(r)
    # Specs are frozen: one object per distinct document serves every row that stores it.
    prices: dict[str, PriceSpec] = {}
    discounts: dict[str, tuple[DiscountSpec, ...]] = {}

    def price_of(r: Mapping[str, Any]) -> PriceSpec:
        text = r.get("price_text")
        if text is None:
            return _price_from(r["price_json"])
        spec = prices.get(text)
        if spec is None:
            spec = prices[text] = _price_from(json.loads(text))
        return spec

    def discounts_of(r: Mapping[str, Any]) -> tuple[DiscountSpec, ...]:
        text = r.get("discounts_text")
        if text is None:
            return _discounts_from(r["discounts_json"])
        specs = discounts.get(text)
        if specs is None:
            specs = discounts[text] = _discounts_from(json.loads(text))
        return specs

    out = []
    for (_ws, _sub, _vf), rs in sorted(grouped.items()):
        r0 = rs[0]
        items = []
        for r in sorted(rs, key=lambda x: x["item_id"]):
            if not r["item_id"]:
                continue
            items.append(SubscriptionItem(r["item_id"], price_of(r), int(r["quantity"])))
        out.append(
            SubscriptionState(
                workspace_id=r0["workspace_id"],
                subscription_id=r0["subscription_id"],
                customer_id=r0["customer_id"],
                currency=r0["currency"],
                valid_from=int(r0["valid_from"]),
                valid_to=None if r0["valid_to"] is None else int(r0["valid_to"]),
                status=r0["status"],
                items=tuple(items),
                trial_end=r0["trial_end"],
                pause_collection=bool(r0["pause_collection"]),
                cancel_scheduled=bool(r0["cancel_scheduled"]),
                discounts=discounts_of(r0),
                past_due_since=r0["past_due_since"],
                started_at=r0["started_at"],
                ended_at=r0["ended_at"],
                cancellation_reason=r0["cancellation_reason"],
            )
        )
    return out
