"""Sending windows and per-login rates end to end: a real broker, one outbound worker, the
simulator over HTTP. What Ardary was asked is read from the simulator's ledger.

The French window is configured (SENDING_WINDOWS) as one hour that starts two hours from now in
Paris, so "now" is outside it whatever the time of the run; the Russian one is an hour no
number spanning UTC+2 to UTC+12 is ever inside. Logins `acme` and `other` have rates of their own
(5/s and 20/s) under a global 100/s; `bulk` has none (it goes at the global rate). Pacing is the
default (OUTBOUND_PACING_SECONDS 0.25): the simulator answers in 5 ms, 300 ms in the pacing test.
"""

from __future__ import annotations

import json
import math
import time as clock
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest

from pipeline.ardary.api import format_ardary_time
from pipeline.core.pacing import pace_for
from pipeline.kafka.admin import ensure_topics
from pipeline.records import SendResult
from tests.integration.test_outbound_support import (
    ACCOUNTS,
    KEY,
    LOGIN,
    SimulatorProcess,
    publish,
    request,
    worker_env,
)
from tests.kafka_read import TopicReader
from tests.polling import wait_until as wait_for
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

PARIS = ZoneInfo("Europe/Paris")
FR = "+33612345678"
RU_MOBILE = "+79161234567"  # one number, 16 zones: UTC+2 (Kaliningrad's neighbours) to UTC+12
RATES = {LOGIN: 5.0, "other": 20.0}
GLOBAL_RATE = 100.0
BULK = "bulk"  # no rate of its own


def closed_hour(now: datetime) -> int:
    """An opening hour at least an hour and at most two from now, in Paris."""
    return (now.astimezone(PARIS).hour + 2) % 24


def next_opening(now: datetime, hour: int) -> datetime:
    """The next `hour`:00 Paris wall time after `now` (every day is open)."""
    local = now.astimezone(PARIS)
    opening = datetime.combine(local.date(), time(hour), PARIS)
    if opening <= local:
        opening = datetime.combine(local.date() + timedelta(days=1), time(hour), PARIS)
    return opening.astimezone(UTC)


class Rig:
    def __init__(self, bootstrap: str, prefix: str, sim: SimulatorProcess, hour: int) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.sim = sim
        self.hour = hour
        self.results = TopicReader(bootstrap, f"{prefix}sms.send-results")

    def send(self, *records: object) -> None:
        publish(self.bootstrap, f"{self.prefix}sms.send-requests", records)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def rig(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    prefix = f"t{uuid4().hex[:8]}."
    ensure_topics(kafka_bootstrap, prefix, 4)
    base = tmp_path_factory.mktemp("compliance")
    hour = closed_hour(datetime.now(UTC))
    windows = {
        "FR": {"days": "Mon-Sun", "hours": f"{hour:02d}:00-{hour + 1:02d}:00", "holidays": "open"},
        "RU": {"days": "Mon-Sun", "hours": "09:00-10:00"},
    }
    accounts = {**ACCOUNTS, BULK: KEY}
    sim = SimulatorProcess(base, "--latency-ms", "5", "--accounts", json.dumps(accounts))
    env = worker_env(
        kafka_bootstrap,
        prefix,
        sim,
        ARDARY_ACCESS_KEYS=json.dumps({login: KEY for login in (LOGIN, "other", BULK)}),
        OUTBOUND_RATE_PER_SECOND=str(GLOBAL_RATE),
        OUTBOUND_RATE_PER_LOGIN=json.dumps(RATES),
        SENDING_WINDOWS=json.dumps(windows),
    )
    worker = WorkerProcess(env, "outbound", base / "w1")
    try:
        worker.start()
        yield Rig(kafka_bootstrap, prefix, sim, hour)
    finally:
        worker.stop()
        sim.stop()


def _ids(n: int, tag: str) -> list[str]:
    return [f"{tag}-{uuid4().hex[:10]}-{i}" for i in range(n)]


def test_marketing_outside_its_window_goes_at_the_next_opening_and_transactional_now(
    rig: Rig,
) -> None:
    marketing, transactional, never = _ids(3, "win")
    now = datetime.now(UTC)
    rig.send(
        request(marketing, phone=FR, marketing=True, message="Soldes -20 %"),
        request(transactional, phone=FR, message="Votre code : 1234"),
        request(never, phone=RU_MOBILE, marketing=True, message="Promo"),
    )
    results = rig.results.wait_ids([marketing, transactional, never], 30)
    opening = next_opening(now, rig.hour)
    ledger = rig.sim.ledger()

    moved = ledger[marketing]
    assert moved["date_to_send"] == format_ardary_time(opening, PARIS)  # Ardary holds it
    assert (moved["marketing"], moved["add_stop"]) == (1, 1)
    assert moved["add_stop_keys"] == ["addStop", "add_stop"]
    [result] = results[marketing]
    assert isinstance(result, SendResult)
    assert (result.outcome, result.scheduled_for) == ("SUBMITTED", opening)

    at_once = ledger[transactional]
    assert at_once["date_to_send"] is None and at_once["marketing"] is None
    assert abs(at_once["first_accepted_at"] - now.timestamp()) < 30  # sent now, not held
    [result] = results[transactional]
    assert (result.outcome, result.scheduled_for) == ("SUBMITTED", None)  # type: ignore[attr-defined]

    [result] = results[never]
    assert (result.outcome, result.error_codes) == ("REJECTED", ("NO_SENDING_WINDOW",))  # type: ignore[attr-defined]
    assert never not in ledger  # refused without calling Ardary


def test_each_login_goes_at_its_own_rate_under_the_global_one(rig: Rig) -> None:
    seconds, warmup = 6.0, 1.0
    counts = {login: int(rate * (warmup + seconds + 3)) for login, rate in RATES.items()}
    ids = {login: _ids(n, f"rate-{login}") for login, n in counts.items()}
    rig.send(*(request(i, login=login) for login in RATES for i in ids[login]))
    every = [i for login_ids in ids.values() for i in login_ids]
    wait_for(lambda: set(every) <= set(rig.sim.ledger()), 60, "every message sent")
    ledger = rig.sim.ledger()
    assert all(ledger[i]["submissions"] == 1 for i in every)
    for login, rate in RATES.items():
        stamps = sorted(ledger[i]["first_accepted_at"] for i in ids[login])
        start = stamps[0] + warmup
        window = [t for t in stamps if start <= t < start + seconds]
        achieved = len(window) / seconds
        # never above the rate; below it only as far as a busy box slows the worker
        assert rate * 0.75 <= achieved <= rate * 1.15, (login, achieved)
        peak = max(sum(1 for u in window[k:] if u <= t + 1.0) for k, t in enumerate(window))
        # the worker sends at most k full calls in any 1-s window; the simulator stamps a call
        # when it gets to it, and on a loaded machine one more call may land in the window
        pace = pace_for(rate, 0.25, 100)
        assert peak <= (pace.calls_per_second + 1) * math.floor(pace.capacity), (login, peak)


def test_a_flooding_login_does_not_hold_up_a_trickling_one(rig: Rig) -> None:
    # bulk floods the global rate (3 s of it), acme its own (8 s of it); other sends one message
    # every half second: each must go within its own pacing, not behind the floods
    floods = {BULK: _ids(300, "flood-bulk"), LOGIN: _ids(40, "flood-acme")}
    rig.send(*(request(i, login=login) for login, ids in floods.items() for i in ids))
    wait_for(lambda: len(set(floods[BULK]) & set(rig.sim.ledger())) >= 20, 30, "the flood going")
    published: dict[str, float] = {}
    for i in _ids(6, "trickle"):
        published[i] = clock.time()
        rig.send(request(i, login="other"))
        clock.sleep(0.5)
    wait_for(lambda: set(published) <= set(rig.sim.ledger()), 30, "the trickle sent")
    ledger = rig.sim.ledger()
    waited = {i: ledger[i]["first_accepted_at"] - t for i, t in published.items()}
    backlog = [i for ids in floods.values() for i in ids if i not in ledger]
    assert backlog, "the floods were over before the trickle: the test proves nothing"
    every = [i for ids in floods.values() for i in ids]
    wait_for(lambda: set(every) <= set(rig.sim.ledger()), 60, "the floods drained")
    # Every flood message was published before the trickle: sent in arrival order, each trickle
    # message would go after all of them. Each went while the floods still waited instead —
    # order, not a wall-clock bound (1.54 s against a 1.5-s bound on a busy box in CI).
    ledger = rig.sim.ledger()
    last = max(ledger[i]["first_accepted_at"] for i in every)
    late = {i: w for i, w in waited.items() if ledger[i]["first_accepted_at"] >= last}
    assert not late, (late, waited)


def test_with_a_slow_ardary_and_a_backlog_each_call_carries_many_messages(rig: Rig) -> None:
    # at 100/s paced every 0.25 s, a call carries ~25 messages; one message per call would cap
    # the rate at 16 in flight / 0.3 s = 53/s
    count = 500
    rig.sim.configure(latency_ms=300)
    try:
        ids = _ids(count, "paced")
        rig.send(*(request(i, login=BULK) for i in ids))
        wait_for(lambda: set(ids) <= set(rig.sim.ledger()), 60, "the backlog sent")
    finally:
        rig.sim.configure(latency_ms=5)
    ledger = rig.sim.ledger()
    stamps = sorted(ledger[i]["first_accepted_at"] for i in ids)
    per_call = len(stamps) / len(set(stamps))  # a call's messages share its acceptance time
    assert per_call >= 10, per_call
    start = stamps[0] + 1.0
    window = [t for t in stamps if start <= t < start + 3.0]
    achieved = len(window) / 3.0
    # never above the rate; below it only as far as a busy box slows the worker
    assert GLOBAL_RATE * 0.75 <= achieved <= GLOBAL_RATE * 1.1, achieved
