"""A hand-built Stripe dataset for sync tests: enough objects to page, canceled subscriptions, a
subscription with 12 items, an invoice with 25 lines and a credit note with 12 lines."""

from __future__ import annotations

from typing import Any

from finance_pipeline_dev.standin import shapes

T0 = 1_735_689_600  # 2025-01-01T00:00:00Z, months before the stand-in clock
DAY = 86_400


def build(n_customers: int = 230, *, t0: int = T0) -> list[dict[str, Any]]:
    """Objects for one account, in creation order."""
    objs: list[dict[str, Any]] = []
    product = shapes.make_product("prod_basic", created=t0, name="Basic")
    seat = shapes.make_price("price_seat", product="prod_basic", unit_amount=1500, created=t0)
    yearly = shapes.make_price(
        "price_year", product="prod_basic", unit_amount=120000, created=t0, interval="year"
    )
    objs += [product, seat, yearly]
    for n in range(n_customers):
        created = t0 + DAY + n * 600
        cus = f"cus_{n:05d}"
        objs.append(
            shapes.make_customer(
                cus, created=created, email=f"c{n}@example.test", name=f"Customer {n}"
            )
        )
        sub = f"sub_{n:05d}"
        n_items = 12 if n == 7 else 1
        items = [
            shapes.make_subscription_item(
                f"si_{n:05d}_{i:02d}",
                subscription=sub,
                price=seat if i else yearly,
                created=created,
                current_period_start=created,
                current_period_end=created + 30 * DAY,
                quantity=1 + i,
            )
            for i in range(n_items)
        ]
        canceled = n % 9 == 0
        objs.append(
            shapes.make_subscription(
                sub,
                customer=cus,
                created=created,
                items=items,
                status="canceled" if canceled else "active",
                canceled_at=created + 40 * DAY if canceled else None,
                ended_at=created + 40 * DAY if canceled else None,
            )
        )
        n_lines = 25 if n == 11 else 2
        inv = f"in_{n:05d}"
        lines = [
            shapes.make_invoice_line(
                f"il_{n:05d}_{i:02d}",
                invoice=inv,
                amount=1500,
                currency="usd",
                period_start=created,
                period_end=created + 30 * DAY,
                price=seat,
                subscription=sub,
                subscription_item=items[0]["id"],
            )
            for i in range(n_lines)
        ]
        objs.append(
            shapes.make_invoice(
                inv,
                customer=cus,
                created=created + 60,
                currency="usd",
                lines=lines,
                subscription=sub,
                billing_reason="subscription_create",
                paid_at=created + 120,
            )
        )
        ch = f"ch_{n:05d}"
        total = 1500 * n_lines
        objs.append(
            shapes.make_charge(
                ch,
                amount=total,
                currency="usd",
                created=created + 120,
                customer=cus,
                status="failed" if n % 17 == 0 else "succeeded",
                failure_code="card_declined" if n % 17 == 0 else None,
            )
        )
        objs.append(
            shapes.make_invoice_payment(
                f"inpay_{n:05d}",
                invoice=inv,
                amount=total,
                currency="usd",
                created=created + 120,
                charge=ch,
                paid_at=created + 120,
            )
        )
        if n % 10 == 3:
            objs.append(
                shapes.make_refund(
                    f"re_{n:05d}", charge=ch, amount=500, currency="usd", created=created + 5 * DAY
                )
            )
        if n == 11:
            cn_lines = [
                shapes.make_credit_note_line(
                    f"cnli_{i:02d}", amount=100, invoice_line_item=lines[i]["id"]
                )
                for i in range(12)
            ]
            objs.append(
                shapes.make_credit_note(
                    "cn_00011",
                    invoice=inv,
                    customer=cus,
                    created=created + 3 * DAY,
                    currency="usd",
                    lines=cn_lines,
                    number="CN-0011",
                )
            )
    return objs
