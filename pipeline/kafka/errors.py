"""The one place where the Kafka clients' exceptions become the pipeline's.

Every call into aiokafka, kafka-python or faust that can fail on the broker's account runs inside
`kafka_errors(action)`: what leaves it is a `PipelineError` — `BrokerError("<action>: <Name>")`,
retriable unless Kafka says asking again cannot help (an authorization failure, say) — never a
client library's own class. `is_retriable` is the one rule for "not yet" in every wait.
The mapping is a table, first match wins, in the style of httpx's `map_exceptions`
(`httpx/_transports/default.py`); the client libraries are looked up only once one of them has
raised, so a process that never imported kafka-python does not import it here.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from pipeline.errors import BrokerError, PipelineError

__all__ = ["is_retriable", "kafka_errors", "map_kafka_error"]

# (predicate, how to build our error); the first predicate that holds wins.
_Mapper = Callable[[BaseException, str], PipelineError]


def _client_error(exc: BaseException) -> bool:
    """An error of either Kafka client, or a connection failure beneath one."""
    if isinstance(exc, ConnectionError):
        return True
    for module in ("aiokafka.errors", "kafka.errors"):
        errors = sys.modules.get(module)
        if errors is not None and isinstance(exc, errors.KafkaError):
            return True
    return False


# client errors that mean "not now" although their class does not say `retriable`
_ALSO_RETRIABLE = frozenset({"KafkaTimeoutError", "BrokerNotAvailableError", "NoBrokersAvailable"})


def _client_retriable(exc: BaseException) -> bool:
    """Kafka's own verdict (the error class's `retriable`); a lost connection, a timeout and a
    broker not available count as retriable too."""
    if isinstance(exc, ConnectionError | TimeoutError) or type(exc).__name__ in _ALSO_RETRIABLE:
        return True
    return bool(getattr(exc, "retriable", False))


def _broker_error(exc: BaseException, message: str) -> PipelineError:
    error = BrokerError(message)
    if not _client_retriable(exc):
        error.retriable = False  # e.g. an authorization failure: asking again changes nothing
    return error


_MAP: list[tuple[Callable[[BaseException], bool], _Mapper]] = [
    (_client_error, _broker_error),
]


def map_kafka_error(
    exc: BaseException, action: str, *, detail: bool = False
) -> PipelineError | None:
    """The pipeline error for a client exception raised while doing `action`; None if foreign.

    The message is ``"<action>: <ExceptionName>"`` (plus ``": <text>"`` with `detail`); it never
    carries a secret, as no client setting is part of it.
    """
    if isinstance(exc, PipelineError):
        return exc
    for matches, build in _MAP:
        if matches(exc):
            text = f"{action}: {type(exc).__name__}"
            if detail and str(exc):
                text = f"{text}: {exc}"
            return build(exc, text)
    return None


def is_retriable(exc: BaseException) -> bool:
    """Whether `exc` means "not yet" to code that waits on Kafka within a deadline.

    The one rule for every wait on a group's offsets or a partition's leader: a retriable error
    of either client (NotCoordinator, CoordinatorLoadInProgress, LeaderNotAvailable,
    NotLeaderForPartition, a request timed out), a lost connection, or a retriable
    `PipelineError` (what `kafka_errors` made of one). Anything else is a real failure.
    """
    if isinstance(exc, PipelineError):
        return bool(exc.retriable)
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    return _client_error(exc) and _client_retriable(exc)


@contextlib.contextmanager
def kafka_errors(action: str, *, detail: bool = False) -> Iterator[None]:
    """Run a block that talks to Kafka; a client error leaves it as a `PipelineError`.

    `action` says what was being done ("cannot reach Kafka at host:9092"); other exceptions
    (bugs, cancellation) pass through unchanged.
    """
    try:
        yield
    except PipelineError:
        raise
    except Exception as exc:
        mapped = map_kafka_error(exc, action, detail=detail)
        if mapped is None:
            raise
        raise mapped from exc
