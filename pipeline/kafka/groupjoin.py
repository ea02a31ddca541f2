"""kafka-python consumer-group fixes the sink relies on (see `resume_dropped_join`)."""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["resume_dropped_join"]

log = logging.getLogger("pipeline.sink")


def resume_dropped_join(consumer: Any) -> None:
    """Work around kafka-python 3.0.12 losing a group join that outlives a `poll()` timeout.

    A poll whose timer runs out while JoinGroup/SyncGroup is in flight leaves the join running;
    if the leader's own assignment made `need_rejoin()` false meanwhile, the next polls never
    pick the finished join up and the member keeps its old (often empty) assignment for good —
    the demo's sink sat idle 60 s this way. Asking for a rejoin makes the next poll join again.
    """
    coordinator: Any = getattr(consumer, "_coordinator", None)
    task = getattr(coordinator, "_join_task", None)
    if task is not None and task.is_done and not coordinator.need_rejoin():
        log.info("group join finished after its poll timed out: rejoining")
        coordinator.request_rejoin()
