"""The Faust worker process: faust's `Worker` with sane logger levels and a readiness line."""

from __future__ import annotations

import logging
import sys

import faust

from pipeline.logs import RepeatFilter

__all__ = ["READY_LINE", "PipelineWorker"]

READY_LINE = '{"event": "worker_ready"}'

_LEVELS = {
    "crit": logging.CRITICAL,
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}


class PipelineWorker(faust.Worker):  # type: ignore[misc]
    """faust.Worker that sets logger levels properly and announces readiness on stderr."""

    def _setup_logging(self) -> None:
        # faust filters at the handler but leaves every logger at DEBUG, so aiokafka and
        # faust build ~8 debug records per message sent (measured) only to drop them.
        super()._setup_logging()
        level = _LEVELS.get(str(self.loglevel).lower(), logging.WARNING)
        logging.getLogger().setLevel(level)
        for name in ("aiokafka", "kafka", "faust", "mode"):
            logging.getLogger(name).setLevel(max(level, logging.INFO))
        # A broker down logs "Failed fetch messages" / "Unable connect" many times a second
        # (hundreds of lines a second per worker, measured): once per window, with the count.
        for handler in logging.getLogger().handlers:
            if not any(isinstance(f, RepeatFilter) for f in handler.filters):
                handler.addFilter(RepeatFilter())

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        print(READY_LINE, file=sys.stderr, flush=True)
