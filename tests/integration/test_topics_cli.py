"""`ardary-pipeline topics create|list` against the real broker: idempotent, configs applied."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pipeline.kafka.admin import describe_topics
from pipeline.topics import TOPICS

pytestmark = pytest.mark.integration


def run(args: list[str], bootstrap: str, prefix: str, partitions: int = 3) -> str:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "PIPELINE_TOPIC_PREFIX": prefix,
        "PIPELINE_PARTITIONS": str(partitions),
    }
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_topics_create_twice_is_idempotent(kafka_bootstrap: str, unique_prefix: str) -> None:
    first = run(["topics", "create"], kafka_bootstrap, unique_prefix)
    assert f"{len(TOPICS)} created, 0 already present" in first
    before = describe_topics(kafka_bootstrap, unique_prefix)
    second = run(["topics", "create"], kafka_bootstrap, unique_prefix)
    assert f"0 created, {len(TOPICS)} already present" in second
    after = describe_topics(kafka_bootstrap, unique_prefix)
    assert before == after  # no change at all
    by_name = {t.name: t for t in after}
    assert by_name[f"{unique_prefix}sms.lifecycle"].config["cleanup.policy"] == "compact"
    assert by_name[f"{unique_prefix}sms.optouts"].config["cleanup.policy"] == "compact"
    assert {by_name[f"{unique_prefix}{t.name}"].partitions for t in TOPICS if t.co_partitioned} == {
        3
    }


def test_topics_list_prints_the_broker_state(kafka_bootstrap: str, unique_prefix: str) -> None:
    missing = run(["topics", "list"], kafka_bootstrap, unique_prefix)
    assert missing.count("missing") == len(TOPICS)
    run(["topics", "create"], kafka_bootstrap, unique_prefix, partitions=2)
    listed = run(["topics", "list"], kafka_bootstrap, unique_prefix)
    assert "missing" not in listed
    line = next(x for x in listed.splitlines() if x.startswith(f"{unique_prefix}sms.lifecycle "))
    assert " 2 " in line and "cleanup.policy=compact" in line
