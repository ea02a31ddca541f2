"""What the outbound agent holds between receiving a request and acking it, shared by its parts.

Intake adds requests, dispatch sends them, completion removes them and releases acks; this is
the state the three share (the entries, the ack order, the rebalance generation) and the
back-pressure they obey: requests in work plus finished events held for ordered acks stay
below `max_pending`, so a slow Ardary or a stuck partition stops the reading, not the memory.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from pipeline.core.ackorder import AckOrder
from pipeline.core.sending import Prepared
from pipeline.records import SendRequest

__all__ = ["Entry", "Progress"]


@dataclass(slots=True)
class Entry:
    """A request waiting for (or in) its Ardary call, with the events that carried it.

    `duplicates` are later events of the same id that arrived meanwhile: one send, one result,
    and every one of those events acked with it. `generation` is the agent's rebalance count
    when it arrived: a batch of an earlier generation is not sent (its partition was revoked).
    `span`: the request's span while tracing is on (`pipeline.tracing`), ended by completion.
    """

    event: Any
    prepared: Prepared
    generation: int
    duplicates: list[Any] = field(default_factory=list)
    span: Any = None

    @property
    def request(self) -> SendRequest:
        return self.prepared.request


class Progress:
    """Requests in work by id, the events held for in-order acks, and the room left for more."""

    def __init__(self, max_pending: int) -> None:
        self.max_pending = max_pending
        self.pending: dict[str, Entry] = {}
        self.order: AckOrder[Any] = AckOrder()
        self.generation = 0
        self._room = asyncio.Event()

    def has_room(self) -> bool:
        """Back-pressure: requests in work plus finished events held for ordered acks."""
        return len(self.pending) + self.order.held < self.max_pending

    async def wait_for_room(self) -> None:
        """Return once another request may be taken in."""
        while not self.has_room():
            self._room.clear()
            await self._room.wait()

    def room_made(self) -> None:
        """Wake the reader if work finished (or was dropped) made room."""
        if self.has_room():
            self._room.set()

    def revoked(self, partitions: list[int], dropped: list[Entry]) -> None:
        """Forget revoked partitions' buffered entries and held acks; a new generation starts."""
        self.generation += 1
        self.abandon(dropped)
        for partition in partitions:
            self.order.forget(partition)
        self._room.set()

    def abandon(self, entries: list[Entry]) -> None:
        """Forget entries that will never be sent here (their partition was revoked).

        An entry left behind would outlive its generation: the same request read again after
        the seek would join it as a duplicate, never finish, and hold every later ack of its
        partition, so the group's committed offset would stop there for good.
        """
        pending = self.pending
        for entry in entries:
            if pending.get(entry.request.id_sms_api) is entry:
                del pending[entry.request.id_sms_api]
            if entry.span is not None:  # the next owner traces the request again
                entry.span.set_attribute("ardary.abandoned", True)
                entry.span.end()
        self.room_made()
