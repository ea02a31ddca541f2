"""aiokafka's idempotent producer made to recover after a failed batch: a new producer id.

aiokafka 0.14 gives a batch its sequence number when its sender takes it and never takes it
back. A batch that then fails — expired while its partition had no leader (a broker away
longer than `request_timeout_ms`), or refused with OutOfOrderSequenceNumber, UnknownProducerId
or InvalidProducerEpoch — leaves a gap the broker never fills, and every later batch of that
partition is refused with OutOfOrderSequenceNumber for as long as the process lives. The Java
client resets its producer id in that case (KIP-360); `install()` makes aiokafka do the same.
Callers send the failed records again (`resendable`); consumers de-duplicate. See
docs/kafka-adaptations.md.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["RESET_ERRORS", "install", "installed", "resendable", "reset_producer_id"]

RESET_ERRORS = frozenset(
    {
        # aiokafka's names, then kafka-python's
        "OutOfOrderSequenceNumber",
        "UnknownProducerId",
        "InvalidProducerEpoch",
        "ProducerFenced",
        "OutOfOrderSequenceNumberError",
        "UnknownProducerIdError",
        "InvalidProducerEpochError",
        "ProducerFencedError",
    }
)
"""Names of the errors that say the broker no longer accepts the producer's id or sequence."""

_RESEND_ALSO = frozenset({"KafkaTimeoutError"})  # a batch expired before it could be sent

_ORIGINAL = "_ardary_original_pop_batch"


def reset_producer_id(txn_manager: Any) -> None:
    """Forget an idempotent (non-transactional) producer's id and sequences.

    aiokafka's sender asks for a producer id at the top of every loop when it has none
    (`Sender._maybe_wait_for_pid`), so the next batch it drains starts a new id at sequence 0.
    """
    from aiokafka.producer.transaction_manager import (
        NO_PRODUCER_EPOCH,
        NO_PRODUCER_ID,
        PidAndEpoch,
    )

    txn_manager._pid_and_epoch = PidAndEpoch(NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
    txn_manager._pid_waiter = asyncio.get_running_loop().create_future()
    txn_manager._sequence_numbers.clear()


def _pop_batch(self: Any, tp: Any) -> Any:
    """`MessageAccumulator._pop_batch`, and a reset of the producer id if the batch fails."""
    txn = self._txn_manager
    first = (
        txn is not None and txn.transactional_id is None and self._batches[tp][0].retry_count == 0
    )
    batch = getattr(type(self), _ORIGINAL)(self, tp)
    if first:
        pid = txn.producer_id

        def on_done(future: asyncio.Future[Any]) -> None:
            # only the id the batch was sent with: a late failure of a batch sent under an
            # older id must not reset the new one again
            failed = not future.cancelled() and future.exception() is not None
            if failed and txn.producer_id == pid and txn.has_pid():
                reset_producer_id(txn)

        batch.future.add_done_callback(on_done)
    return batch


def install() -> None:
    """Patch aiokafka's accumulator once per process (idempotent)."""
    from aiokafka.producer.message_accumulator import MessageAccumulator

    if installed():
        return
    setattr(MessageAccumulator, _ORIGINAL, MessageAccumulator._pop_batch)
    MessageAccumulator._pop_batch = _pop_batch


def installed() -> bool:
    """Whether `install()` ran in this process."""
    from aiokafka.producer.message_accumulator import MessageAccumulator

    return hasattr(MessageAccumulator, _ORIGINAL)


def resendable(exc: BaseException) -> bool:
    """Whether records whose batch failed with `exc` should be sent again.

    True for a retriable Kafka error (the batch expired without a leader, a request timed out)
    and for the errors after which the producer took a new id (`RESET_ERRORS`); False for a
    refusal that a resend would meet again (a record too large, an authorization failure).
    """
    from aiokafka.errors import KafkaError

    name = type(exc).__name__
    if name in RESET_ERRORS or name in _RESEND_ALSO:
        return True
    return isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False))
