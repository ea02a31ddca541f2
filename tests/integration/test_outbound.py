"""The outbound agent end to end: a real broker, a real worker subprocess, the simulator over HTTP.

One worker serves the whole module (start-up is the slow part); each test uses its own ids.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from pipeline.ardary.api import format_ardary_time
from pipeline.kafka.admin import ensure_topics
from pipeline.records import ContactSyncRequest, ContactSyncResult, OptOut
from tests.integration.test_outbound_support import (
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


class Rig:
    def __init__(self, bootstrap: str, prefix: str, sim: SimulatorProcess) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.sim = sim
        self.results = TopicReader(bootstrap, f"{prefix}sms.send-results")
        self.optouts = TopicReader(bootstrap, f"{prefix}sms.optouts")

    def send(self, *records: object) -> None:
        publish(self.bootstrap, f"{self.prefix}sms.send-requests", records)  # type: ignore[arg-type]

    def results_for(self, ids: list[str], timeout: float = 30) -> dict[str, list[object]]:
        return self.results.wait_ids(ids, timeout)


@pytest.fixture(scope="module")
def rig(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    prefix = f"t{uuid4().hex[:8]}."
    ensure_topics(kafka_bootstrap, prefix, 4)
    base = tmp_path_factory.mktemp("outbound")
    sim = SimulatorProcess(base, "--latency-ms", "5")
    env = worker_env(kafka_bootstrap, prefix, sim, OUTBOUND_RATE_PER_SECOND="50")
    worker = WorkerProcess(env, "outbound,contacts", base / "w1")
    try:
        worker.start()
        yield Rig(kafka_bootstrap, prefix, sim)
    finally:
        worker.stop()
        sim.stop()


def _ids(n: int, tag: str) -> list[str]:
    return [f"{tag}-{uuid4().hex[:10]}-{i}" for i in range(n)]


def _one(results: dict[str, list[object]], id_: str) -> object:
    got = results[id_]
    assert len(got) == 1, f"{id_}: {len(got)} results"
    return got[0]


def test_valid_requests_are_sent_once_with_one_result(rig: Rig) -> None:
    ids = _ids(30, "ok")
    rig.send(*(request(i, message="Hello [Link]", url="https://example.com/x") for i in ids))
    results = rig.results_for(ids)
    ledger = rig.sim.ledger()
    for i in ids:
        result = _one(results, i)
        assert result.outcome == "SUBMITTED"  # type: ignore[attr-defined]
        assert result.attempts >= 1  # type: ignore[attr-defined]
        assert result.sms_per_message == ledger[i]["segments"]  # type: ignore[attr-defined]
        assert ledger[i]["submissions"] == 1
        assert ledger[i]["mode"] == "prod"


def test_invalid_requests_are_rejected_without_calling_ardary(rig: Rig) -> None:
    bad_phone, empty, link = _ids(3, "bad")
    rig.send(
        request(bad_phone, phone="+33 not a number"),
        request(empty, message="   "),
        request(link, message="Click [Lien_Tracking]", url=None),
    )
    results = rig.results_for([bad_phone, empty, link])
    assert _one(results, bad_phone).error_codes == ("#007",)  # type: ignore[attr-defined]
    assert _one(results, empty).error_codes == ("#006",)  # type: ignore[attr-defined]
    assert _one(results, link).error_codes == ("LINK_WITHOUT_URL",)  # type: ignore[attr-defined]
    assert {_one(results, i).outcome for i in (bad_phone, empty, link)} == {"REJECTED"}  # type: ignore[attr-defined]
    ledger = rig.sim.ledger()
    assert not {bad_phone, empty, link} & set(ledger)


def test_ardary_codes_become_outcomes_and_stop_publishes_an_optout(rig: Rig) -> None:
    stop_phone = "+33611112222"
    rig.sim.stop_list([stop_phone])
    stopped, forbidden = _ids(2, "codes")
    rig.send(
        request(stopped, phone=stop_phone),
        request(forbidden, message="this has forbiddenword inside"),
    )
    results = rig.results_for([stopped, forbidden])
    r_stop = _one(results, stopped)
    assert (r_stop.outcome, r_stop.error_codes) == ("SUPPRESSED", ("#003",))  # type: ignore[attr-defined]
    r_forbidden = _one(results, forbidden)
    assert (r_forbidden.outcome, r_forbidden.error_codes) == ("REJECTED", ("#004",))  # type: ignore[attr-defined]

    def optout_published() -> bool:
        return any(
            isinstance(o, OptOut)
            and o.phone_number == stop_phone
            and o.opted_out
            and o.source == "SEND_RESULT"
            for o in rig.optouts.poll()
        )

    wait_for(optout_published, 20, "an OptOut for the #003 number")
    # the worker now suppresses that number itself: Ardary is not asked again
    again = _ids(1, "again")[0]
    rig.send(request(again, phone=stop_phone))
    result = _one(rig.results_for([again]), again)
    assert (result.outcome, result.error_codes) == ("SUPPRESSED", ("#003",))  # type: ignore[attr-defined]
    assert rig.sim.stats()["rejected_by_code"].get("#003") == 1


def test_optout_topic_suppresses_and_start_resubscribes(rig: Rig) -> None:
    phone = "+33622223333"
    now = datetime.now(UTC)
    publish(
        rig.bootstrap,
        f"{rig.prefix}sms.optouts",
        [OptOut(phone, True, "STOP_REPLY", f"e-{uuid4().hex}", now)],
    )
    first = _ids(1, "opt")[0]

    def suppressed() -> bool:  # the feed is asynchronous: resend until the worker knows
        rig.send(request(first + f"-{time.monotonic_ns()}", phone=phone))
        time.sleep(0.3)
        rig.results.poll()
        return any(
            r.phone_number == phone and r.outcome == "SUPPRESSED" for r in rig.results.records
        )

    wait_for(suppressed, 30, "suppression of an opted-out number", interval=0.2)
    publish(
        rig.bootstrap,
        f"{rig.prefix}sms.optouts",
        [OptOut(phone, False, "START_REPLY", f"e-{uuid4().hex}", now)],
    )
    tag = _ids(1, "start")[0]
    seen: list[str] = []

    def resubscribed() -> bool:
        id_ = f"{tag}-{len(seen)}"
        seen.append(id_)
        rig.send(request(id_, phone=phone))
        got = rig.results_for([id_])
        return bool(_one(got, id_).outcome == "SUBMITTED")  # type: ignore[attr-defined]

    wait_for(resubscribed, 30, "START to re-subscribe", interval=0.2)
    assert rig.sim.ledger()[seen[-1]]["submissions"] == 1


def test_future_date_to_send_is_passed_to_ardary_and_past_is_dropped(rig: Rig) -> None:
    later, past = _ids(2, "sched")
    when = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    rig.send(
        request(later, date_to_send=when),
        request(past, date_to_send=datetime.now(UTC) - timedelta(hours=1)),
    )
    results = rig.results_for([later, past])
    assert _one(results, later).outcome == "SUBMITTED"  # type: ignore[attr-defined]
    ledger = rig.sim.ledger()
    assert ledger[later]["date_to_send"] == format_ardary_time(when, "Europe/Paris")
    assert ledger[past]["date_to_send"] is None


def test_priority_two_goes_before_zero_when_there_is_a_backlog(rig: Rig) -> None:
    # the worker's rate (50/s) makes 60 requests a backlog of more than a second
    low = _ids(60, "p0")
    high = _ids(20, "p2")
    rig.send(*(request(i, priority=0) for i in low))
    rig.send(*(request(i, priority=2) for i in high))
    results = rig.results_for(low + high, timeout=60)
    ledger = rig.sim.ledger()
    high_done = max(ledger[i]["first_accepted_at"] for i in high)
    low_done = max(ledger[i]["first_accepted_at"] for i in low)
    assert high_done < low_done
    assert all(_one(results, i).outcome == "SUBMITTED" for i in low + high)  # type: ignore[attr-defined]


def test_transient_failures_are_retried_then_succeed(rig: Rig) -> None:
    rig.sim.configure(fail_rate=0.5)
    try:
        ids = _ids(20, "retry")
        # one after the other's result, so each goes in a call of its own (sent together, the
        # paced worker would put them in two calls of ~10: two draws instead of twenty)
        for i in ids:
            rig.send(request(i))
            rig.results_for([i], timeout=60)
        results = rig.results_for(ids, timeout=60)
    finally:
        rig.sim.configure(fail_rate=0)
    ledger = rig.sim.ledger()
    outcomes = [_one(results, i) for i in ids]
    submitted = [r for r in outcomes if r.outcome == "SUBMITTED"]  # type: ignore[attr-defined]
    # P(4 failed attempts) = 1/16 per batch: nearly all succeed, several only after a retry
    assert len(submitted) >= 14
    assert any(r.attempts > 1 for r in submitted)  # type: ignore[attr-defined]
    for r in outcomes:
        if r.outcome == "SUBMITTED":  # type: ignore[attr-defined]
            assert ledger[r.id_sms_api]["submissions"] == 1  # type: ignore[attr-defined]
        else:
            assert (r.outcome, r.error_codes) == ("FAILED", ("RETRIES_EXHAUSTED",))  # type: ignore[attr-defined]


def test_per_message_unknown_error_is_retried_a_bounded_number_of_times(rig: Rig) -> None:
    rig.sim.configure(unknown_error_rate=1.0)
    try:
        ids = _ids(3, "u009")
        rig.send(*(request(i) for i in ids))
        results = rig.results_for(ids, timeout=60)
    finally:
        rig.sim.configure(unknown_error_rate=0)
    ledger = rig.sim.ledger()
    for i in ids:
        r = _one(results, i)
        assert (r.outcome, r.error_codes) == ("FAILED", ("#009",))  # type: ignore[attr-defined]
        assert r.attempts > 1  # type: ignore[attr-defined]
        assert i not in ledger


def test_429_slows_the_worker_down_to_ardarys_limit(rig: Rig) -> None:
    rig.sim.configure(rate_limit=20, retry_after_seconds=1)
    try:
        ids = _ids(60, "slow")
        rig.send(*(request(i) for i in ids))
        results = rig.results_for(ids, timeout=90)
    finally:
        rig.sim.configure(rate_limit=None)
    ledger = rig.sim.ledger()
    assert all(_one(results, i).outcome == "SUBMITTED" for i in ids)  # type: ignore[attr-defined]
    assert all(ledger[i]["submissions"] == 1 for i in ids)
    stamps = sorted(ledger[i]["first_accepted_at"] for i in ids)
    # no sliding second holds more than Ardary's limit
    peak = max(sum(1 for t in stamps[k:] if t < start + 1.0) for k, start in enumerate(stamps))
    assert peak <= 20


def test_account_error_opens_the_breaker_instead_of_retrying(rig: Rig) -> None:
    ids = _ids(12, "inactive")
    before = rig.sim.stats()["rejected_by_code"].get("#002", 0)
    for i in ids:  # one after the other's result: several calls (not one paced call of 12)
        rig.send(request(i, login="inactive"))
        rig.results_for([i])
    results = rig.results_for(ids)
    for i in ids:
        r = _one(results, i)
        assert (r.outcome, r.error_codes) == ("FAILED", ("#002",))  # type: ignore[attr-defined]
    # the first batch reached Ardary; the rest were answered by the open breaker
    after = rig.sim.stats()["rejected_by_code"].get("#002", 0)
    assert 1 <= after - before < len(ids)
    # and another login is not affected
    ok = _ids(1, "unaffected")[0]
    rig.send(request(ok, login=LOGIN))
    assert _one(rig.results_for([ok]), ok).outcome == "SUBMITTED"  # type: ignore[attr-defined]


def _partition(key: str, partitions: int = 4) -> int:
    from kafka.partitioner.default import murmur2

    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def test_a_duplicate_request_gets_no_second_send_nor_result(rig: Rig) -> None:
    id_ = _ids(1, "dup")[0]
    rig.send(request(id_))
    rig.results_for([id_])
    # a later request of the same partition: once it is answered, the duplicate was handled
    marker = next(m for m in _ids(64, "marker") if _partition(m) == _partition(id_))
    rig.send(request(id_), request(marker))
    rig.results_for([marker])
    rig.results.poll()
    assert len(rig.results.by_id()[id_]) == 1
    assert rig.sim.ledger()[id_]["submissions"] == 1


def test_contacts_are_synced_in_batches_with_the_contact_apis_codes(rig: Rig) -> None:
    now = datetime.now(UTC)
    good = ContactSyncRequest("+33633334444", LOGIN, now, firstname="Ann", email="ann@example.com")
    bad_phone = ContactSyncRequest("not-a-phone", LOGIN, now)
    bad_mail = ContactSyncRequest("+33633335555", LOGIN, now, email="nope")
    publish(rig.bootstrap, f"{rig.prefix}contacts.sync-requests", [good, bad_phone, bad_mail])
    reader = TopicReader(rig.bootstrap, f"{rig.prefix}contacts.sync-results")
    wanted = {good.phone_number, bad_phone.phone_number, bad_mail.phone_number}

    def all_answered() -> bool:
        return wanted <= {r.phone_number for r in reader.poll()}

    try:
        wait_for(all_answered, 30, "contact results")
        by_phone = {r.phone_number: r for r in reader.records}
    finally:
        reader.close()
    assert all(isinstance(r, ContactSyncResult) for r in by_phone.values())
    assert (by_phone[good.phone_number].outcome, by_phone[good.phone_number].error_codes) == (
        "SUCCESS",
        (),
    )
    assert by_phone[bad_phone.phone_number].error_codes == ("#001",)
    assert by_phone[bad_mail.phone_number].error_codes == ("#004",)
    assert by_phone[bad_mail.phone_number].outcome == "FAILED"
