"""Replaying a simulated Stripe account through time: full event history plus a time-travelling
stand-in that serves the account, and its events, as of a controllable clock (docs/metrics.md §4
"History")."""

from __future__ import annotations

import bisect
import json
import re
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import stripe
from finance_pipeline_dev.pytest_plugin import TestStandIn, default_fixture
from finance_pipeline_dev.simulator import Simulation, simulate
from finance_pipeline_dev.simulator.model import SubState, SubTimeline
from finance_pipeline_dev.simulator.truth import discounts_at, state_at
from finance_pipeline_dev.standin import serve, shapes
from finance_pipeline_dev.standin.server import RemoteStandIn, StandIn
from finance_pipeline_dev.standin.store import Store

from finance_pipeline.lib.timeutil import day_start_ts

END = date(2025, 6, 30)
DAY = 86_400
RETENTION = 30 * DAY
SEED = 13


@pytest.fixture(scope="module")
def full() -> Simulation:
    return simulate(seed=SEED, customers=40, months=8, end=END, event_history="full")


@pytest.fixture(scope="module")
def retention() -> Simulation:
    return simulate(seed=SEED, customers=40, months=8, end=END)


@pytest.fixture(scope="module")
def served(full: Simulation) -> Iterator[StandIn]:
    standin = StandIn(Store.load(full.fixture))
    standin.start()
    try:
        yield standin
    finally:
        standin.stop()


@pytest.fixture(scope="module")
def client(full: Simulation, served: StandIn) -> Any:
    key = next(iter(full.fixture["accounts"][full.accounts[0]]["keys"]))
    return served.client(key)


def of(sim: Simulation, kind: str) -> list[dict[str, Any]]:
    return [o for o in sim.objects() if o["object"] == kind]


def events_by_object(sim: Simulation) -> dict[str, list[dict[str, Any]]]:
    """Each object's events in fixture order (created, then emission order)."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in of(sim, "event"):
        out[e["data"]["object"]["id"]].append(e)
    for evs in out.values():
        assert [e["created"] for e in evs] == sorted(e["created"] for e in evs)
    return out


def snapshot_at(evs: list[dict[str, Any]], t: int) -> dict[str, Any] | None:
    """``data.object`` of the latest event at or before ``t``."""
    i = bisect.bisect_right([e["created"] for e in evs], t) - 1
    return evs[i]["data"]["object"] if i >= 0 else None


def sub_view(sub: dict[str, Any]) -> tuple[Any, ...]:
    """The MRR-relevant part of a Stripe subscription (a dict as stored or served)."""
    return (
        sub["status"],
        [
            (si["id"], si["price"]["id"], si["quantity"])
            for si in sub["items"]["data"]  # full list in events; served lists are paged
        ],
        sub["pause_collection"] is not None,
        bool(sub["cancel_at_period_end"] or sub["cancel_at"] is not None),
    )


def state_view(st: SubState) -> tuple[Any, ...]:
    """The same view of a timeline state."""
    return (
        st.status,
        [
            (i.item_id, i.price.id, None if i.price.usage_type == "metered" else i.quantity)
            for i in st.items
        ],
        st.paused,
        st.cancel_scheduled,
    )


def live_discounts(tl: SubTimeline, t: int) -> list[str]:
    return sorted(d.id for d in discounts_at(tl, t))


def in_list_order(sim: Simulation, objs: list[dict[str, Any]]) -> list[str]:
    """Ids in Stripe's list order: newest first, later-inserted first on a tie."""
    pos = {o["id"]: i for i, o in enumerate(sim.objects())}
    return [o["id"] for o in sorted(objs, key=lambda o: (-o["created"], -pos[o["id"]]))]


def start_ts(sim: Simulation) -> int:
    return day_start_ts(sim.first_day, sim.tz)


def is_404(call: Callable[[], Any]) -> bool:
    try:
        call()
    except stripe.InvalidRequestError as err:
        return err.http_status == 404
    return False


# --------------------------------------------------------------------------- the simulator


def test_full_history_keeps_every_object_and_adds_events(
    full: Simulation, retention: Simulation, tmp_path: Path
) -> None:
    assert full.fixture["time_travel"] is True and full.event_history == "full"
    assert json.loads(full.write_fixture(tmp_path / "full.json").read_text()) == full.fixture
    assert Store.load(tmp_path / "full.json").time_travel
    with pytest.raises(ValueError, match="event_history"):
        simulate(customers=1, months=1, end=END, event_history="all")  # type: ignore[arg-type]
    assert set(retention.fixture) == {"clock", "accounts"}
    assert retention.event_history == "retention"
    # Same objects: the full history only changes what is reported, not what happens.
    assert [o for o in full.objects() if o["object"] != "event"] == [
        o for o in retention.objects() if o["object"] != "event"
    ]
    assert full.ground_truth.to_json() == retention.ground_truth.to_json()

    # The retained window of the full history holds every retained event (ids aside).
    def body(e: dict[str, Any]) -> str:
        return json.dumps({k: v for k, v in e.items() if k != "id"}, sort_keys=True)

    window = Counter(body(e) for e in of(full, "event") if e["created"] >= full.clock - RETENTION)
    kept = Counter(body(e) for e in of(retention, "event"))
    assert kept and not kept - window
    assert len(of(full, "event")) > 5 * len(of(retention, "event"))


def test_every_object_is_created_by_an_event_and_ends_as_stored(full: Simulation) -> None:
    by_obj = events_by_object(full)
    first_type = {
        "customer": {"customer.created"},
        "product": {"product.created"},
        "price": {"price.created"},
        "coupon": {"coupon.created"},
        "subscription": {"customer.subscription.created"},
        "invoice": {"invoice.created"},
        "charge": {"charge.succeeded", "charge.failed"},
        "refund": {"refund.created"},
        "credit_note": {"credit_note.created"},
        "discount": {"customer.discount.created"},
        "invoice_payment": {"invoice_payment.paid"},
    }
    kinds = Counter()
    for o in full.objects():
        kind = o["object"]
        if kind == "event":
            continue
        evs = by_obj.get(o["id"], [])
        if kind == "balance_transaction" or (kind == "invoice_payment" and o["status"] != "paid"):
            assert not evs, o["id"]  # Stripe has no such events
            continue
        kinds[kind] += 1
        assert evs and evs[0]["type"] in first_type[kind], o["id"]
        assert evs[0]["created"] == o.get("created", o.get("start")), o["id"]
        # The last event shows the object exactly as stored (whole sub-lists on both sides).
        assert evs[-1]["data"]["object"] == o, o["id"]
    assert set(kinds) == set(first_type)
    # Subscriptions, invoices, charges and customers change and say so.
    types = Counter(e["type"] for e in of(full, "event"))
    for t in (
        "customer.updated",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.discount.deleted",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_failed",
        "invoice.voided",
        "invoice.marked_uncollectible",
        "charge.refunded",
    ):
        assert types[t] > 0, t
    # Every type is one Stripe sends (the SDK lists them for webhook endpoints).
    params = Path(stripe.__file__).parent / "params" / "_webhook_endpoint_create_params.py"
    known = set(re.findall(r'"([a-z_]+(?:\.[a-z_]+)+)"', params.read_text(encoding="utf-8")))
    assert set(types) <= known


def test_updates_carry_the_previous_attributes(full: Simulation) -> None:
    checked = 0
    for evs in events_by_object(full).values():
        for e in evs:
            if not e["type"].endswith(".updated"):
                continue
            prev = e["data"]["previous_attributes"]
            assert prev, e["id"]
            before = [x for x in evs if x["created"] < e["created"]][-1]["data"]["object"]
            assert {**e["data"]["object"], **prev} == before, e["id"]
            checked += 1
    assert checked > 100


def test_events_conform_to_the_sdk(full: Simulation) -> None:
    seen: set[str] = set()
    for e in of(full, "event"):
        if e["type"] not in seen:  # one event of each type is enough (shapes are per type)
            seen.add(e["type"])
            assert shapes.conformance_errors(e) == [], e["type"]


def test_every_subscription_change_has_an_event_at_that_instant(full: Simulation) -> None:
    by_obj = events_by_object(full)
    changes = 0
    for sub_id, tl in full.timelines.items():
        evs = [e for e in by_obj[sub_id] if e["type"].startswith("customer.subscription.")]
        instants = {e["created"] for e in evs}
        for st in tl.states:
            assert st.start in instants, (sub_id, st.start)
            # Right at the change and just before the next one, the events show this state.
            for t in (st.start, (st.end or full.clock + 1) - 1):
                snap = snapshot_at(evs, t)
                assert snap is not None and sub_view(snap) == state_view(st), (sub_id, t)
                if st.status in ("active", "past_due", "trialing"):
                    assert sorted(snap["discounts"]) == live_discounts(tl, t), (sub_id, t)
            changes += 1
    assert changes > 2 * len(full.timelines)


# --------------------------------------------------------------------------- the stand-in


def clock_points(sim: Simulation) -> list[int]:
    """Day starts and ends across the history plus instants right at and before changes."""
    first = start_ts(sim)
    points = [first - 1, first + 3 * 3600, sim.clock]
    points += [first + k * 37 * DAY + 12_345 for k in range(1, 7)]
    moves = sorted({st.start for tl in sim.timelines.values() for st in tl.states[1:]})
    for t in moves[:: max(1, len(moves) // 6)]:
        points += [t - 1, t]
    return sorted(p for p in set(points) if p <= sim.clock)


def test_served_subscriptions_follow_the_timeline(
    full: Simulation, served: StandIn, client: Any
) -> None:
    final = {s["id"]: s for s in of(full, "subscription")}
    seen_states: set[str] = set()
    for clock in clock_points(full):
        served.set_clock(clock)
        listed = list(
            client.v1.subscriptions.list(params={"status": "all", "limit": 100}).auto_paging_iter()
        )
        born = [s for s in final.values() if s["created"] <= clock]
        assert [s.id for s in listed] == in_list_order(full, born)
        for sub in listed:
            tl = full.timelines[sub.id]
            st = state_at(tl, clock)
            assert st is not None
            items = sub.items.data
            if sub.items.has_more:
                items = list(
                    client.v1.subscription_items.list(
                        params={"subscription": sub.id, "limit": 100}
                    ).auto_paging_iter()
                )
            view = sub_view(
                {
                    "status": sub.status,
                    "items": {"data": [i.to_dict() for i in items]},
                    "pause_collection": sub.pause_collection,
                    "cancel_at_period_end": sub.cancel_at_period_end,
                    "cancel_at": sub.cancel_at,
                }
            )
            assert view == state_view(st), (sub.id, clock)
            assert sub.trial_end == final[sub.id]["trial_end"]
            if sub.status == "trialing":
                assert sub.trial_end > clock
            if sub.status in ("active", "past_due", "trialing"):
                assert sorted(sub.discounts) == live_discounts(tl, clock), (sub.id, clock)
            seen_states.add(sub.status)
        for s in final.values():
            if s["created"] > clock:
                assert is_404(lambda s=s: client.v1.subscriptions.retrieve(s["id"]))
    assert {"active", "trialing", "canceled"} <= seen_states
    served.set_clock(full.clock)


def test_later_objects_do_not_exist_yet(full: Simulation, served: StandIn, client: Any) -> None:
    clock = start_ts(full) + 120 * DAY + 4321
    served.set_clock(clock)
    for kind, lister, getter in (
        ("customer", client.v1.customers.list, client.v1.customers.retrieve),
        ("invoice", client.v1.invoices.list, client.v1.invoices.retrieve),
        ("charge", client.v1.charges.list, client.v1.charges.retrieve),
        ("price", client.v1.prices.list, client.v1.prices.retrieve),
    ):
        objs = of(full, kind)
        listed = [o.id for o in lister(params={"limit": 100}).auto_paging_iter()]
        assert listed == in_list_order(full, [o for o in objs if o["created"] <= clock]), kind
        later = [o for o in objs if o["created"] > clock]
        if kind != "price":
            assert later, kind
        for o in later[:3]:
            assert is_404(lambda o=o, getter=getter: getter(o["id"])), o["id"]
            assert is_404(lambda o=o, lister=lister: lister(params={"starting_after": o["id"]})), o[
                "id"
            ]
    served.set_clock(clock + 60 * DAY)
    later_customer = next(
        c for c in of(full, "customer") if clock < c["created"] <= clock + 60 * DAY
    )
    assert client.v1.customers.retrieve(later_customer["id"]).id == later_customer["id"]
    served.set_clock(full.clock)


def test_list_semantics_hold_as_of_the_clock(
    full: Simulation, served: StandIn, client: Any
) -> None:
    by_obj = events_by_object(full)
    # Just after a failed payment that was later settled: that invoice is open then.
    failed = next(
        e
        for e in of(full, "event")
        if e["type"] == "invoice.payment_failed"
        and e["created"] > start_ts(full) + 60 * DAY
        and by_obj[e["data"]["object"]["id"]][-1]["data"]["object"]["status"] != "open"
    )
    clock = failed["created"] + 60
    served.set_clock(clock)

    def as_of(o: dict[str, Any]) -> dict[str, Any] | None:
        return snapshot_at(by_obj[o["id"]], clock)

    invoices = [o for o in of(full, "invoice") if o["created"] <= clock]
    order = in_list_order(full, invoices)
    # status filters see the invoice as it was: open then, perhaps paid now
    for status in ("paid", "open", "void", "draft"):
        got = {
            i.id
            for i in client.v1.invoices.list(
                params={"status": status, "limit": 100}
            ).auto_paging_iter()
        }
        want = {o["id"] for o in invoices if as_of(o)["status"] == status}  # type: ignore[index]
        assert got == want, status
    retried = client.v1.invoices.retrieve(failed["data"]["object"]["id"])
    assert retried.status == "open" and retried.attempt_count >= 1
    # created windows, cursors both ways, exact has_more
    lo = clock - 40 * DAY
    got = [
        i.id
        for i in client.v1.invoices.list(
            params={"created": {"gte": lo}, "limit": 100}
        ).auto_paging_iter()
    ]
    assert got == in_list_order(full, [o for o in invoices if o["created"] >= lo])
    pages, after = [], None
    while True:
        params: dict[str, Any] = {"limit": 7}
        if after:
            params["starting_after"] = after
        page = client.v1.invoices.list(params=params)
        pages.append([i.id for i in page.data])
        if not page.has_more:
            break
        after = page.data[-1].id
    forward = [i for p in pages for i in p]
    assert forward == order and all(len(p) == 7 for p in pages[:-1]) and 0 < len(pages[-1]) <= 7
    back = client.v1.invoices.list(params={"ending_before": forward[10], "limit": 4})
    assert [i.id for i in back.data] == forward[6:10] and back.has_more
    # subscriptions: the default list hides what had ended by then
    subs = [s for s in of(full, "subscription") if s["created"] <= clock]
    ended = {
        s["id"]
        for s in subs
        if state_at(full.timelines[s["id"]], clock).status  # type: ignore[union-attr]
        in ("canceled", "incomplete_expired")
    }
    default = {s.id for s in client.v1.subscriptions.list(params={"limit": 100}).auto_paging_iter()}
    assert ended and default == {s["id"] for s in subs} - ended
    canceled = {
        s.id
        for s in client.v1.subscriptions.list(
            params={"status": "canceled", "limit": 100}
        ).auto_paging_iter()
    }
    assert canceled == {
        s["id"]
        for s in subs
        if state_at(full.timelines[s["id"]], clock).status == "canceled"  # type: ignore[union-attr]
    }
    served.set_clock(full.clock)


def test_events_only_within_thirty_days_of_the_clock(
    full: Simulation, served: StandIn, client: Any
) -> None:
    events = of(full, "event")
    for clock in (start_ts(full) + 10 * DAY, start_ts(full) + 100 * DAY + 17, full.clock):
        served.set_clock(clock)
        got = [e.id for e in client.v1.events.list(params={"limit": 100}).auto_paging_iter()]
        want = {e["id"] for e in events if clock - RETENTION <= e["created"] <= clock}
        assert len(got) == len(set(got)) and set(got) == want
        newer = next((e for e in events if e["created"] > clock), None)
        if newer is not None:
            assert is_404(lambda newer=newer: client.v1.events.retrieve(newer["id"]))
        older = next((e for e in events if e["created"] < clock - RETENTION), None)
        if older is not None:
            assert is_404(lambda older=older: client.v1.events.retrieve(older["id"]))
    served.set_clock(full.clock)


def replay(full: Simulation, served: StandIn, client: Any, step_days: int) -> Counter[str]:
    """A sync that reads new subscription events every ``step_days`` simulated days."""
    seen: Counter[str] = Counter()
    checkpoint = start_ts(full) - 1
    clock = checkpoint
    while clock < full.clock:
        clock = min(clock + step_days * DAY, full.clock)
        served.set_clock(clock)
        for e in client.v1.events.list(
            params={"type": "customer.subscription.*", "created": {"gt": checkpoint}, "limit": 100}
        ).auto_paging_iter():
            assert checkpoint < e.created <= clock
            seen[e.id] += 1
        checkpoint = clock
    served.set_clock(full.clock)
    return seen


def test_replay_every_25_days_sees_every_subscription_event_once(
    full: Simulation, served: StandIn, client: Any
) -> None:
    want = {
        e["id"]
        for e in of(full, "event")
        if e["type"].startswith("customer.subscription.") and e["created"] <= full.clock
    }
    seen = replay(full, served, client, 25)
    assert set(seen) == want and set(seen.values()) == {1}
    # A sync that waits longer than the retention window loses events.
    assert want - set(replay(full, served, client, 35))


# --------------------------------------------------------------------------- the store


T0 = 1_700_000_000


def _history_doc() -> dict[str, Any]:
    """A hand-made account history: a renamed customer, a deleted product, a seat change that
    removes an item, a balance transaction that becomes available, and a customer older than
    its first (update) event."""
    doc = default_fixture(clock=T0 + 10 * DAY)
    doc["time_travel"] = True
    price = shapes.make_price(
        "price_A", product="prod_A", unit_amount=1000, currency="usd", created=T0
    )
    item_a = shapes.make_subscription_item(
        "si_A", subscription="sub_A", price=price, created=T0, quantity=1,
        current_period_start=T0, current_period_end=T0 + 30 * DAY,
    )  # fmt: skip
    item_b = {**item_a, "id": "si_B", "quantity": 2}
    sub0 = shapes.make_subscription(
        "sub_A", customer="cus_A", created=T0, items=[item_a, item_b], status="trialing",
        currency="usd",
    )  # fmt: skip
    sub1 = {**sub0, "status": "active", "items": {**sub0["items"], "data": [item_a]}}
    cus0 = shapes.make_customer("cus_A", created=T0, name="Old name")
    cus1 = {**cus0, "name": "New name"}
    old = shapes.make_customer("cus_OLD", created=T0 - 50 * DAY, name="Before")
    old1 = {**old, "name": "After"}
    prod = shapes.make_product("prod_A", name="Pro", created=T0)
    bt = shapes.make_balance_transaction(
        "txn_A", amount=500, currency="usd", created=T0 + DAY, type="charge", source="ch_A",
        fee=45, available_on=T0 + 3 * DAY, status="available",
    )  # fmt: skip

    def ev(n: int, t: int, type_: str, obj: dict[str, Any], **prev: Any) -> dict[str, Any]:
        return shapes.make_event(
            f"evt_{n}", type=type_, created=t, data_object=obj,
            previous_attributes=prev or None,
        )  # fmt: skip

    doc["accounts"][TestStandIn.account_id]["objects"] = [
        cus1,
        old1,
        prod,
        price,
        sub1,
        bt,
        ev(1, T0, "customer.created", cus0),
        ev(2, T0, "product.created", prod),
        ev(3, T0, "customer.subscription.created", sub0),
        ev(4, T0 + 2 * DAY, "customer.updated", cus1, name="Old name"),
        ev(5, T0 + 2 * DAY, "customer.subscription.updated", sub1, status="trialing"),
        ev(6, T0 + 4 * DAY, "customer.updated", old1, name="Before"),
        ev(7, T0 + 5 * DAY, "product.deleted", prod),
    ]
    return doc


def test_store_serves_a_hand_made_history(
    stripe_standin_factory: Callable[..., TestStandIn],
) -> None:
    doc = _history_doc()
    standin = stripe_standin_factory(doc)
    standin.store.delete(standin.account_id, "prod_A")  # deleted without an event of its own
    store, client = standin.store, standin.client()
    assert store.time_travel and store.dump()["time_travel"] is True
    assert Store.load(store.dump()).time_travel

    def at(t: int) -> None:
        standin.set_clock(t)

    at(T0 - DAY)
    assert is_404(lambda: client.v1.customers.retrieve("cus_A"))
    assert client.v1.customers.retrieve("cus_OLD").name == "Before"  # rolled back
    assert [c.id for c in client.v1.customers.list().data] == ["cus_OLD"]
    at(T0 + DAY)
    assert client.v1.customers.retrieve("cus_A").name == "Old name"
    sub = client.v1.subscriptions.retrieve("sub_A")
    assert sub.status == "trialing" and [i.id for i in sub.items.data] == ["si_A", "si_B"]
    assert client.v1.subscription_items.retrieve("si_B").quantity == 2
    assert [s.id for s in client.v1.subscriptions.list(params={"status": "active"}).data] == []
    assert client.v1.balance_transactions.retrieve("txn_A").status == "pending"
    assert client.v1.products.retrieve("prod_A").name == "Pro"
    assert [p.id for p in client.v1.products.list().data] == ["prod_A"]
    at(T0 + 2 * DAY)
    assert client.v1.customers.retrieve("cus_A").name == "New name"
    assert is_404(lambda: client.v1.subscription_items.retrieve("si_B"))
    assert [s.id for s in client.v1.subscriptions.list(params={"status": "active"}).data] == [
        "sub_A"
    ]
    assert [
        i.id for i in client.v1.subscription_items.list(params={"subscription": "sub_A"}).data
    ] == ["si_A"]
    at(T0 + 4 * DAY)
    assert client.v1.customers.retrieve("cus_OLD").name == "After"
    assert client.v1.balance_transactions.retrieve("txn_A").status == "available"
    at(T0 + 5 * DAY)
    assert client.v1.products.retrieve("prod_A").deleted is True
    assert client.v1.products.list().data == []
    assert is_404(lambda: client.v1.products.list(params={"starting_after": "prod_A"}))
    assert [e.id for e in client.v1.events.list(params={"limit": 100}).data] == [
        f"evt_{n}" for n in (7, 6, 5, 4, 3, 2, 1)
    ]
    at(T0 + 3 * DAY)
    assert [e.id for e in client.v1.events.list(params={"limit": 100}).data] == [
        f"evt_{n}" for n in (5, 4, 3, 2, 1)
    ]
    assert store.as_of(standin.account_id, "cus_A", T0 + 3 * DAY)["name"] == "New name"  # type: ignore[index]
    # Switched off, the stand-in serves the stored final state again.
    RemoteStandIn(standin.url).set_time_travel(False)
    assert not store.time_travel
    assert client.v1.customers.retrieve("cus_OLD").name == "After"
    assert client.v1.balance_transactions.retrieve("txn_A").status == "available"
    assert client.v1.subscription_items.retrieve("si_A").id == "si_A"
    assert is_404(lambda: client.v1.subscription_items.retrieve("si_B"))
    assert RemoteStandIn(standin.url).time_travel() is False


def test_changes_while_time_travelling_are_seen(
    stripe_standin_factory: Callable[..., TestStandIn],
) -> None:
    standin = stripe_standin_factory(_history_doc())
    client = standin.client()
    standin.set_clock(T0 + 6 * DAY)
    assert client.v1.customers.retrieve("cus_A").name == "New name"
    standin.update(standin.account_id, "cus_A", {"name": "Newest"}, "customer.updated")
    assert client.v1.customers.retrieve("cus_A").name == "Newest"
    standin.set_clock(T0 + 5 * DAY)
    assert client.v1.customers.retrieve("cus_A").name == "New name"


def test_serve_simulates_a_full_history(tmp_path: Path) -> None:
    stop, started = threading.Event(), threading.Event()
    handles: list[StandIn] = []

    def ready(standin: StandIn) -> None:
        handles.append(standin)
        started.set()

    first = day_start_ts(date.today() - timedelta(days=59))
    argv = ["--port", "0", "--event-history", "full", "--customers", "4", "--months", "2"]
    argv += ["--clock", str(first), "--write-fixture", str(tmp_path / "f.json")]
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(serve.run(argv, stop=stop, ready=ready)))
    thread.start()
    try:
        assert started.wait(30)
        store = handles[0].store
        assert store.time_travel and store.now() == first
        acct = store.account_ids()[0]
        key = next(iter(store.keys()))
        client = handles[0].client(key)
        born = [c["id"] for c in store.objects(acct, "customer") if c["created"] <= first]
        assert sorted(c.id for c in client.v1.customers.list().data) == sorted(born)
        assert json.loads((tmp_path / "f.json").read_text())["time_travel"] is True
    finally:
        stop.set()
        thread.join(10)
    assert result == [0]
