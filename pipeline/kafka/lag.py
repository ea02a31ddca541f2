"""What a faust worker has committed, for the consumer-lag gauges (`pipeline.agents.liveness`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["committed_offsets"]


def committed_offsets(consumer: Any) -> Mapping[Any, int]:
    """The offsets faust last committed, per topic-partition.

    faust-streaming 0.15.3 keeps them in `Consumer._committed_offset` and offers no public
    accessor; asking the broker instead would cost a round trip per refresh.
    """
    committed: Mapping[Any, int] = consumer._committed_offset
    return committed
