"""The rate limiter's weighted fair queue, on a fake clock: waiters are simulated events."""

from __future__ import annotations

import heapq
import itertools
from pathlib import Path

import pytest

from finance_pipeline.stripe_sync.ratelimit import TokenBucket


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _simulate(
    buckets: list[TokenBucket],
    clock: _Clock,
    waiters: list[tuple[str, float]],
    seconds: float,
    late: float = 0.0,
) -> list[tuple[float, str]]:
    """Each waiter (flow, weight) requests again as soon as it got through, on the bucket of
    its position (round robin: several processes on one file); `late` is how late every
    waiter wakes. Returns (time, flow) of every request let through."""
    end = clock.now + seconds
    granted: list[tuple[float, str]] = []
    events: list[tuple[float, int, int]] = []
    for i, (flow, weight) in enumerate(waiters):
        bucket = buckets[i % len(buckets)]
        heapq.heappush(events, (clock.now, i, bucket.enqueue(flow, weight)))
    while events:
        at, i, ticket = heapq.heappop(events)
        if at > end:
            break
        clock.now = at
        flow, weight = waiters[i]
        bucket = buckets[i % len(buckets)]
        wait = bucket.take(ticket)
        if wait == 0:
            granted.append((at, flow))
            ticket = bucket.enqueue(flow, weight)
        heapq.heappush(events, (at + wait + late, i, ticket))
    return granted


def _max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    j = 0
    best = 0
    for i, t in enumerate(times):
        while times[j] <= t - window + 1e-9:
            j += 1
        best = max(best, i - j + 1)
    return best


@pytest.mark.parametrize("late", [0.0, 0.013])
def test_flows_share_the_rate_by_weight_not_by_waiters(late: float) -> None:
    clock = _Clock()
    bucket = TokenBucket(30, burst=1, clock=clock)
    # The heavy flow has few waiters, the light ones many: shares still follow the weights.
    waiters = [("invoices", 50.0)] * 4 + [("charges", 15.0)] * 20 + [("events", 18.0)] * 20
    granted = _simulate([bucket], clock, waiters, 60.0, late=late)
    times = [t for t, _ in granted]
    # Never above the rate: at most rate * window + burst (+ 1 kept for a late waker).
    assert _max_in_window(times, 1.0) <= 32
    assert _max_in_window(times, 0.1) <= 5
    assert len(granted) >= 0.97 * 30 * 60
    shares = {f: sum(1 for _, g in granted if g == f) / len(granted) for f in ("invoices",)}
    assert shares["invoices"] == pytest.approx(50 / 83, abs=0.02)
    # No starvation: every flow gets through in every two-second stretch.
    for flow in ("invoices", "charges", "events"):
        mine = sorted(t for t, g in granted if g == flow)
        assert max(b - a for a, b in itertools.pairwise(mine)) < 2.0


def test_the_queue_spans_buckets_on_one_state_file(tmp_path: Path) -> None:
    # Two opens of the file flock like two processes, the heavy flow alone on the second.
    clock = _Clock()
    path = tmp_path / "pacing" / "acct"
    a, b = (TokenBucket(30, burst=1, clock=clock, state_file=path) for _ in "ab")
    waiters = [("charges", 15.0), ("invoices", 50.0)] * 4 + [("events", 18.0), ("invoices", 50.0)]
    waiters += [("charges", 15.0), ("subscriptions", 5.0)] * 10
    granted = _simulate([a, b], clock, waiters, 30.0)
    assert _max_in_window([t for t, _ in granted], 1.0) <= 32
    count = {f: sum(1 for _, g in granted if g == f) for f in ("invoices", "charges", "events")}
    total = len(granted)
    assert total >= 0.97 * 30 * 30
    assert count["invoices"] / total == pytest.approx(50 / 88, abs=0.02)
    assert count["events"] / total == pytest.approx(18 / 88, abs=0.02)
    for bucket in (a, b):
        bucket.close()


def test_a_lone_flow_takes_the_whole_rate_and_nothing_is_saved_up() -> None:
    clock = _Clock()
    bucket = TokenBucket(30, burst=1, clock=clock)
    granted = _simulate([bucket], clock, [("charges", 15.0)] * 3, 10.0)
    assert len(granted) >= 0.97 * 300
    # A flow that waited nothing for a while does not jump ahead of others by its old credit.
    late = _simulate([bucket], clock, [("charges", 15.0)] * 3 + [("invoices", 15.0)] * 3, 10.0)
    n = sum(1 for _, g in late if g == "invoices")
    assert n / len(late) == pytest.approx(0.5, abs=0.03)


def test_a_dead_waiter_does_not_hold_the_queue() -> None:
    clock = _Clock()
    bucket = TokenBucket(10, burst=1, clock=clock)
    bucket.enqueue("invoices", 50.0)  # its waiter never comes back
    ticket = bucket.enqueue("charges", 1.0)
    assert bucket.take(ticket) == pytest.approx(0.1)  # its turn after the first (1 slot)
    clock.now += 0.1 + 0.1  # the first is late by more than a slot: its slot is not lost
    assert bucket.take(ticket) == 0.0
    clock.now += 11.0  # a waiter this late is gone: its ticket is dropped
    ticket = bucket.enqueue("charges", 1.0)
    assert bucket.take(ticket) == 0.0
    assert bucket._tickets == []


def test_acquire_with_a_flow_returns_the_seconds_waited() -> None:
    clock = _Clock()

    def sleep(seconds: float) -> None:
        clock.now += seconds

    bucket = TokenBucket(100, burst=1, clock=clock, sleep=sleep)
    waits = [round(bucket.acquire(flow="charges", weight=15), 6) for _ in range(3)]
    assert waits == [0.0, 0.01, 0.01]
    assert bucket.waited_seconds == pytest.approx(0.02)
    with pytest.raises(ValueError):
        bucket.enqueue("charges", 0)


def test_a_waiter_dropped_as_dead_queues_again() -> None:
    clock = _Clock()
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        # The first sleep overruns by 20 s (a stopped process); another waiter meanwhile
        # checks the queue and drops this one's ticket.
        clock.now += seconds + (20.0 if len(slept) == 1 else 0.0)
        if len(slept) == 1:
            other.take(other.enqueue("charges", 15))

    bucket = TokenBucket(10, burst=1, clock=clock, sleep=sleep)
    other = bucket
    bucket.take(bucket.enqueue("charges", 15))  # the token is taken: the next one waits
    # (the seconds waited are those it meant to sleep; the overrun is not counted)
    assert bucket.acquire(flow="invoices", weight=50) == pytest.approx(0.1)
    assert bucket._tickets == []
