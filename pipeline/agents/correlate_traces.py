"""The correlate agent's spans, while tracing is on: one per message a batch touches.

An SMS's trace starts with its send request (the upstream producer's or the ingress's
`traceparent`, else the outbound agent's new root) and goes on with its SendResult (the outbound
agent's `sms.send` span). Ardary's status and click callbacks carry no context of their own: the
ingress gives each its server span's `traceparent`. So, per message of a batch:

- the SMS's context is the one this batch's SendResult (else SendRequest) record carries, else
  the one the table kept for the message (`"t"` in its value: a `traceparent` text, so it
  survives restarts and rebalances through the changelog);
- an `sms.correlate` span is started under it (a new root when none is known yet: a callback
  that came before its send), linked to the server span of each callback of the batch;
- the lifecycle record carries that span's `traceparent`, the table keeps the SMS's context,
  and the spans end once the batch's records are acknowledged.

The overdue timer's records get an `sms.overdue` span under the kept context.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.core.lifecycle import message_id
from pipeline.kafka.produce import Headers
from pipeline.records import ClickCallback, SendRequest, SendResult, StatusCallback
from pipeline.tracing import Tracing

__all__ = ["SmsTraces", "overdue_headers", "stored_trace"]

_CALLBACKS = (StatusCallback, ClickCallback)


def stored_trace(value: Mapping[str, Any] | None) -> str | None:
    """The SMS's `traceparent` a table value keeps (None: none known, or tracing was off)."""
    return None if value is None else value.get("t")


class SmsTraces:
    """The SMS contexts and callback links of one batch, and the spans it started."""

    def __init__(self, tracing: Tracing, events: Iterable[Any], stored: Mapping[str, str]) -> None:
        self.tracing = tracing
        self.stored = stored
        self.sms: dict[str, Any] = {}  # id_sms_api → SpanContext of a send record of the batch
        self.from_result: set[str] = set()
        self.links: dict[str, list[Any]] = {}  # id_sms_api → the callbacks' server spans
        self.spans: list[Any] = []
        for event in events:
            value = event.value
            if isinstance(value, SendResult | SendRequest):
                mid = value.id_sms_api
                if mid in self.from_result:
                    continue
                context = tracing.context(event.message.headers)
                if context is not None:
                    self.sms[mid] = context
                    if isinstance(value, SendResult):
                        self.from_result.add(mid)
            elif isinstance(value, _CALLBACKS):
                callback_of = message_id(value)
                context = tracing.context(event.message.headers)
                if callback_of is not None and context is not None:
                    self.links.setdefault(callback_of, []).append(context)

    def start(self, mid: str) -> tuple[str | None, Headers]:
        """Start the message's span; returns the SMS context for the table and the headers of
        the lifecycle record."""
        tracing = self.tracing
        context = self.sms.get(mid)
        kept: str | None
        if context is not None:
            kept = tracing.traceparent(context)
        else:
            kept = self.stored.get(mid)
            context = tracing.parse(kept)
        span = tracing.span(
            "sms.correlate",
            parent=context,
            links=self.links.get(mid, ()),
            kind="consumer",
            attributes={"ardary.id_sms_api": mid, "ardary.callbacks": len(self.links.get(mid, ()))},
        )
        self.spans.append(span)
        return kept, tracing.headers(span)

    def end(self) -> None:
        """End the batch's spans (its records are acknowledged)."""
        for span in self.spans:
            span.end()
        self.spans.clear()


def overdue_headers(tracing: Tracing, value: Mapping[str, Any] | None, mid: str) -> Headers:
    """Headers of an overdue record the timer emits: a short `sms.overdue` span under the SMS's
    kept context (a new trace when none is kept)."""
    span = tracing.span(
        "sms.overdue",
        parent=tracing.parse(stored_trace(value)),
        attributes={"ardary.id_sms_api": mid},
    )
    headers = tracing.headers(span)
    span.end()
    return headers
