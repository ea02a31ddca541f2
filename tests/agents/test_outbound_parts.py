"""The outbound agent's collaborators on their own: completion (writes, opt-outs, ordered acks),
back-pressure, the Ardary call's failure mapping, the opt-out book and the result index.

No broker: the app, its producer batches and the send-state table are small fakes; the
integration tests (`tests/integration/test_outbound*.py`) run the same code on the real ones.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from pipeline.agents import optouts as optouts_agent
from pipeline.agents.app import Streams
from pipeline.agents.liveness import Telemetry
from pipeline.agents.outbound import completion as completion_module
from pipeline.agents.outbound import optout_book as book_module
from pipeline.agents.outbound import result_index as index_module
from pipeline.agents.outbound.calls import ArdaryCalls
from pipeline.agents.outbound.completion import Completion, Finished
from pipeline.agents.outbound.dispatch import Dispatcher
from pipeline.agents.outbound.options import OutboundOptions
from pipeline.agents.outbound.optout_book import OptOutBook
from pipeline.agents.outbound.progress import Entry, Progress
from pipeline.agents.outbound.result_index import ResultIndex
from pipeline.agents.outbound.sendtime import SendTimes
from pipeline.core.ratelimit import SendGate
from pipeline.core.sending import BatchKey, Done, Prepared, SendState
from pipeline.core.sending import check_request as check
from pipeline.kafka.codec import AvroFaustCodec
from pipeline.kafka.readers import TopicRecord
from pipeline.records import OptOut, SendRequest, SendResult
from pipeline.serde import make_codec
from pipeline.settings import Settings

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CODEC = AvroFaustCodec(make_codec(None))


class FakeBatches:
    """PartitionBatches' interface, recording what was added and when it was sent."""

    log: list[tuple[str, Any]] = []

    def __init__(self) -> None:
        self.records: list[tuple[str, int | None, bytes | None, bytes | None]] = []

    @classmethod
    def for_app(cls, app: Any) -> FakeBatches:
        return cls()

    def add(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        headers: Any = None,
    ) -> None:
        self.records.append((topic, partition, key, value))

    def add_keyed(
        self, topic: str, key: bytes | None, value: bytes | None, headers: Any = None
    ) -> None:
        self.records.append((topic, None, key, value))

    async def send_and_wait(self) -> None:
        FakeBatches.log.append(("sent", list(self.records)))


@dataclass
class FakeStates:
    written: list[tuple[str, SendState]] = field(default_factory=list)

    def write(self, batches: Any, event: Any, id_sms_api: str, state: SendState) -> None:
        self.written.append((id_sms_api, state))
        batches.add("changelog", event.message.partition, id_sms_api.encode(), b"state")


class FakeEvent:
    def __init__(self, offset: int, partition: int = 0, generation: int = 1) -> None:
        self.message = SimpleNamespace(
            partition=partition, offset=offset, generation_id=generation, tp=("t", partition)
        )
        self.acked = False

    def ack(self) -> bool:
        self.acked = True
        return True


def _app() -> Any:
    return SimpleNamespace(
        consumer_generation_id=1, sensors=SimpleNamespace(on_message_out=lambda *a: None)
    )


def _streams() -> Streams:
    names = ("sms.send-results", "sms.optouts")
    topics = {n: SimpleNamespace(get_topic_name=lambda n=n: f"t.{n}") for n in names}
    return Streams(by_name=topics, codec=CODEC, prefix="t.")


@pytest.fixture
def completion(monkeypatch: pytest.MonkeyPatch) -> Completion:
    monkeypatch.setattr(completion_module, "PartitionBatches", FakeBatches)
    FakeBatches.log = []
    return Completion(
        _app(),
        _streams(),
        FakeStates(),  # type: ignore[arg-type]
        OptOutBook(),
        Progress(max_pending=100),
        Telemetry(),
        produce_timeout=1.0,
    )


def _result(outcome: str = "SUPPRESSED", codes: tuple[str, ...] = ("#003",)) -> SendResult:
    return SendResult("m1", "alice", "+33612345678", outcome, AT, codes)  # type: ignore[arg-type]


async def test_both_agents_build_the_same_optout_for_a_stop_listed_number(
    completion: Completion,
) -> None:
    result = _result()
    event = FakeEvent(0)
    completion.progress.order.received(0, 0)
    await completion.finish_many([Finished([event], result, called=True)])
    sent = [r for _, records in FakeBatches.log for r in records if r[0] == "t.sms.optouts"]
    assert len(sent) == 1
    _topic, partition, key, value = sent[0]
    assert (partition, key) == (None, b"+33612345678")  # the phone's partition, by key
    published = CODEC.codec.decode(value or b"")
    from_optouts_agent = optouts_agent.optout_for(result)
    assert published == from_optouts_agent
    assert isinstance(published, OptOut) and published.keyword == "#003"
    assert completion.optouts.is_opted_out("+33612345678")


async def test_results_then_published_states_then_acks(completion: Completion) -> None:
    events = [FakeEvent(0, partition=3), FakeEvent(1, partition=3)]
    completion.progress.order.received(3, 0)
    completion.progress.order.received(3, 1)
    ok = SendResult("m2", "alice", "+33612345678", "SUBMITTED", AT)
    await completion.finish_many([Finished([events[1]], ok, called=True)], durable_first=True)
    first, second, third = FakeBatches.log
    assert [r[0] for r in first[1]] == ["changelog"]  # DONE, durable before the result
    assert [r[0] for r in second[1]] == ["t.sms.send-results"]
    assert second[1][0][1] == 3  # the request's own partition (co-partitioned)
    assert [r[0] for r in third[1]] == ["changelog"]  # PUBLISHED
    states: FakeStates = completion.states  # type: ignore[assignment]
    assert [s for _, s in states.written] == [Done(ok), Done(ok, published=True)]
    assert not events[1].acked  # offset 0 is still in work: offset 1 waits
    assert completion.progress.order.held == 1
    completion.ack([events[0]])
    assert events[0].acked and events[1].acked
    assert completion.telemetry.registry.get_sample_value(
        "ardary_outbound_results_total", {"outcome": "SUBMITTED"}
    )


async def test_a_result_without_a_call_publishes_no_optout(completion: Completion) -> None:
    completion.progress.order.received(0, 0)
    await completion.finish([FakeEvent(0)], _result())  # refused here: the book knew it
    topics = {r[0] for _, records in FakeBatches.log for r in records}
    assert "t.sms.optouts" not in topics


def test_events_of_an_earlier_generation_are_never_acked(completion: Completion) -> None:
    stale = FakeEvent(0, generation=0)
    completion.progress.order.received(0, 0)
    completion.ack([stale])
    assert not stale.acked


def test_an_event_finishing_while_its_partition_is_revoked_is_never_acked(
    completion: Completion,
) -> None:
    # faust changes the consumer generation only at the new assignment: between revocation
    # and assignment, a batch awaited by the revocation finishes with the old generation
    # still current. Chaos run (issue 18): such acks, out of order, were committed and the
    # group's offset jumped past the requests dropped from the batcher (never read again).
    events = [FakeEvent(offset, partition=2) for offset in (40, 41)]
    for event in events:
        completion.progress.order.received(2, event.message.offset)
    completion.progress.revoked([2], [])
    completion.ack([events[1]])
    assert not events[1].acked
    completion.ack([events[0]])
    assert not events[0].acked


def _entry(progress: Progress, id_sms_api: str, partition: int) -> Entry:
    request = SendRequest(id_sms_api, "alice", "+33612345678", "hi", AT)
    prepared = check(request, opted_out=lambda _p: False, now=AT)
    assert isinstance(prepared, Prepared)
    event = SimpleNamespace(message=SimpleNamespace(topic="t.req", partition=partition))
    return Entry(event, prepared, progress.generation)


def _dispatcher(progress: Progress, states: FakeStates) -> Dispatcher:
    gate = SendGate(None)
    gate.set_share(1, 1)
    return Dispatcher(
        max_batch=10,
        options=OutboundOptions(linger=0.0, max_concurrent=1),
        gate=gate,
        calls=None,  # type: ignore[arg-type]  # nothing may be called here
        states=states,  # type: ignore[arg-type]
        completion=None,  # type: ignore[arg-type]
        progress=progress,
        telemetry=Telemetry(),
        crash=lambda exc: None,
    )


async def test_a_batch_revoked_while_it_waits_for_a_slot_leaves_nothing_pending() -> None:
    # Chaos run (issue 18): an entry left in `pending` after its revocation made the same
    # request, read again after the seek, join it as a duplicate that never finished: its
    # partition's acks, and the group's committed offset, stopped there for good.
    progress, states = Progress(max_pending=100), FakeStates()
    dispatcher = _dispatcher(progress, states)
    await dispatcher._slots.acquire()  # the one slot is busy with a batch in flight
    entry = _entry(progress, "m1", partition=3)
    progress.pending["m1"] = entry
    dispatcher.add(entry)
    running = asyncio.create_task(dispatcher.run())
    try:
        deadline = asyncio.get_running_loop().time() + 2.0
        while len(dispatcher.batcher) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.005)
        assert not dispatcher.batcher  # picked: it waits for the slot
        dropped = dispatcher.drop({("t.req", 3)})
        progress.revoked([3], dropped)
        assert dropped == [entry]
        dispatcher._slots.release()  # the batch in flight finished
        await asyncio.sleep(0.05)
        assert progress.pending == {}
        assert states.written == []  # nothing of it was sent
    finally:
        running.cancel()


async def test_a_batch_started_after_its_revocation_forgets_its_entries() -> None:
    progress, states = Progress(max_pending=100), FakeStates()
    dispatcher = _dispatcher(progress, states)
    entry = _entry(progress, "m1", partition=3)
    progress.pending["m1"] = entry
    progress.revoked([3], [])  # the batch's task had not run yet
    await dispatcher._run_batch(BatchKey("alice", "SERVER", None, 0), [entry])
    assert progress.pending == {} and states.written == []


async def test_reading_waits_for_room() -> None:
    progress = Progress(max_pending=1)
    request = SendRequest("m1", "alice", "+33612345678", "hi", AT)
    prepared = check(request, opted_out=lambda _p: False, now=AT)
    assert isinstance(prepared, Prepared)
    progress.pending["m1"] = Entry(FakeEvent(0), prepared, progress.generation)
    waiter = asyncio.create_task(progress.wait_for_room())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    progress.pending.pop("m1")
    progress.room_made()
    await asyncio.wait_for(waiter, 1.0)


def _calls(**options: Any) -> ArdaryCalls:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        ardary_base_url="http://ardary.test",
        ardary_login="alice",
        ardary_access_key="k",  # type: ignore[arg-type]
    )
    opts = OutboundOptions(retry_base_delay=0.001, retry_max_delay=0.001, **options)
    gate = SendGate(None)
    gate.set_share(1, 1)
    return ArdaryCalls(settings, opts, gate, Telemetry(), SendTimes.from_settings(settings))


def _batch() -> tuple[BatchKey, list[Prepared]]:
    request = SendRequest("m1", "alice", "+33612345678", "hi", AT)
    prepared = check(request, opted_out=lambda _p: False, now=AT)
    assert isinstance(prepared, Prepared)
    return BatchKey("alice", "SERVER", None, 1), [prepared]


@pytest.mark.parametrize(
    ("answer", "codes", "attempts"),
    [
        (httpx.Response(503), ("RETRIES_EXHAUSTED",), 2),
        (httpx.Response(401), ("#001",), 1),
        (httpx.Response(418), ("PROTOCOL_ERROR",), 1),
        (httpx.ReadTimeout("no answer"), ("OUTCOME_UNKNOWN",), 1),
    ],
)
async def test_a_failed_call_fails_its_messages_with_the_matching_code(
    answer: httpx.Response | Exception, codes: tuple[str, ...], attempts: int
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(answer, Exception):
            raise answer
        return answer

    calls = _calls(max_attempts=2)
    key, batch = _batch()
    async with calls.session(httpx.MockTransport(handler)):
        [result] = await calls.call(key, batch)
    assert (result.outcome, result.error_codes, result.attempts) == ("FAILED", codes, attempts)


async def test_an_account_error_opens_the_breaker_for_that_login() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(401)

    calls = _calls()
    key, batch = _batch()
    async with calls.session(httpx.MockTransport(handler)):
        await calls.call(key, batch)
        [again] = await calls.call(key, batch)
    assert len(seen) == 1  # the second batch was answered by the open breaker
    assert again.error_codes == ("#001",) and again.attempts == 0


async def test_the_book_follows_consent_and_skips_what_it_cannot_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stop = OptOut("+33 6 12 34 56 78", True, "STOP_REPLY", "e1", AT)
    start = OptOut("+33612345678", False, "START_REPLY", "e2", AT)
    other = OptOut("+33698765432", True, "STOP_REPLY", "e3", AT)

    async def follow(client: Any, topic: str, apply: Any, caught_up: Any) -> None:
        values = [stop, None, b"not avro", other]
        for n, value in enumerate(values):
            raw = value if not isinstance(value, OptOut) else CODEC.codec.encode(value)
            apply(TopicRecord(0, n, b"k", raw))
        assert book.is_opted_out("+33612345678")  # normalised to E.164
        caught_up()
        apply(TopicRecord(0, 9, b"k", CODEC.codec.encode(start)))

    monkeypatch.setattr(book_module, "follow_topic", follow)
    book = OptOutBook()
    await book.follow({"bootstrap_servers": "b:9092"}, "t.sms.optouts", CODEC.codec.decode)
    assert book.ready.is_set()
    assert not book.is_opted_out("+33612345678") and book.is_opted_out("+33698765432")
    assert len(book) == 1


async def test_the_result_index_reads_a_partition_once_unless_asked_for_earlier(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = _result("SUBMITTED", ())
    reads: list[tuple[int, datetime]] = []

    async def read(client: Any, topic: str, partition: int, since: datetime) -> list[Any]:
        reads.append((partition, since))
        return [
            TopicRecord(partition, 0, b"m1", CODEC.codec.encode(result)),
            TopicRecord(partition, 1, None, b"x"),
            TopicRecord(partition, 2, b"gone", None),
        ]

    monkeypatch.setattr(index_module, "read_partition_since", read)
    index = ResultIndex({"bootstrap_servers": "b:9092"}, "t.sms.send-results", CODEC.codec.decode)
    assert await index.find(2, "m1", AT) == result
    assert await index.find(2, "other", AT + timedelta(seconds=1)) is None
    assert len(reads) == 1  # later: answered from what was read
    assert await index.find(2, "m1", AT - timedelta(seconds=1)) == result
    index.forget(2)
    await index.find(2, "m1", AT)
    assert [p for p, _ in reads] == [2, 2, 2]
