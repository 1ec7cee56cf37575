"""MRR movements by plan (docs/metrics.md §5, "Movements by plan"): each customer movement split
across the plans whose MRR for that customer changed that day, and each plan's roll-forward.

Pure functions on exact `Fraction` micro-units. Amounts here are signed like the roll-forward (a
plan's contribution to MRR: contraction and churn negative), unlike the positive stored movements.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from fractions import Fraction

from finance_pipeline.lib.mrr_timeline import MOVEMENT_SIGNS

__all__ = [
    "CUSTOMER_KINDS",
    "TRANSFER_KIND",
    "UNATTRIBUTED",
    "ChangeRow",
    "CustomerDay",
    "PlanBalance",
    "PlanRollForward",
    "StoredMovement",
    "customer_days",
    "movements_by_plan",
    "plan_changes",
    "plan_roll_forwards",
    "split_customer_day",
]

#: The row of what no plan accounts for: MRR and movements without plan information.
UNATTRIBUTED = "(unattributed)"
#: The movements a customer has on a day (fx is per plan the remainder of its roll-forward).
CUSTOMER_KINDS = tuple(k for k in MOVEMENT_SIGNS if k != "fx")
#: Where a switch between plans without a customer movement (equal MRR) is shown: a zero expansion.
TRANSFER_KIND = "expansion"

ONE_DAY = timedelta(days=1)
RateLookup = Callable[[str, date], Fraction | None]
# currency -> plan -> the customer's native MRR in that plan (mart.mrr_changes.by_plan_json).
PlanMap = Mapping[str, Mapping[str, Fraction]]
ByPlan = dict[str, dict[str, Fraction]]  # plan -> kind -> signed exact amount


@dataclass(frozen=True)
class CustomerDay:
    """One customer on one day: its movements as stored (kind -> positive amount, reporting
    micros; fx rows are ignored) and its MRR by plan at the end of the day before and of the day."""

    customer_id: str
    day: date
    movements: Mapping[str, Fraction]
    before: PlanMap
    after: PlanMap


@dataclass(frozen=True)
class PlanBalance:
    """One plan's exact MRR on the day before the range and on its last day (reporting micros)."""

    plan_id: str
    opening: Fraction
    closing: Fraction


@dataclass(frozen=True)
class PlanRollForward:
    """A plan's roll-forward of a range: opening + signed movements (fx included) = closing."""

    plan_id: str
    opening: Fraction
    closing: Fraction
    movements: dict[str, Fraction] = field(default_factory=dict)

    def holds(self) -> bool:
        """opening + movements = closing, exactly."""
        return self.opening + sum(self.movements.values(), Fraction(0)) == self.closing


@dataclass(frozen=True)
class ChangeRow:
    """A customer's MRR by plan in one currency from `day` until its next row (mart.mrr_changes)."""

    customer_id: str
    currency: str
    day: date
    by_plan: Mapping[str, Fraction]


@dataclass(frozen=True)
class StoredMovement:
    """A customer movement as stored in mart.mrr_movements (amount positive, reporting micros)."""

    customer_id: str
    day: date
    kind: str
    amount: Fraction


def customer_days(
    movements: Iterable[StoredMovement], changes: Iterable[ChangeRow], start: date, end: date
) -> list[CustomerDay]:
    """Every customer-day of start..end with a movement or a change row, with the customer's plans
    at the end of the day before and of the day (each currency's latest row up to then; `changes`
    must hold each customer's rows from before `start`). Sorted by customer and day."""
    kinds: dict[tuple[str, date], dict[str, Fraction]] = {}
    for m in movements:
        if start <= m.day <= end and m.kind != "fx":
            cell = kinds.setdefault((m.customer_id, m.day), {})
            cell[m.kind] = cell.get(m.kind, Fraction(0)) + Fraction(m.amount)
    streams: dict[str, dict[str, list[ChangeRow]]] = defaultdict(lambda: defaultdict(list))
    for row in changes:
        streams[row.customer_id][row.currency].append(row)
        if start <= row.day <= end:
            kinds.setdefault((row.customer_id, row.day), {})
    index: dict[str, dict[str, tuple[list[date], list[ChangeRow]]]] = {}
    for customer, per_currency in streams.items():
        for cur, rows in per_currency.items():
            rows.sort(key=lambda r: r.day)
            index.setdefault(customer, {})[cur] = ([r.day for r in rows], rows)

    def plans_on(customer: str, day: date) -> dict[str, Mapping[str, Fraction]]:
        out: dict[str, Mapping[str, Fraction]] = {}
        for cur, (days, rows) in index.get(customer, {}).items():
            at = bisect.bisect_right(days, day) - 1
            if at >= 0:
                out[cur] = rows[at].by_plan
        return out

    return [
        CustomerDay(c, d, moves, plans_on(c, d - ONE_DAY), plans_on(c, d))
        for (c, d), moves in sorted(kinds.items())
    ]


def plan_changes(cd: CustomerDay, rate: RateLookup) -> dict[str, Fraction]:
    """Each plan's signed change in the customer's MRR on the day, converted at the day's rate as
    the customer's movement is (§5); a currency without a rate that day is left out, as there."""
    out: dict[str, Fraction] = {}
    for cur in sorted(set(cd.before) | set(cd.after)):
        r = rate(cur, cd.day)
        if r is None:
            continue
        before, after = cd.before.get(cur, {}), cd.after.get(cur, {})
        for plan in set(before) | set(after):
            delta = (Fraction(after.get(plan, 0)) - Fraction(before.get(plan, 0))) * r
            if delta:
                out[plan] = out.get(plan, Fraction(0)) + delta
    return {p: v for p, v in out.items() if v}


def split_customer_day(cd: CustomerDay, rate: RateLookup) -> ByPlan:
    """The customer's movements of the day by plan, signed, keeping the customer's kind.

    Each movement is split in proportion to the plans' changes (`plan_changes`); the engine's plans
    add up to the customer's MRR, so each plan's share is exactly its change. Without plan changes
    to split by (no plan information, changes netting to zero) the changes are shown in the
    movement's column and the movement itself goes to UNATTRIBUTED; plan changes without a
    movement (a switch between plans of equal MRR) show in TRANSFER_KIND and add up to zero.
    Per kind, the shares add up to the customer's signed movement exactly.
    """
    weights = plan_changes(cd, rate)
    total = sum(weights.values(), Fraction(0))
    moves = {
        k: MOVEMENT_SIGNS[k] * Fraction(cd.movements[k])
        for k in CUSTOMER_KINDS
        if k in cd.movements
    }
    if not moves:
        if not weights:
            return {}
        moves = {TRANSFER_KIND: Fraction(0)}
    out: ByPlan = defaultdict(dict)

    def add(plan: str, kind: str, amount: Fraction) -> None:
        if amount:
            out[plan][kind] = out[plan].get(kind, Fraction(0)) + amount

    if total and any(moves.values()):
        for kind, signed in moves.items():
            for plan, w in weights.items():
                add(plan, kind, signed * w / total)
    else:
        first = next(iter(moves))
        for plan, w in weights.items():
            add(plan, first, w)
        for kind, signed in moves.items():
            add(UNATTRIBUTED, kind, signed - (total if kind == first else 0))
    return dict(out)


def movements_by_plan(days: Iterable[CustomerDay], rate: RateLookup) -> ByPlan:
    """The customer movements of many customer-days by plan and kind, signed, exact (the per-kind
    sums over plans, UNATTRIBUTED included, equal the customers' signed movements)."""
    out: ByPlan = defaultdict(dict)
    for cd in days:
        for plan, kinds in split_customer_day(cd, rate).items():
            for kind, amount in kinds.items():
                out[plan][kind] = out[plan].get(kind, Fraction(0)) + amount
    return {p: {k: v for k, v in kinds.items() if v} for p, kinds in out.items()}


def _roll_forward(
    plan: str, opening: Fraction, closing: Fraction, moves: Mapping[str, Fraction]
) -> PlanRollForward:
    """A plan's row: its customer movements, and fx the remainder closing - opening - movements."""
    signed = {k: Fraction(moves.get(k, 0)) for k in CUSTOMER_KINDS}
    signed["fx"] = closing - opening - sum(signed.values(), Fraction(0))
    return PlanRollForward(plan, opening, closing, {k: signed[k] for k in MOVEMENT_SIGNS})


def plan_roll_forwards(
    balances: Sequence[PlanBalance],
    by_plan: Mapping[str, Mapping[str, Fraction]],
    company: tuple[Fraction, Mapping[str, Fraction], Fraction] | None = None,
) -> list[PlanRollForward]:
    """One roll-forward per plan with a balance or a movement, sorted by plan id; fx is the
    remainder, so each row holds exactly.

    With `company` (opening, signed movements with fx, closing: the company row), an UNATTRIBUTED
    row last holds company - the plans in every column when that is not all zero, so each column
    of the rows adds up exactly to the company's (with the engine's marts it is all zero). Without
    it (a plan filter) UNATTRIBUTED movements are left out.
    """
    opening = {b.plan_id: Fraction(b.opening) for b in balances}
    closing = {b.plan_id: Fraction(b.closing) for b in balances}
    named = sorted(
        ({b.plan_id for b in balances} | {p for p, m in by_plan.items() if any(m.values())})
        - {UNATTRIBUTED}
    )
    rows = [
        _roll_forward(
            p, opening.get(p, Fraction(0)), closing.get(p, Fraction(0)), by_plan.get(p, {})
        )
        for p in named
    ]
    if company is None:
        return rows
    c_open, c_moves, c_close = company
    rest_open = Fraction(c_open) - sum((r.opening for r in rows), Fraction(0))
    rest_close = Fraction(c_close) - sum((r.closing for r in rows), Fraction(0))
    rest_moves = {
        k: Fraction(c_moves.get(k, 0)) - sum((r.movements[k] for r in rows), Fraction(0))
        for k in CUSTOMER_KINDS
    }
    rest = _roll_forward(UNATTRIBUTED, rest_open, rest_close, rest_moves)
    if rest.opening or rest.closing or any(rest.movements.values()):
        rows.append(rest)
    return rows
