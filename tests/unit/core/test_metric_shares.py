"""Window shares: what the metrics-facts stage sends and the metrics-windows stage applies."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.metrics import (
    Contribution,
    MetricFact,
    WindowAccumulator,
    WindowKey,
    apply_share,
    batch_metrics,
    contributions,
    window_record,
)

from .strategies import T0

BASE = T0


def _fact(n: int, seconds: float, login: str | None = "alice") -> MetricFact:
    return MetricFact(
        "incoming_sms", f"incoming_sms:e{n}", login, BASE + timedelta(seconds=seconds)
    )


def test_contributions_retract_a_moved_fact() -> None:
    f_old = MetricFact("rejected", "rejected:m1", "alice", BASE)
    f_new = MetricFact("rejected", "rejected:m1", "alice", BASE + timedelta(minutes=2))
    cs = contributions("sms:m1", [f_old], [f_new], {"1m": 60})
    emptied = {c.window.start for c in cs if not c.facts}
    filled = {c.window.start for c in cs if c.facts}
    assert emptied == {BASE} and filled == {BASE + timedelta(minutes=2)}
    assert {c.window.login for c in cs} == {"alice", "*"}
    assert contributions("sms:m1", [f_old], [f_old]) == []


def test_a_contribution_round_trips_and_is_keyed_by_its_window() -> None:
    c = Contribution(WindowKey("1h", BASE, "a|b"), "sms:m1", (_fact(1, 0), _fact(2, 5, login=None)))
    assert Contribution.from_bytes(c.to_bytes()) == c
    assert c.key() == c.window.encode().encode()
    assert WindowKey.decode(c.key().decode()) == c.window


@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 5), st.integers(0, 300)), max_size=6),
        min_size=1,
        max_size=8,
    )
)
def test_applying_each_change_equals_the_last_state(
    states: list[list[tuple[int, int]]],
) -> None:
    """An owner's facts change again and again; its windows end up with its last facts only."""
    windows: dict[WindowKey, WindowAccumulator] = {}
    shares: dict[WindowKey, tuple[MetricFact, ...]] = {}
    before: tuple[MetricFact, ...] = ()
    for state in states:
        after = tuple(
            sorted({_fact(n, s) for n, s in dict(state).items()}, key=lambda f: f.fact_id)
        )
        for c in contributions("event:x", before, after):
            apply_share(
                windows.setdefault(c.window, WindowAccumulator()), shares.get(c.window, ()), c.facts
            )
            shares[c.window] = c.facts
        before = after
    got = {
        k: window_record(k, acc, {"1m": 60, "1h": 3600})
        for k, acc in windows.items()
        if not acc.is_empty()
    }
    assert got == batch_metrics(before)
