"""The simulated objects: versioned Stripe objects (a snapshot per change, rendered on demand)
and the records the subscription simulation works with (invoice lines, items, discounts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..catalog import CouponEntry, PriceEntry

if TYPE_CHECKING:
    from .customers import CustomerSim
    from .subscription import SubSim


class Versioned:
    """An object whose state changes: ``versions`` holds (instant, snapshot) in time order."""

    def __init__(self) -> None:
        self.versions: list[tuple[int, Any]] = []

    def snapshot(self) -> Any:
        """The mutable state to remember for this version."""
        raise NotImplementedError

    def render_snapshot(self, snap: Any) -> dict[str, Any]:
        """The Stripe object as it was in a recorded version."""
        raise NotImplementedError

    def push(self, t: int) -> tuple[int, bool]:
        """Record the current state at ``t``; returns (version index, replaced same-instant one)."""
        snap = self.snapshot()
        if self.versions and self.versions[-1][0] == t:
            self.versions[-1] = (t, snap)
            return len(self.versions) - 1, True
        self.versions.append((t, snap))
        return len(self.versions) - 1, False

    def render(self, idx: int = -1) -> dict[str, Any]:
        """The Stripe object at version ``idx`` (default: the current one)."""
        return self.render_snapshot(self.versions[idx][1])


class Static(Versioned):
    """An immutable object (one version)."""

    def __init__(self, obj: dict[str, Any], t: int) -> None:
        super().__init__()
        self.obj = obj
        self.versions.append((t, None))

    def render_snapshot(self, snap: Any) -> dict[str, Any]:
        """The Stripe object as it was in a recorded version."""
        return self.obj


@dataclass
class LineSpec:
    """An invoice line before discounts and taxes are allocated."""

    amount: int
    description: str
    period: tuple[int, int]
    price: PriceEntry | None
    quantity: int | None
    item_id: str | None
    proration: bool = False
    discountable: bool = True
    invoice_item: str | None = None


class InvoiceSim(Versioned):
    """An invoice: immutable lines and totals, plus its payment/void/credit history."""

    def __init__(self, base: dict[str, Any], customer: CustomerSim, sub: SubSim | None) -> None:
        super().__init__()
        self.base = base
        self.id: str = base["id"]
        self.customer = customer
        self.sub = sub
        self.created: int = base["created"]
        self.currency: str = base["currency"]
        self.total: int = base["total"]
        self.status = "draft"
        self.finalized_at: int | None = None
        self.paid_at: int | None = None
        self.voided_at: int | None = None
        self.uncollectible_at: int | None = None
        self.attempt_count = 0
        self.next_payment_attempt: int | None = None
        self.amount_paid = 0
        self.pre_cn = 0
        self.post_cn = 0
        self.number: str | None = None
        self.first_attempt: int | None = None
        self.paid_charge: ChargeSim | None = None
        self.forced_fail = False
        self.lines: list[dict[str, Any]] = base["lines"]["data"]

    @property
    def amount_due(self) -> int:
        """What is still to be charged: total less pre-payment credit notes."""
        return self.total - self.pre_cn

    def snapshot(self) -> Any:
        """The mutable state to remember for this version."""
        return (
            self.status,
            self.finalized_at,
            self.paid_at,
            self.voided_at,
            self.uncollectible_at,
            self.attempt_count,
            self.next_payment_attempt,
            self.amount_paid,
            self.pre_cn,
            self.post_cn,
        )

    def render_snapshot(self, snap: Any) -> dict[str, Any]:
        """The Stripe object as it was in a recorded version."""
        (status, fin, paid, void, unc, attempts, nxt, amount_paid, pre, post) = snap
        due = self.total - pre
        remaining = 0 if status in ("paid", "void") else due - amount_paid
        obj = dict(self.base)
        obj.update(
            status=status,
            amount_due=due,
            amount_paid=amount_paid,
            amount_remaining=remaining,
            attempt_count=attempts,
            attempted=attempts > 0,
            auto_advance=status in ("draft", "open"),
            effective_at=fin,
            ending_balance=0 if fin is not None else None,
            next_payment_attempt=nxt,
            number=self.number if fin is not None else None,
            post_payment_credit_notes_amount=post,
            pre_payment_credit_notes_amount=pre,
            status_transitions={
                "finalized_at": fin,
                "marked_uncollectible_at": unc,
                "paid_at": paid,
                "voided_at": void,
            },
            webhooks_delivered_at=self.created,
        )
        if status == "draft":
            obj["hosted_invoice_url"] = None
            obj["invoice_pdf"] = None
        return obj


class ChargeSim(Versioned):
    """A charge; ``amount_refunded`` grows with refunds."""

    def __init__(self, base: dict[str, Any]) -> None:
        super().__init__()
        self.base = base
        self.id: str = base["id"]
        self.amount: int = base["amount"]
        self.currency: str = base["currency"]
        self.created: int = base["created"]
        self.amount_refunded = 0

    def snapshot(self) -> Any:
        """The mutable state to remember for this version."""
        return self.amount_refunded

    def render_snapshot(self, snap: Any) -> dict[str, Any]:
        """The Stripe object as it was in a recorded version."""
        obj = dict(self.base)
        obj["amount_refunded"] = snap
        obj["refunded"] = snap >= self.amount > 0
        return obj


@dataclass
class ItemSim:
    """A live subscription item."""

    id: str
    price: PriceEntry
    quantity: int
    created: int
    tax_rates: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class DiscSim:
    """A discount attached to a subscription, with its ground-truth span."""

    id: str
    coupon: CouponEntry
    start: int
    stripe_end: int | None
    gt_start: int
    gt_end: int | None
    obj: dict[str, Any]
    # The fixture object of the discount (its events point at it).
    static: Static | None = None
