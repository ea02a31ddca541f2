"""Shared fixtures: one Kafka broker per test session, uuid-named topics and groups per test.

The broker is started lazily, only when a test asks for `kafka_bootstrap` (unit tests never start
a JVM). Where it comes from, first match wins:

1. `KAFKA_BOOTSTRAP_SERVERS` is set: that cluster is used as it is;
2. a Docker engine answers (and `ARDARY_TEST_BROKER` is not `local`): the apache/kafka image of
   the local broker's version, with its settings (`tests/docker_broker.py`);
3. otherwise the project's own `LocalKafka` (Apache Kafka 4.1.2 in a JVM, Java 17+ and Maven).

`ARDARY_TEST_BROKER=local` or `=docker` forces the choice between 2 and 3.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple
from uuid import uuid4

# Imported here, not first by hypothesis's plugin at the session's end: compiling it then, with
# faust objects still being finalised, tripped CPython 3.11.7's AST recursion check (SystemError).
import hypothesis  # noqa: F401
import pytest

from pipeline.devtools.localkafka import JVM_OPTIONS_VARIABLE, LocalKafka
from pipeline.devtools.registry import LocalRegistry
from tests import polling
from tests.broker_command import BrokerCommand
from tests.docker_broker import container_broker
from tests.procs import java_children

# kafka-python 3.0 loads its protocol schemas at import time with the deprecated
# `importlib.resources.read_text`; import it once here so `filterwarnings = error` does not turn
# that into a collection error in every module that uses it. (The durable fix is a
# `ignore::DeprecationWarning:kafka.*` entry in pyproject's filterwarnings.)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import kafka.admin  # noqa: F401

# Every local Kafka node of the suite (in this process or a command it starts) runs with the
# client compiler only and the serial collector: half the CPU to start, less idle, on a 2-core box
# that starts dozens of them (pipeline/devtools/localkafka.py). A value set outside wins.
os.environ.setdefault(JVM_OPTIONS_VARIABLE, "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")

# `make test` runs the suite as two pytest processes at once (`tests/shards.py`): `--shard 1/2`
# takes the tests of the shared three-node SASL_SSL cluster and schema registry (so each starts
# once), the chaos run (its own cluster) and the broker-free tests; `--shard 2/2` the other
# integration tests. No option: every test.
_SHARED_SERVERS = frozenset({"secured_cluster", "schema_registry"})
# (and a few long integration modules, so both halves end about together: 10:50 vs 12:09 in a
# local run before test_outbound_rate.py came here, 2026-12-08)
_FIRST_SHARD_MODULES = frozenset(
    {
        "test_chaos.py",
        "test_ingress_spool.py",
        "test_local_broker.py",
        "test_bench_e2e.py",
        "test_outbound_rate.py",
    }
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--shard", default=None, help="N/2: run only that half of the suite")


def shard_of(item: pytest.Item) -> int:
    """1 or 2: which of the two processes runs `item` (see above)."""
    if _SHARED_SERVERS & set(getattr(item, "fixturenames", ())):
        return 1
    if item.path.name in _FIRST_SHARD_MODULES or "integration" not in item.path.parts:
        return 1
    return 2


def _start_rank(items: list[pytest.Item]) -> dict[Path, int]:
    """Per module: 0 broker-free, 1 integration, 2 uses the shared cluster or registry.

    Run in that order, the shared JVMs (four, ~0.15 of a core idle or more) start only after every
    other test and are stopped at the session's end, instead of idling under the unit tests.
    Per module, so a module's tests stay together (its module fixtures start once).
    """
    rank: dict[Path, int] = {}
    for item in items:
        mine = 0
        if "integration" in item.path.parts:
            mine = 2 if _SHARED_SERVERS & set(getattr(item, "fixturenames", ())) else 1
        rank[item.path] = max(rank.get(item.path, 0), mine)
    return rank


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    shard = config.getoption("--shard")
    if shard:
        wanted = int(str(shard).split("/", 1)[0])
        keep = [item for item in items if shard_of(item) == wanted]
        dropped = [item for item in items if shard_of(item) != wanted]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = keep
    rank = _start_rank(items)
    items.sort(key=lambda item: rank[item.path])  # stable: each module keeps its order


def _docker_answers(timeout: float = 5.0) -> bool:
    """Whether a Docker engine is reachable right now (not merely whether the CLI exists)."""
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        done = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of the session's Kafka broker (see the module docstring)."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if configured:
        yield configured
        return
    choice = os.environ.get("ARDARY_TEST_BROKER", "auto").strip().lower()
    if choice == "docker" or (choice == "auto" and _docker_answers()):
        with container_broker() as bootstrap:
            yield bootstrap
        return
    with LocalKafka() as kafka:
        yield kafka.bootstrap


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> Iterator[Any]:
    """A kafka-python admin client on the session broker."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="ardary-tests-admin")
    yield admin
    admin.close()


@pytest.fixture
def unique_prefix() -> str:
    """A prefix no other test uses, for topic names (and `PIPELINE_TOPIC_PREFIX`)."""
    return f"t{uuid4().hex[:8]}."


@pytest.fixture
def group_id() -> str:
    """A consumer group id no other test uses."""
    return f"g-{uuid4().hex}"


@pytest.fixture
def make_topic(kafka_admin: Any, unique_prefix: str) -> Iterator[Callable[..., str]]:
    """Factory: `make_topic(name, partitions=1, config=None)` creates `<unique_prefix><name>`.

    Returns the full name once every partition has a leader; the topics are deleted (best
    effort) when the test ends.
    """
    created: list[str] = []

    def make(name: str, partitions: int = 1, config: dict[str, str] | None = None) -> str:
        topic = f"{unique_prefix}{name}"
        kafka_admin.create_topics(
            {
                topic: {
                    "num_partitions": partitions,
                    "replication_factor": 1,
                    "configs": dict(config or {}),
                }
            },
            timeout_ms=15_000,
            wait_for_metadata=True,
        )
        created.append(topic)
        return topic

    yield make
    if created:
        with contextlib.suppress(Exception):
            kafka_admin.delete_topics(created, timeout_ms=10_000, raise_errors=False)


@pytest.fixture
def local_kafka_factory(tmp_path: Path) -> Iterator[Callable[..., LocalKafka]]:
    """Factory of a test's own `LocalKafka` brokers (not started), all stopped at teardown.

    `make(data_dir=None, port=None)`: without `data_dir`, a fresh directory under `tmp_path`;
    pass an earlier broker's `data_dir` to restart on the same data.
    """
    brokers: list[LocalKafka] = []

    def make(data_dir: Path | None = None, port: int | None = None) -> LocalKafka:
        if data_dir is None:
            data_dir = tmp_path / f"kafka-{len(brokers)}"
        broker = LocalKafka(data_dir=data_dir, port=port)
        brokers.append(broker)
        return broker

    yield make
    for broker in reversed(brokers):
        broker.stop()


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    """`wait_until(condition, timeout=30, what="", *, interval=0.1)`: see `tests.polling`.

    The fixture form of the tests' one polling helper, for tests that take it as an argument.
    """
    return polling.wait_until


# -- the secured cluster and the schema registry (issue 14; tests marked `secured`) -------------


class SecuredCluster(NamedTuple):
    """The session's three-node SASL_SSL cluster (`ardary-pipeline broker`, run as a user runs
    it) and the KAFKA_* settings that reach it."""

    command: BrokerCommand
    settings: dict[str, str]  # the command's client.env: the password is in here

    def __repr__(self) -> str:  # pytest prints fixtures on an error: never the password
        shown = {k: "***" if "PASSWORD" in k else v for k, v in self.settings.items()}
        return f"SecuredCluster(data_dir={self.command.data_dir}, settings={shown!r})"


class Registry(NamedTuple):
    """The session's schema registry: its Confluent-API URL and its one user."""

    url: str
    user: str
    password: str

    def __repr__(self) -> str:  # pytest prints fixtures on an error: never the password
        return f"Registry(url={self.url!r}, user={self.user!r}, password='***')"

    def settings(self) -> dict[str, str]:
        """The SCHEMA_REGISTRY_* variables of a pipeline process using it."""
        return {
            "SCHEMA_REGISTRY_URL": self.url,
            "SCHEMA_REGISTRY_USERNAME": self.user,
            "SCHEMA_REGISTRY_PASSWORD": self.password,
        }


def assert_jvms_gone(pids: set[int], what: str, timeout: float = 45.0) -> None:
    """Fail unless every JVM of `pids` has exited (and been reaped) within `timeout`."""
    polling.wait_until(
        lambda: not (pids & java_children()), timeout, f"the JVMs of {what} {sorted(pids)} to exit"
    )


@pytest.fixture(scope="session")
def secured_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredCluster]:
    """Three Kafka nodes with SASL_SSL (SCRAM, a test CA), per session: the `broker --nodes 3
    --security sasl_ssl` command in a data dir of its own (`tests/broker_command.py`).

    Tests share it: each uses its own topic prefix. At the end the fixture stops it with Ctrl-C
    as a user does and checks that it exits with 0 and leaves no JVM (also none it restarted
    after a fault test) and keeps its data dir's settings.
    """
    command = BrokerCommand(tmp_path_factory.mktemp("secured-kafka") / "cluster")
    try:
        yield SecuredCluster(command, command.settings())
    finally:
        jvms = command.jvms()
        code = command.stop()
        assert_jvms_gone(jvms, "the secured cluster")
        assert code == 0, f"the broker command exited with {code}: {command.stderr()}"
        assert (command.data_dir / "client.env").is_file()  # a named data dir is kept


@pytest.fixture(scope="session")
def schema_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A real Confluent-API schema registry (Apicurio) with basic auth and one user, per session."""
    user, password = "pipeline", secrets.token_urlsafe(16)
    registry = LocalRegistry({user: password}, log_dir=tmp_path_factory.mktemp("registry"))
    before = java_children()
    registry.start(timeout=240)  # ~4 s alone, 25 s and more on a loaded box
    # its own JVMs, taken now: a broker node a fault test restarts later is the cluster's
    jvms = java_children() - before
    try:
        yield Registry(registry.url, user, password)
    finally:
        registry.stop()
        assert_jvms_gone(jvms, "the schema registry")


# PostgreSQL for the sink tests: a throw-away server from Debian's binaries, one per session.
from tests.postgres_fixture import pg_database, postgres_dsn  # noqa: E402, F401
