"""The two metrics stages folded in memory (no broker) equal the batch recomputation."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.agents.metrics import (
    Contribution,
    WindowBoard,
    apply_share,
    contributions,
    owner_facts,
    window_record,
)
from pipeline.agents.optouts import optout_for
from pipeline.core.lifecycle import LifecycleState, apply, to_record
from pipeline.core.metrics import (
    WINDOWS,
    MetricFact,
    WindowAccumulator,
    WindowKey,
    batch_metrics_from_events,
)
from pipeline.records import (
    ClickCallback,
    SendRequest,
    SendResult,
    SmsMetricsWindow,
    StatusCallback,
)
from tests.agents.streamdata import make_events, shuffled_with_duplicates

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LIFECYCLE_TYPES = (SendRequest, SendResult, StatusCallback, ClickCallback)


def _lifecycle_stream(events: list[object]) -> list[object]:
    """What the correlate agent emits for a stream: every changed record, in order."""
    states: dict[str, LifecycleState] = {}
    out: list[object] = []
    for e in events:
        if isinstance(e, LIFECYCLE_TYPES) and e.id_sms_api:
            before = states.get(e.id_sms_api)
            after = states[e.id_sms_api] = apply(before, e)
            if before is None or to_record(before) != to_record(after):
                out.append(to_record(after))
        elif not isinstance(e, LIFECYCLE_TYPES):
            out.append(e)
    return out


def _run_stages(sources: list[object], rng: random.Random) -> dict[WindowKey, SmsMetricsWindow]:
    owners: dict[str, tuple[MetricFact, ...]] = {}
    sent: list[Contribution] = []
    for record in sources:
        key = f"sms:{record.id_sms_api}" if hasattr(record, "state") else None  # type: ignore[attr-defined]
        current = owners.get(key, ()) if key else ()
        if key is None:
            probe = owner_facts((), record)
            if probe is None:
                continue
            current = owners.get(probe[0], ())
        resolved = owner_facts(current, record)
        if resolved is None:
            continue
        owner, after = resolved
        sent.extend(contributions(owner, owners.get(owner, ()), after))
        owners[owner] = after
    # Stage 2 sees each window's contributions in order (one partition), some redelivered.
    by_window: dict[WindowKey, list[Contribution]] = defaultdict(list)
    for c in sent:
        by_window[c.window].append(Contribution.from_bytes(c.to_bytes()))
    out: dict[WindowKey, SmsMetricsWindow] = {}
    for window, cs in by_window.items():
        replayed = [x for c in cs for x in ([c, c] if rng.random() < 0.3 else [c])]
        shares: dict[str, tuple[MetricFact, ...]] = {}
        acc = WindowAccumulator()
        for c in replayed:
            before = shares.get(c.owner, ())
            if before == c.facts:
                continue  # a redelivered contribution changes nothing
            apply_share(acc, before, c.facts)
            shares[c.owner] = c.facts
        if not acc.is_empty():
            out[window] = window_record(window, acc, WINDOWS)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_stages_equal_batch(seed: int) -> None:
    events = make_events(80, seed=seed, base=BASE)
    optouts = [o for o in (optout_for(e) for e in events) if o is not None]
    stream = shuffled_with_duplicates([*events, *optouts], seed=seed + 10, dup_rate=0.4)
    got = _run_stages(_lifecycle_stream(stream), random.Random(seed))
    expected = batch_metrics_from_events([*events, *optouts])
    assert got == expected
    assert any(w.delivered for w in got.values()) and any(w.optouts for w in got.values())


def test_contributions_retract_a_moved_fact() -> None:
    f_old = MetricFact("rejected", "rejected:m1", "alice", BASE)
    f_new = MetricFact("rejected", "rejected:m1", "alice", BASE + timedelta(minutes=2))
    cs = contributions("sms:m1", [f_old], [f_new], {"1m": 60})
    emptied = {c.window.start for c in cs if not c.facts}
    filled = {c.window.start for c in cs if c.facts}
    assert emptied == {BASE} and filled == {BASE + timedelta(minutes=2)}
    assert {c.window.login for c in cs} == {"alice", "*"}
    assert contributions("sms:m1", [f_old], [f_old]) == []


def test_board_keeps_latest_windows_most_recent_first() -> None:
    board = WindowBoard(depth=3)
    for minute in range(5):
        start = BASE + timedelta(minutes=minute)
        board.update(SmsMetricsWindow(start, start + timedelta(minutes=1), "*", requested=minute))
    latest = board.latest("1m", "*")
    assert [w.requested for w in latest] == [4, 3, 2]
    assert board.logins("1m") == ["*"] and board.latest("1h", "*") == []
