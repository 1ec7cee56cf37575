"""Alert episodes (docs/metrics.md §14): consecutive active days of one alert form an episode; the
episodes rebuilt window by window equal those of one run over everything, whatever the split and
order of the runs; webhook events are sent per episode, not per day."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finance_pipeline.lib.alerts import (
    Alert,
    Episode,
    EpisodeKey,
    alert_episodes,
    alert_id,
    episode_events,
    episode_id,
    event_id,
    refresh_episodes,
)

WS = "ws_1"
D0 = date(2026, 1, 1)
RUNWAY = ("runway_low", "")
KEYS = [RUNWAY, ("margin_threshold_crossed", "cus_a"), ("margin_threshold_crossed", "cus_b")]


def day(i: int) -> date:
    return D0 + timedelta(days=i)


def alert(i: int, severity: str = "warn", key: tuple[str, str] = RUNWAY) -> Alert:
    kind, subject = key
    d = day(i)
    return Alert(alert_id(WS, d, kind, subject), WS, d, kind, severity, f"m{i}", {"i": i}, subject)


def evaluated(lo: int, hi: int) -> set[date]:
    return {day(i) for i in range(lo, hi + 1)}


def test_consecutive_days_form_one_episode_with_peak_and_current_severity() -> None:
    rows = [alert(0), alert(1, "critical"), alert(2), alert(5), alert(6)]
    first, second = alert_episodes(rows, evaluated(0, 9))
    assert (first.opened_on, first.last_active_on, first.resolved_on) == (day(0), day(2), day(3))
    assert (first.peak_severity, first.severity, first.status) == ("critical", "warn", "resolved")
    assert first.id == episode_id(WS, "runway_low", "", day(0))
    assert (first.first.message, first.last.message) == ("m0", "m2")
    assert (second.opened_on, second.last_active_on, second.resolved_on) == (day(5), day(6), day(7))
    # The day after the last active one not evaluated yet: the episode is still running.
    [running] = alert_episodes([alert(5), alert(6)], evaluated(0, 6))
    assert (running.resolved_on, running.status) == (None, "active")
    [new] = alert_episodes([alert(6)], evaluated(0, 6))
    assert new.status == "opened"
    # Different subjects are different episodes on the same days.
    eps = alert_episodes([alert(0, key=KEYS[1]), alert(0, key=KEYS[2])], evaluated(0, 1))
    assert [e.subject for e in eps] == ["cus_a", "cus_b"]
    with pytest.raises(ValueError, match="two runway_low alerts"):
        alert_episodes([alert(0), alert(0)], evaluated(0, 0))


Truth = dict[tuple[tuple[str, str], int], str]
SEVERITY = st.sampled_from([None, None, "warn", "critical"])


def _rows(truth: Truth, lo: int, hi: int) -> list[Alert]:
    return [alert(i, sev, key) for (key, i), sev in truth.items() if lo <= i <= hi]


def _run_windows(
    windows: list[tuple[int, int]], truths: list[Truth]
) -> tuple[list[Episode], dict, set[date]]:
    """Replay runs like the asset: replace the window's rows, record the evaluated days, rebuild
    the episodes touching the window from the stored rows, splice them into the stored set."""
    rows: dict[tuple[EpisodeKey, date], Alert] = {}
    done: set[date] = set()
    stored: dict[str, Episode] = {}
    for (a, b), truth in zip(windows, truths, strict=True):
        start, end = day(a), day(b)
        rows = {k: r for k, r in rows.items() if not start <= r.day <= end}
        rows.update({((WS, r.type, r.subject), r.day): r for r in _rows(truth, a, b)})
        done |= evaluated(a, b)
        touching = [
            (e.key, e.opened_on, e.last_active_on)
            for e in stored.values()
            if e.last_active_on >= start - timedelta(days=1) and e.opened_on <= end + timedelta(1)
        ]
        lo = min([start] + [t[1] for t in touching])
        hi = max([end] + [t[2] for t in touching])
        # Read only what the asset reads: the rows of lo..hi and the evaluated days to hi + 1.
        window_rows = [r for r in rows.values() if lo <= r.day <= hi]
        window_done = {d for d in done if lo <= d <= hi + timedelta(days=1)}
        spans, fresh = refresh_episodes(touching, window_rows, window_done, start, end)
        for eid, e in list(stored.items()):
            span = spans.get(e.key)
            if span and span[0] <= e.opened_on <= span[1]:
                del stored[eid]
        for e in fresh:
            assert e.id not in stored
            stored[e.id] = e
    episodes = sorted(stored.values(), key=lambda e: (e.type, e.subject, e.opened_on))
    return episodes, rows, done


@st.composite
def schedules(draw: st.DrawFn) -> tuple[int, Truth, list[tuple[int, int]], list[Truth]]:
    n = draw(st.integers(1, 30))
    truth: Truth = {}
    for key in KEYS[: draw(st.integers(1, 3))]:
        for i in range(n):
            sev = draw(SEVERITY)
            if sev:
                truth[(key, i)] = sev
    # A split of 0..n-1 into windows, run in any order, some re-run, after optional stale runs
    # (restated days whose alerts were different then).
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=n - 1))) if n > 1 else []
    bounds = [0, *cuts, n]
    windows = [(bounds[i], bounds[i + 1] - 1) for i in range(len(bounds) - 1)]
    windows += draw(st.lists(st.sampled_from(windows), max_size=3))
    windows = draw(st.permutations(windows))
    stale_windows = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, 5)), max_size=3))
    stale = [(a, min(n - 1, a + k)) for a, k in stale_windows]
    stale_truth: Truth = {}
    for key in KEYS:
        for i in range(n):
            sev = draw(SEVERITY)
            if sev:
                stale_truth[(key, i)] = sev
    return n, truth, stale + list(windows), [stale_truth] * len(stale) + [truth] * len(windows)


@settings(max_examples=200, deadline=None)
@given(schedules())
def test_any_split_and_order_of_runs_yields_the_episodes_of_one_run(
    case: tuple[int, Truth, list[tuple[int, int]], list[Truth]],
) -> None:
    n, truth, windows, truths = case
    episodes, rows, _ = _run_windows(windows, truths)
    one_run, _, _ = _run_windows([(0, n - 1)], [truth])
    assert episodes == one_run
    assert episodes == alert_episodes(_rows(truth, 0, n - 1), evaluated(0, n - 1))
    # Every stored day belongs to exactly one episode.
    covered = sorted(
        (e.key, e.opened_on + timedelta(days=k))
        for e in episodes
        for k in range((e.last_active_on - e.opened_on).days + 1)
    )
    assert covered == sorted(rows)


@given(st.lists(st.integers(0, 20), unique=True), st.integers(0, 20))
def test_runs_up_to_a_day_then_the_rest_equal_one_run(active: list[int], cut: int) -> None:
    truth: Truth = {(RUNWAY, i): "warn" for i in active}
    split, _, _ = _run_windows([(cut, 20), (0, cut)], [truth, truth])
    whole, _, _ = _run_windows([(0, 20)], [truth])
    assert split == whole


# --- webhook events ------------------------------------------------------------------------------


def _episode(days: list[tuple[int, str]], done_to: int) -> Episode:
    [ep] = alert_episodes([alert(i, sev) for i, sev in days], evaluated(0, done_to))
    return ep


def test_events_open_escalate_and_resolve_once() -> None:
    # Day 0 opens (warn): alert.opened, once.
    ep0 = _episode([(0, "warn")], 0)
    [opened] = episode_events([ep0], day(0), set())
    assert (opened.type, opened.id) == ("alert.opened", event_id(ep0.id, "alert.opened", "warn"))
    data = opened.to_dict()
    assert (data["type"], data["severity"], data["day"], data["message"]) == (
        "runway_low",
        "warn",
        "2026-01-01",
        "m0",
    )
    assert data["episode"]["id"] == ep0.id and data["episode"]["status"] == "opened"
    sent = {opened.id}
    assert episode_events([ep0], day(0), sent) == []
    # Day 1 continues at warn: a daily repeat sends nothing.
    assert episode_events([_episode([(0, "warn"), (1, "warn")], 1)], day(1), sent) == []
    # Day 2 turns critical: escalated from warn, once.
    ep2 = _episode([(0, "warn"), (1, "warn"), (2, "critical")], 2)
    [esc] = episode_events([ep2], day(2), sent)
    assert (esc.type, esc.previous_severity) == ("alert.escalated", "warn")
    assert esc.to_dict()["episode"]["peak_severity"] == "critical"
    sent.add(esc.id)
    assert episode_events([ep2], day(2), sent) == []
    # Day 3 falls back to warn, day 4 critical again: nothing above what was sent.
    ep4 = _episode([(0, "warn"), (1, "warn"), (2, "critical"), (3, "warn"), (4, "critical")], 4)
    assert episode_events([ep4], day(4), sent) == []
    # Day 5 absent: resolved, once.
    ep5 = _episode([(0, "warn"), (1, "warn"), (2, "critical"), (3, "warn"), (4, "critical")], 5)
    [res] = episode_events([ep5], day(5), sent)
    assert res.type == "alert.resolved" and res.to_dict()["message"] == "Resolved: m4"
    assert res.to_dict()["episode"]["resolved_on"] == "2026-01-06"
    assert episode_events([ep5], day(5), sent | {res.id}) == []


def test_unannounced_episodes_open_late_and_resolve_silently() -> None:
    # The opening day's delivery failed: the next day still announces it, at today's severity.
    ep = _episode([(0, "warn"), (1, "critical")], 1)
    [late] = episode_events([ep], day(1), set())
    assert late.type == "alert.opened" and late.to_dict()["episode"]["status"] == "active"
    assert late.id == event_id(ep.id, "alert.opened", "critical")
    # Opened at critical: a later warn day is not an escalation.
    ep2 = _episode([(0, "warn"), (1, "critical"), (2, "warn")], 2)
    assert episode_events([ep2], day(2), {late.id}) == []
    # Never announced and already over: nothing to tell.
    gone = _episode([(0, "warn")], 1)
    assert episode_events([gone], day(1), set()) == []


def test_a_restatement_moving_the_opening_earlier_does_not_announce_again() -> None:
    # Announced as opened on day 3 (warn); a backfill then finds the alert active since day 0.
    before = _episode([(3, "warn")], 3)
    told = {event_id(before.id, "alert.opened", "warn")}
    after = _episode([(0, "warn"), (1, "warn"), (2, "warn"), (3, "warn"), (4, "warn")], 4)
    assert after.id != before.id
    assert episode_events([after], day(4), told) == []
    # Its escalation and resolution still follow, under the episode's current id.
    crit = _episode([(0, "warn"), (1, "warn"), (2, "warn"), (3, "warn"), (4, "critical")], 4)
    [esc] = episode_events([crit], day(4), told)
    assert esc.id == event_id(crit.id, "alert.escalated", "critical")
    done = _episode([(0, "warn"), (1, "warn"), (2, "warn"), (3, "warn")], 4)
    [res] = episode_events([done], day(4), told)
    assert res.id == event_id(done.id, "alert.resolved")
    # An earlier episode told resolved, now joined to a running one by a restatement: announced
    # afresh, since the last word a person had was "resolved".
    closed = {event_id(before.id, "alert.opened", "warn"), event_id(before.id, "alert.resolved")}
    [again] = episode_events([after], day(4), closed)
    assert again.type == "alert.opened"
