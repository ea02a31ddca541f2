"""The smaller faust adaptations of `pipeline.kafka` are in use and do what they say."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import faust
import pytest
from faust.types import TP

from pipeline.agents.app import create_app
from pipeline.kafka.lag import committed_offsets
from pipeline.kafka.worker import PipelineWorker
from pipeline.logs import RepeatFilter
from pipeline.settings import load_settings


@pytest.fixture
def app() -> Any:
    app, _ = create_app(load_settings(kafka_bootstrap_servers="127.0.0.1:1"), agents=[])
    return app


@pytest.fixture
def restore_logging() -> Iterator[None]:
    names = ("", "aiokafka", "kafka", "faust", "mode")
    levels = {name: logging.getLogger(name).level for name in names}
    handlers = list(logging.getLogger().handlers)
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)


@pytest.mark.usefixtures("restore_logging")
def test_the_worker_sets_the_client_loggers_to_its_level_not_debug(app: Any) -> None:
    worker = PipelineWorker(app, loglevel="warn", quiet=True)
    worker._setup_logging()
    assert logging.getLogger().level == logging.WARNING
    for name in ("aiokafka", "kafka", "faust", "mode"):
        # faust leaves them at DEBUG: every message sent built ~8 debug records for nothing
        assert logging.getLogger(name).level == logging.WARNING, name
    assert not logging.getLogger("aiokafka").isEnabledFor(logging.DEBUG)


@pytest.mark.usefixtures("restore_logging")
def test_the_worker_passes_a_kafka_clients_repeated_line_once_per_window(app: Any) -> None:
    worker = PipelineWorker(app, loglevel="info", quiet=True)
    worker._setup_logging()
    worker._setup_logging()  # idempotent: one filter per handler
    handlers = logging.getLogger().handlers
    assert handlers
    for handler in handlers:
        assert [type(f) for f in handler.filters].count(RepeatFilter) == 1
    record = logging.LogRecord(
        "aiokafka.consumer.fetcher", logging.ERROR, __file__, 1, "Failed fetch from %s", (2,), None
    )
    (handler, *_) = handlers
    assert handler.filter(record)
    assert not handler.filter(record)  # the same line again within the window is held back


def test_lag_reads_the_offsets_faust_committed(app: Any) -> None:
    consumer = app.consumer
    assert isinstance(app.consumer, faust.transport.drivers.aiokafka.Consumer)
    assert dict(committed_offsets(consumer)) == {}
    tp = TP("t.sms.send-requests", 2)
    consumer._committed_offset[tp] = 41  # what faust records after a commit
    assert committed_offsets(consumer)[tp] == 41


def test_a_dead_worker_is_evicted_in_15_seconds_not_faust_s_60(app: Any) -> None:
    # A worker SIGKILLed (or stopped with the cluster) never leaves its group: every rebalance
    # waits for its session to expire. The chaos run measured faust's 60-s default as a 52-s
    # group join after the cluster came back.
    conf = app.conf
    assert conf.broker_session_timeout == 15.0
    assert conf.broker_heartbeat_interval * 5 <= conf.broker_session_timeout
