"""Intake: each received request is checked once, against its send state and the opt-out book.

- **Redelivery.** A request whose id has a send state is never sent again: PUBLISHED → acked,
  nothing else; IN_FLIGHT or DONE → if `sms.send-results` already holds its result
  (`ResultIndex` reads that partition from shortly before) only PUBLISHED is recorded, else
  DONE's result or, for IN_FLIGHT, FAILED `UNKNOWN_AFTER_CRASH` is produced — never resent.
- **Duplicates in a row.** A request whose id is still in work joins that entry: one send, one
  result, every event acked with it.
- **Validation** (`check_request`): an invalid number, an empty text or a link placeholder
  without url → REJECTED; an opted-out number → SUPPRESSED `#003`; both answered without
  calling Ardary.
- **`date_to_send` in the future is passed to Ardary**, which schedules natively. Holding
  messages back would keep our opt-out checks valid until send time, but needs a durable
  scheduled store and a timer per message; Ardary applies its own STOP list at send time,
  which covers the main risk. A `date_to_send` already past is dropped (send now).
- **Sending windows** (`SendTimes`): a marketing request outside its recipient's window gets
  `date_to_send` moved to the next opening; one whose window never opens → REJECTED
  `NO_SENDING_WINDOW`. Transactional requests are never moved.
- **Tracing** (while on): each request taken in (not a duplicate in a row) gets a consumer span
  `sms.send` under its record's `traceparent` (a new trace without one); its result carries that
  span's context and completion ends it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.agents.outbound.completion import AGENT, Completion
from pipeline.agents.outbound.dispatch import Dispatcher
from pipeline.agents.outbound.optout_book import OptOutBook
from pipeline.agents.outbound.progress import Entry, Progress
from pipeline.agents.outbound.result_index import ResultIndex
from pipeline.agents.outbound.sendtime import SendTimes
from pipeline.agents.outbound.states import SendStates
from pipeline.core.sending import (
    Done,
    InFlight,
    Prepared,
    Refusal,
    SendState,
    check_request,
    make_result,
    redelivery_result,
)
from pipeline.records import SendRequest
from pipeline.tracing import Tracing

__all__ = ["REDELIVERY_LOOKBACK", "Intake", "request_span"]

log = logging.getLogger(__name__)

# how far before a state's time ResultIndex looks for a result produced before a crash
REDELIVERY_LOOKBACK = timedelta(seconds=5)


def _now() -> datetime:
    return datetime.now(UTC)


class Intake:
    """Takes one event at a time: skipped, joined, answered at once, or buffered for dispatch."""

    def __init__(
        self,
        states: SendStates,
        optouts: OptOutBook,
        result_index: ResultIndex,
        progress: Progress,
        dispatcher: Dispatcher,
        completion: Completion,
        send_times: SendTimes,
    ) -> None:
        self.states = states
        self.optouts = optouts
        self.result_index = result_index
        self.progress = progress
        self.dispatcher = dispatcher
        self.completion = completion
        self.send_times = send_times

    async def receive(self, event: Any, tracing: Tracing | None = None) -> None:
        """Handle one event (the caller noted it in the ack order and checked for room);
        `tracing`: the process's, while tracing is on."""
        request = event.value
        if not isinstance(request, SendRequest):
            log.warning("not a SendRequest; skipped")
            self.completion.telemetry.events_skipped.labels(AGENT, "not_a_send_request").inc()
            self.completion.ack([event])
            return
        entry = self.progress.pending.get(request.id_sms_api)
        if entry is not None:  # the same id twice in a row: one send, one result
            entry.duplicates.append(event)
            return
        span = None if tracing is None else request_span(tracing, event, request)
        state = self.states.load(event, request.id_sms_api)
        if state is not None:
            await self._redelivered(event, request, state, span)
            return
        now = _now()
        checked = check_request(request, opted_out=self.optouts.is_opted_out, now=now)
        if isinstance(checked, Prepared):
            checked = self.send_times.plan(checked, now)
        if isinstance(checked, Refusal):
            result = make_result(
                request,
                checked.outcome,
                completed_at=_now(),
                error_codes=checked.error_codes,
                phone_number=checked.phone_number,
            )
            await self.completion.finish([event], result, span)
            return
        entry = Entry(event, checked, self.progress.generation, span=span)
        self.progress.pending[request.id_sms_api] = entry
        self.dispatcher.add(entry)

    async def _redelivered(
        self, event: Any, request: SendRequest, state: SendState, span: Any
    ) -> None:
        """A request this table already knows: never sent again, its result produced once."""
        if isinstance(state, Done) and state.published:
            if span is not None:
                span.set_attribute("ardary.redelivered", True)
                span.end()
            self.completion.ack([event])
            return
        made = state.since if isinstance(state, InFlight) else state.result.completed_at
        found = await self.result_index.find(
            event.message.partition, request.id_sms_api, made - REDELIVERY_LOOKBACK
        )
        if found is not None:  # produced before the crash: just record that
            await self.completion.published(event, found, span)
            return
        result = redelivery_result(state, request, _now())
        assert result is not None
        await self.completion.finish([event], result, span)


def request_span(tracing: Tracing, event: Any, request: SendRequest) -> Any:
    """The consumer span of one send request, under the `traceparent` its record carries."""
    message = event.message
    return tracing.span(
        "sms.send",
        parent=tracing.context(message.headers),
        kind="consumer",
        attributes={
            "messaging.system": "kafka",
            "messaging.destination.name": message.topic,
            "messaging.destination.partition.id": str(message.partition),
            "messaging.kafka.offset": message.offset,
            "ardary.id_sms_api": request.id_sms_api,
            "ardary.login": request.login,
        },
    )
