"""A topic that appears after the worker's group was assigned is read within seconds.

A worker's first start creates its changelogs moments before its consumer joins; when the
leader's metadata does not list one yet, faust leaves it out of the assignment and aiokafka looks
again only after `consumer_metadata_max_age_ms` (5 minutes): `bench e2e`'s worker then sent every
message and processed nothing else for the whole run (`pipeline.kafka.assignor`). Here the race
is made certain: a real worker subscribes to a topic that does not exist yet (the broker does not
auto-create), the topic is created once the worker is ready, and a record on it must reach the
agent within 45 s — without the assignor's refresh it waits the full five minutes.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaProducer

from pipeline.kafka.worker import READY_LINE
from pipeline.procutil import die_with_parent, free_port
from tests.polling import wait_until
from tests.procs import close

pytestmark = pytest.mark.integration

_WORKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from pipeline.agents.app import create_app
    from pipeline.kafka.worker import PipelineWorker
    from pipeline.settings import load_settings

    bootstrap, app_id, topic, out, data_dir, port = sys.argv[1:7]
    settings = load_settings(kafka_bootstrap_servers=bootstrap)
    app, _ = create_app(
        settings, app_id=app_id, data_dir=Path(data_dir), web_port=int(port), agents=[]
    )
    late = app.topic(topic, key_type=bytes, value_type=bytes, value_serializer="raw")

    @app.agent(late)
    async def seen(stream):
        async for value in stream:
            with open(out, "a") as f:
                f.write(value.decode() + "\\n")

    PipelineWorker(app, loglevel="info", quiet=True).execute_from_commandline()
    """
)


def test_a_topic_created_after_the_group_was_assigned_is_read(
    kafka_bootstrap: str,
    unique_prefix: str,
    make_topic: Callable[..., str],
    tmp_path: Path,
) -> None:
    topic = f"{unique_prefix}late"  # make_topic gives this name once it creates it
    out, log_path = tmp_path / "seen.txt", tmp_path / "worker.log"
    argv = [
        sys.executable,
        "-c",
        _WORKER,
        kafka_bootstrap,
        f"{unique_prefix}workers",
        topic,
        str(out),
        str(tmp_path / "data"),
        str(free_port()),
    ]
    (tmp_path / "data").mkdir()
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent()
        )
    try:
        wait_until(lambda: READY_LINE in log_path.read_text(), 90, "the worker to be ready")
        log_text = log_path.read_text()
        assert "Ignoring missing topic" in log_text, "the group was assigned with the topic"
        assert make_topic("late", partitions=2) == topic
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
        try:
            for n in range(4):
                producer.send(topic, key=f"k{n}".encode(), value=f"v{n}".encode())
            producer.flush(15)
        finally:
            producer.close()

        def read() -> list[str]:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            return sorted(out.read_text().split()) if out.exists() else []

        wait_until(lambda: read() == ["v0", "v1", "v2", "v3"], 45, "the late topic's records")
    finally:
        close(proc)
