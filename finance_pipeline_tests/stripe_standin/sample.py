"""A small hand-written fixture with realistic objects of every type the stand-in serves."""

from __future__ import annotations

from typing import Any

from finance_pipeline_dev.pytest_plugin import (
    CONNECTED_ACCOUNT,
    DEFAULT_CLOCK,
    default_fixture,
)
from finance_pipeline_dev.standin import shapes

T0 = DEFAULT_CLOCK - 90 * 86400  # history starts 90 days before "now"
DAY = 86400
MONTH = 30 * DAY


def sample_objects() -> list[dict[str, Any]]:
    """Objects of every type: a 12-item subscription, a 25-line invoice, a 12-line credit note."""
    objs: list[dict[str, Any]] = []
    cus_a = shapes.make_customer(
        "cus_A", created=T0, email="a@example.com", name="Acme", currency="usd"
    )
    cus_b = shapes.make_customer(
        "cus_B", created=T0 + 60, email="b@example.jp", name="Bento KK", currency="jpy"
    )
    cus_c = shapes.make_customer("cus_C", created=T0 + 120, email="c@example.com", name="Churned")
    prod = shapes.make_product("prod_Pro", created=T0, name="Pro plan", default_price="price_pro_m")
    seat = shapes.make_product("prod_Seat", created=T0, name="Seat add-on")
    pro_m = shapes.make_price(
        "price_pro_m", product="prod_Pro", unit_amount=4900, created=T0, lookup_key="pro_monthly"
    )
    pro_y = shapes.make_price(
        "price_pro_y", product="prod_Pro", unit_amount=49000, created=T0 + 1, interval="year"
    )
    pro_jpy = shapes.make_price(
        "price_pro_jpy", product="prod_Pro", unit_amount=5500, currency="jpy", created=T0 + 2
    )
    seat_m = shapes.make_price(
        "price_seat_m", product="prod_Seat", unit_amount=1000, created=T0 + 3
    )
    setup = shapes.make_price(
        "price_setup", product="prod_Seat", unit_amount=25000, created=T0 + 4, interval=None
    )
    co_pct = shapes.make_coupon(
        "co_20pct", created=T0, percent_off=20.0, duration="repeating", duration_in_months=3
    )
    co_amt = shapes.make_coupon(
        "co_10usd", created=T0 + 5, amount_off=1000, currency="usd", duration="once"
    )
    disc = shapes.make_discount(
        "di_A", coupon=co_pct, start=T0 + 10, customer="cus_A", subscription="sub_A"
    )
    objs += [
        cus_a,
        cus_b,
        cus_c,
        prod,
        seat,
        pro_m,
        pro_y,
        pro_jpy,
        seat_m,
        setup,
        co_pct,
        co_amt,
        disc,
    ]

    period = (DEFAULT_CLOCK - 10 * DAY, DEFAULT_CLOCK + 20 * DAY)
    items_a = [
        shapes.make_subscription_item(
            f"si_A{i:02d}",
            subscription="sub_A",
            price=pro_m if i == 0 else seat_m,
            quantity=1 if i == 0 else i,
            created=T0 + 10 + i,
            current_period_start=period[0],
            current_period_end=period[1],
        )
        for i in range(12)
    ]
    sub_a = shapes.make_subscription(
        "sub_A",
        customer="cus_A",
        created=T0 + 10,
        items=items_a,
        discounts=["di_A"],
        latest_invoice="in_A1",
    )
    sub_b = shapes.make_subscription(
        "sub_B",
        customer="cus_B",
        created=T0 + 20,
        status="trialing",
        trial_start=T0 + 20,
        trial_end=T0 + 20 + 14 * DAY,
        items=[
            shapes.make_subscription_item(
                "si_B00",
                subscription="sub_B",
                price=pro_jpy,
                created=T0 + 20,
                current_period_start=T0 + 20,
                current_period_end=T0 + 20 + MONTH,
            )
        ],
    )
    sub_c = shapes.make_subscription(
        "sub_C",
        customer="cus_C",
        created=T0 + 30,
        status="canceled",
        canceled_at=T0 + 40 * DAY,
        ended_at=T0 + 40 * DAY,
        cancellation_reason="cancellation_requested",
        items=[
            shapes.make_subscription_item(
                "si_C00",
                subscription="sub_C",
                price=pro_y,
                created=T0 + 30,
                current_period_start=T0 + 30,
                current_period_end=T0 + 30 + 365 * DAY,
            )
        ],
    )
    objs += [sub_a, sub_b, sub_c]

    lines = []
    for i in range(25):
        item = items_a[i % 12]
        proration = i >= 12
        amount = (item["price"]["unit_amount"] * item["quantity"]) // (2 if proration else 1)
        lines.append(
            shapes.make_invoice_line(
                f"il_A1_{i:02d}",
                invoice="in_A1",
                amount=-amount if proration and i % 2 else amount,
                currency="usd",
                period_start=period[0],
                period_end=period[1],
                price=item["price"],
                quantity=item["quantity"],
                description=f"line {i}",
                subscription="sub_A",
                subscription_item=item["id"],
                proration=proration,
                discount_amounts=[{"amount": 100, "discount": "di_A"}] if i == 0 else (),
            )
        )
    in_a1 = shapes.make_invoice(
        "in_A1",
        customer="cus_A",
        created=DEFAULT_CLOCK - 10 * DAY,
        currency="usd",
        lines=lines,
        subscription="sub_A",
        number="ACME-0001",
        billing_reason="subscription_update",
        customer_email="a@example.com",
        customer_name="Acme",
    )
    in_draft = shapes.make_invoice(
        "in_A2",
        customer="cus_A",
        created=DEFAULT_CLOCK - DAY,
        currency="usd",
        status="draft",
        lines=[
            shapes.make_invoice_line(
                "il_A2_00",
                invoice="in_A2",
                amount=25000,
                currency="usd",
                price=setup,
                period_start=DEFAULT_CLOCK - DAY,
                period_end=DEFAULT_CLOCK - DAY,
                invoice_item="ii_setup",
            )
        ],
    )
    in_b = shapes.make_invoice(
        "in_B1",
        customer="cus_B",
        created=T0 + 20 + 14 * DAY,
        currency="jpy",
        status="open",
        subscription="sub_B",
        number="BENTO-0001",
        due_date=T0 + 20 + 44 * DAY,
        lines=[
            shapes.make_invoice_line(
                "il_B1_00",
                invoice="in_B1",
                amount=5500,
                currency="jpy",
                price=pro_jpy,
                period_start=T0 + 20 + 14 * DAY,
                period_end=T0 + 20 + 14 * DAY + MONTH,
                subscription="sub_B",
                subscription_item="si_B00",
            )
        ],
    )
    in_c = shapes.make_invoice(
        "in_C1",
        customer="cus_C",
        created=T0 + 30,
        currency="usd",
        status="void",
        subscription="sub_C",
        number="CH-0001",
        voided_at=T0 + 35 * DAY,
        billing_reason="subscription_create",
        lines=[
            shapes.make_invoice_line(
                "il_C1_00",
                invoice="in_C1",
                amount=49000,
                currency="usd",
                price=pro_y,
                period_start=T0 + 30,
                period_end=T0 + 30 + 365 * DAY,
                subscription="sub_C",
                subscription_item="si_C00",
            )
        ],
    )
    objs += [in_a1, in_draft, in_b, in_c]

    ch_ok = shapes.make_charge(
        "ch_A1",
        amount=in_a1["amount_paid"],
        currency="usd",
        created=DEFAULT_CLOCK - 10 * DAY + 60,
        customer="cus_A",
        balance_transaction="txn_A1",
        payment_intent="pi_A1",
        amount_refunded=500,
    )
    ch_fail = shapes.make_charge(
        "ch_B1",
        amount=5500,
        currency="jpy",
        created=T0 + 20 + 14 * DAY + 60,
        customer="cus_B",
        status="failed",
        failure_code="card_declined",
        failure_message="Your card was declined.",
    )
    ip = shapes.make_invoice_payment(
        "inpay_A1",
        invoice="in_A1",
        amount=in_a1["amount_paid"],
        currency="usd",
        created=DEFAULT_CLOCK - 10 * DAY + 60,
        payment_intent="pi_A1",
    )
    ip_fail = shapes.make_invoice_payment(
        "inpay_B1",
        invoice="in_B1",
        amount=5500,
        currency="jpy",
        created=T0 + 20 + 14 * DAY + 60,
        charge="ch_B1",
        status="open",
    )
    refund = shapes.make_refund(
        "re_A1",
        charge="ch_A1",
        amount=500,
        currency="usd",
        created=DEFAULT_CLOCK - 5 * DAY,
        reason="requested_by_customer",
        balance_transaction="txn_A1r",
        payment_intent="pi_A1",
    )
    cn_lines = [
        shapes.make_credit_note_line(
            f"cnli_A1_{i:02d}",
            amount=50 if i < 10 else 0,
            invoice_line_item=f"il_A1_{i:02d}",
            description=f"credit {i}",
        )
        for i in range(12)
    ]
    cn = shapes.make_credit_note(
        "cn_A1",
        invoice="in_A1",
        customer="cus_A",
        created=DEFAULT_CLOCK - 5 * DAY,
        currency="usd",
        lines=cn_lines,
        number="ACME-0001-CN-01",
        reason="product_unsatisfactory",
        refunds=[{"refund": "re_A1", "amount_refunded": 500}],
    )
    txn = shapes.make_balance_transaction(
        "txn_A1",
        amount=in_a1["amount_paid"],
        currency="usd",
        created=DEFAULT_CLOCK - 10 * DAY + 60,
        fee=1234,
        source="ch_A1",
    )
    txn_r = shapes.make_balance_transaction(
        "txn_A1r",
        amount=-500,
        currency="usd",
        created=DEFAULT_CLOCK - 5 * DAY,
        type="refund",
        source="re_A1",
    )
    objs += [ch_ok, ch_fail, ip, ip_fail, refund, cn, txn, txn_r]

    objs += [
        shapes.make_event("evt_old", type="customer.created", created=T0, data_object=cus_a),
        shapes.make_event(
            "evt_sub_upd",
            type="customer.subscription.updated",
            created=DEFAULT_CLOCK - 10 * DAY,
            data_object=sub_a,
            previous_attributes={"items": {"data": []}},
        ),
        shapes.make_event(
            "evt_inv_paid",
            type="invoice.paid",
            created=DEFAULT_CLOCK - 10 * DAY + 60,
            data_object=in_a1,
            previous_attributes={"status": "open"},
        ),
        shapes.make_event(
            "evt_cn", type="credit_note.created", created=DEFAULT_CLOCK - 5 * DAY, data_object=cn
        ),
        shapes.make_event(
            "evt_sub_del",
            type="customer.subscription.deleted",
            created=DEFAULT_CLOCK - DAY,
            data_object=sub_c,
        ),
    ]
    return objs


def sample_fixture() -> dict[str, Any]:
    """The test fixture (see pytest_plugin.default_fixture) holding ``sample_objects()``."""
    doc = default_fixture()
    acct = next(a for a in doc["accounts"] if a != CONNECTED_ACCOUNT)
    doc["accounts"][acct]["objects"] = sample_objects()
    doc["accounts"][CONNECTED_ACCOUNT]["objects"] = [
        shapes.make_customer("cus_conn", created=T0, email="conn@example.com")
    ]
    return doc
