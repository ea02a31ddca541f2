"""kafka-python consumer-group fix the sink relies on, and the check that it still applies.

`resume_dropped_join` reads private parts of kafka-python 3.0.12's group coordinator. Had a later
version renamed them, the fix would silently do nothing and the sink would again sit idle after
a slow join; so `verify_group_join_internals` is called when the sink starts (and by
`tests/unit/test_groupjoin.py` against the real `KafkaConsumer`) and raises a clear error naming
what moved. The fix itself is proved by `tests/integration/test_sink_rebalance.py`.
"""

from __future__ import annotations

import logging
from importlib import metadata
from typing import Any

from pipeline.errors import ConfigError

__all__ = ["GroupJoinInternalsChanged", "resume_dropped_join", "verify_group_join_internals"]

log = logging.getLogger("pipeline.sink")

# What resume_dropped_join touches: consumer._coordinator, coordinator._join_task (None or a
# kafka.future.Future with `is_done`), coordinator.need_rejoin(), coordinator.request_rejoin().
_COORDINATOR = "_coordinator"
_JOIN_TASK = "_join_task"
_COORDINATOR_METHODS = ("need_rejoin", "request_rejoin")


class GroupJoinInternalsChanged(ConfigError):
    """The installed kafka-python no longer has what `resume_dropped_join` relies on."""


def _kafka_python_version() -> str:
    try:
        return metadata.version("kafka-python")
    except metadata.PackageNotFoundError:
        return "unknown"


def _missing(consumer: Any) -> str | None:
    """What of the touched internals is missing, or None when all are there."""
    coordinator = getattr(consumer, _COORDINATOR, None)
    if coordinator is None:
        return f"KafkaConsumer.{_COORDINATOR}"
    cls = type(coordinator).__name__
    if not hasattr(coordinator, _JOIN_TASK):
        return f"{cls}.{_JOIN_TASK}"
    for name in _COORDINATOR_METHODS:
        if not callable(getattr(coordinator, name, None)):
            return f"{cls}.{name}()"
    from kafka.future import Future

    if not hasattr(Future(), "is_done"):  # what the join task is
        return "kafka.future.Future.is_done"
    return None


def verify_group_join_internals(consumer: Any) -> None:
    """Raise `GroupJoinInternalsChanged` unless `resume_dropped_join` can work on `consumer`.

    Needs a consumer built with a `group_id` (kafka-python makes the coordinator then); it does
    not talk to the broker.
    """
    missing = _missing(consumer)
    if missing is not None:
        raise GroupJoinInternalsChanged(
            f"kafka-python {_kafka_python_version()} has no {missing}: the sink's group-join "
            "fix (pipeline/kafka/groupjoin.py, verified on kafka-python 3.0.12) needs it; "
            "install kafka-python 3.0.12 or adapt the fix"
        )


def resume_dropped_join(consumer: Any) -> None:
    """Work around kafka-python 3.0.12 losing a group join that outlives a `poll()` timeout.

    A poll whose timer runs out while JoinGroup/SyncGroup is in flight leaves the join running;
    if the leader's own assignment made `need_rejoin()` false meanwhile, the next polls never
    pick the finished join up and the member keeps its old (often empty) assignment for good —
    the demo's sink sat idle 60 s this way. Asking for a rejoin makes the next poll join again.
    Runs after every poll: plain attribute reads, no lookups by name.
    """
    coordinator = consumer._coordinator
    task = coordinator._join_task
    if task is not None and task.is_done and not coordinator.need_rejoin():
        log.info("group join finished after its poll timed out: rejoining")
        coordinator.request_rejoin()
