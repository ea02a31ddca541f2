"""Every long-running command starts from an empty directory, as a new user would start it.

Each command runs with an empty working directory, no `.env` and none of the pipeline's
variables but the broker address, and must come up: the worker, the ingress and the simulator
answer `/healthz`, the sink logs its readiness line (`sink_ready`), the broker prints its ready
line. Whatever local state it keeps is created there, parents included. The flags passed are
ports, a topic prefix and a consumer group, so the test shares the session broker with others
safely; none of them chooses a directory.

A wrong setting stops every command with exit code 2 and one line naming it, never a traceback.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pipeline.devtools.localkafka import KAFKA_VERSION
from pipeline.kafka.admin import ensure_topics
from pipeline.kafka.worker import READY_LINE
from pipeline.procutil import free_port
from pipeline.sinks.runner import READY_EVENT
from tests.environ import new_user_env
from tests.polling import wait_until

pytestmark = pytest.mark.integration


@dataclass
class Command:
    """One `ardary-pipeline` process started in `cwd`, its output in a log outside it."""

    cwd: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"exited {self.proc.returncode}:\n{self.output()[-3000:]}")
        return True


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Command]]:
    """`start(args, **env)`: run `ardary-pipeline ARGS` from a fresh empty directory."""
    started: list[Command] = []

    def run(args: list[str], **settings: str) -> Command:
        cwd = tmp_path / f"cwd-{len(started)}"
        cwd.mkdir()
        log = tmp_path / f"command-{len(started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline", *args],
                cwd=cwd,
                env=new_user_env(**settings),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        command = Command(cwd, log, proc)
        started.append(command)
        return command

    yield run
    for command in started:
        if command.proc.poll() is None:
            command.proc.send_signal(signal.SIGTERM)
            try:
                command.proc.wait(30)
            except subprocess.TimeoutExpired:
                command.proc.kill()
                command.proc.wait(10)


@pytest.fixture
def topics(kafka_bootstrap: str, unique_prefix: str) -> dict[str, str]:
    """The broker address and a prefix whose topics exist: all a command is given."""
    ensure_topics(kafka_bootstrap, unique_prefix, 2)
    return {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "PIPELINE_TOPIC_PREFIX": unique_prefix}


def healthy(command: Command, port: int) -> Callable[[], bool]:
    def probe() -> bool:
        command.alive()
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    return probe


def logged(command: Command, line: str) -> Callable[[], bool]:
    return lambda: command.alive() and line in command.output()


def test_worker_starts_from_an_empty_directory(
    start: Callable[..., Command], topics: dict[str, str]
) -> None:
    port = free_port()
    worker = start(["worker", "--web-port", str(port)], **topics)
    wait_until(logged(worker, READY_LINE), 120, "the worker's ready line")
    wait_until(healthy(worker, port), 30, "the worker's /healthz")
    assert (worker.cwd / "data" / "faust").is_dir()  # the default --data-dir, parents made
    assert "Traceback" not in worker.output()


def test_sink_starts_from_an_empty_directory_and_says_when_it_is_ready(
    start: Callable[..., Command], topics: dict[str, str], group_id: str
) -> None:
    sink = start(["sink", "--group", group_id, "--web-port", str(free_port())], **topics)
    ready = wait_until(lambda: sink.alive() and _event(sink, READY_EVENT), 60, "sink_ready")
    assert ready["group"] == group_id and ready["partitions"] > 0
    assert (sink.cwd / "data" / "warehouse.duckdb").is_file()  # the default WAREHOUSE_URL
    assert "Traceback" not in sink.output()


def test_ingress_starts_from_an_empty_directory(
    start: Callable[..., Command], topics: dict[str, str]
) -> None:
    port = free_port()
    ingress = start(["ingress", "--port", str(port)], **topics)
    wait_until(healthy(ingress, port), 60, "the ingress's /healthz")
    assert (ingress.cwd / "data" / "ingress-spool").is_dir()  # the default INGRESS_SPOOL_DIR
    assert "Traceback" not in ingress.output()


def test_simulator_starts_from_an_empty_directory(start: Callable[..., Command]) -> None:
    port = free_port()
    simulator = start(["simulator", "--port", str(port)])
    wait_until(healthy(simulator, port), 60, "the simulator's /healthz")
    assert "Traceback" not in simulator.output()


def test_broker_starts_from_an_empty_directory_with_a_nested_data_dir(
    start: Callable[..., Command],
) -> None:
    port = free_port()
    broker = start(["broker", "--port", str(port), "--data-dir", "state/kafka"])
    ready = f"Kafka {KAFKA_VERSION} ready at 127.0.0.1:{port}"
    wait_until(logged(broker, ready), 120, "the broker's ready line")
    assert (broker.cwd / "state" / "kafka" / "node-1" / "logs" / "meta.properties").is_file()
    broker.proc.send_signal(signal.SIGINT)
    assert broker.proc.wait(30) == 0, broker.output()[-2000:]


def _event(command: Command, name: str) -> dict[str, object] | None:
    """The first JSON log line of `command` whose event is `name`."""
    for line in command.output().splitlines():
        if line.startswith("{") and f'"{name}"' in line:
            entry: dict[str, object] = json.loads(line)
            if entry.get("event") == name:
                return entry
    return None


# ---- a wrong setting: exit 2, one line naming it --------------------------------------------

BROKER = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}  # never contacted: the setting fails first
WRONG = [
    pytest.param(["worker"], {}, "KAFKA_BOOTSTRAP_SERVERS", id="worker-no-broker"),
    pytest.param(
        ["worker"],
        {**BROKER, "WAREHOUSE_URL": "mysql://x"},
        "WAREHOUSE_URL",
        id="worker-bad-warehouse",
    ),
    pytest.param(
        ["worker", "--data-dir", "a-file/faust"],
        BROKER,
        "--data-dir",
        id="worker-data-dir-under-a-file",
    ),
    pytest.param(["sink"], {}, "KAFKA_BOOTSTRAP_SERVERS", id="sink-no-broker"),
    pytest.param(
        ["sink"], {**BROKER, "WAREHOUSE_URL": "mysql://x"}, "WAREHOUSE_URL", id="sink-bad-warehouse"
    ),
    pytest.param(
        ["sink"],
        {**BROKER, "WAREHOUSE_URL": "duckdb:///a-file/w.duckdb"},
        "WAREHOUSE_URL",
        id="sink-warehouse-under-a-file",
    ),
    pytest.param(
        ["sink", "--url", "parquet:///a-file"], BROKER, "--url", id="sink-parquet-dir-is-a-file"
    ),
    pytest.param(["ingress"], {}, "KAFKA_BOOTSTRAP_SERVERS", id="ingress-no-broker"),
    pytest.param(
        ["ingress"],
        {**BROKER, "WAREHOUSE_URL": "mysql://x"},
        "WAREHOUSE_URL",
        id="ingress-bad-warehouse",
    ),
    pytest.param(
        ["ingress"],
        {**BROKER, "INGRESS_SPOOL_DIR": "a-file/spool"},
        "INGRESS_SPOOL_DIR",
        id="ingress-spool-under-a-file",
    ),
    pytest.param(["broker", "--data-dir", "a-file"], {}, "--data-dir", id="broker-data-dir-file"),
    pytest.param(
        ["simulator", "--rate-limit", "fast"], {}, "--rate-limit", id="simulator-bad-rate"
    ),
    pytest.param(
        ["simulator", "--callback-url", "localhost:8080/cb"],
        {},
        "--callback-url",
        id="simulator-callback-url-without-scheme",
    ),
    pytest.param(
        ["demo", "--runs-dir", "a-file/runs"], {}, "--runs-dir", id="demo-runs-dir-under-a-file"
    ),
]


@pytest.mark.parametrize(("args", "settings", "named"), WRONG)
def test_a_wrong_setting_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], settings: dict[str, str], named: str
) -> None:
    (tmp_path / "a-file").write_text("not a directory\n")
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=tmp_path,
        env=new_user_env(**settings),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"ardary-pipeline: error: {named}"), lines[0]
    assert "Traceback" not in done.stdout + done.stderr
