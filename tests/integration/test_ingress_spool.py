"""The ingress keeps every callback while Kafka is down (the real command, broker and sink).

Broker stopped → 1,000 callbacks from a client that never retries → 1,000 answers 200; the
ingress is SIGKILLed while it holds them, started again, then the broker → every event_id is in
Kafka, and in the warehouse exactly once (some are sent twice: Ardary's duplicates reach Kafka
twice and are de-duplicated by event_id downstream).
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb
import httpx
import pytest

from pipeline.devtools.localkafka import LocalKafka
from pipeline.kafka.admin import ensure_topics
from pipeline.procutil import free_port
from pipeline.settings import load_settings
from pipeline.sinks.runner import run_sink
from tests.kafka_read import read_topic
from tests.unit.ingress.samples import status_json

pytestmark = pytest.mark.integration

TOKEN = "spool-Token-1"
_INGRESS = (sys.executable, "-m", "pipeline", "ingress", "--host", "127.0.0.1")
N = 1000
DUPLICATES = 50  # callbacks Ardary sends twice: the second copy while the broker is down


class Ingress:
    """`ardary-pipeline ingress` as a subprocess on a fixed port and spool directory."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_until: Callable[..., Any]) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*_INGRESS, "--port", str(self.port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            try:
                return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 60, "the ingress to be ready", interval=0.2)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spooled(self) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith("ardary_ingress_spool_records "):
                return float(line.split()[1])
        raise AssertionError("no spool gauge")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def ingress_factory(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Ingress]]:
    made: list[Ingress] = []

    def make(env: dict[str, str]) -> Ingress:
        ingress = Ingress(env, free_port(), tmp_path / f"ingress-{len(made)}.log")
        made.append(ingress)
        return ingress

    yield make
    for ingress in made:
        ingress.kill()


async def _send_all(url: str, ids: list[str]) -> list[int]:
    """One request per id, 32 at a time, never retried: the status codes."""
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        gate = asyncio.Semaphore(32)

        async def one(mid: str) -> int:
            async with gate:
                q = quote(status_json(mid), safe="")
                return (await client.get(f"/callbacks/{TOKEN}?status={q}")).status_code

        return await asyncio.gather(*(one(mid) for mid in ids))


def test_every_callback_survives_a_broker_outage_and_an_ingress_crash(
    local_kafka_factory: Callable[..., LocalKafka],
    ingress_factory: Callable[[dict[str, str]], Ingress],
    unique_prefix: str,
    tmp_path: Path,
    wait_until: Callable[..., Any],
) -> None:
    broker = local_kafka_factory()
    bootstrap = broker.start()
    ensure_topics(bootstrap, unique_prefix, 3)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "PIPELINE_TOPIC_PREFIX": unique_prefix,
        "PIPELINE_CALLBACK_TOKEN": TOKEN,
        "INGRESS_SPOOL_DIR": str(tmp_path / "spool"),
    }
    ids = [f"spool-{n:04d}" for n in range(N)]
    first = ingress_factory(env)
    first.start(wait_until)
    # broker up: the duplicates' first copies go straight to Kafka
    assert asyncio.run(_send_all(first.url, ids[:DUPLICATES])) == [200] * DUPLICATES

    broker.stop()
    codes = asyncio.run(_send_all(first.url, ids + ids[:DUPLICATES]))
    assert codes == [200] * (N + DUPLICATES)  # a client that never retries loses nothing
    assert first.spooled() >= N  # every request of the outage waits in the spool

    first.kill()  # SIGKILL with everything still spooled
    second = ingress_factory(env)
    second.start(wait_until)  # the broker is still down: it starts and serves anyway
    assert second.spooled() >= N

    broker.start()  # same data dir, same port
    wait_until(lambda: second.spooled() == 0, 90, "the spool to drain", interval=0.5)
    second.stop()

    topic = f"{unique_prefix}callbacks.status"
    keys = [record.key.decode() for record in read_topic(bootstrap, topic)]
    assert set(keys) == set(ids)  # every callback is in Kafka
    assert len(keys) >= N + DUPLICATES  # the duplicates reached Kafka twice

    warehouse = tmp_path / "warehouse.duckdb"
    settings = load_settings(
        kafka_bootstrap_servers=bootstrap,
        pipeline_topic_prefix=unique_prefix,
        warehouse_url=f"duckdb:///{warehouse}",
    )
    run_sink(settings, stop_event=threading.Event(), max_idle_s=3.0, group=f"{unique_prefix}wh")
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute("SELECT id_sms_api, event_id FROM callbacks_status").fetchall()
    assert sorted(mid for mid, _ in rows) == sorted(ids)  # in the warehouse exactly once
    assert len({event for _, event in rows}) == N


IDLE_CONNECTIONS = 1100  # past granian's default connection limit (its backlog, 1,024)


async def _idle_then_fresh(port: int) -> int:
    """Open IDLE_CONNECTIONS keep-alive connections, each answered once and left idle (a
    sender's pool); then the status of one request on a fresh connection."""

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: ingress\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        return int(head[9:12])

    idle = []
    try:
        for _ in range(IDLE_CONNECTIONS):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            idle.append(writer)
            # each must be served: past the limit, granian stops accepting (the old default)
            assert await asyncio.wait_for(one(reader, writer), 10) == 200
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        idle.append(writer)
        return await asyncio.wait_for(one(reader, writer), 10)
    finally:
        for writer in idle:
            writer.close()


def test_idle_keep_alive_connections_never_starve_a_new_one(
    ingress_factory: Callable[[dict[str, str]], Ingress],
    tmp_path: Path,
    wait_until: Callable[..., Any],
) -> None:
    """granian counts idle keep-alive connections against its limit: at its default (1,024) a
    sender's pool of idle connections left every new one unanswered until the 30-s header-read
    timeout (30-50 s stalls at 1,000 callbacks/s in `bench ingress`)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * IDLE_CONNECTIONS + 256  # this test's ends of the connections, and its own
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the open-file hard limit ({hard}) is below {wanted}")
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",  # nothing there: the spool serves
        "PIPELINE_TOPIC_PREFIX": "idle.",
        "PIPELINE_CALLBACK_TOKEN": TOKEN,
        "INGRESS_SPOOL_DIR": str(tmp_path / "spool"),
    }
    ingress = ingress_factory(env)
    ingress.start(wait_until)
    assert asyncio.run(_idle_then_fresh(ingress.port)) == 200


class _Load:
    """Callbacks at a steady pace from a thread of their own, never retried; the answers kept."""

    def __init__(self, url: str, rate: float, in_flight: int = 16) -> None:
        self.url, self.rate, self.in_flight = url, rate, in_flight
        self.answers: dict[str, int] = {}  # id_sms_api → status (or 0 for a transport error)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the load did not stop"

    def ok(self) -> set[str]:
        return {mid for mid, status in self.answers.items() if status == 200}

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=self.in_flight)
        gate = asyncio.Semaphore(self.in_flight)
        async with httpx.AsyncClient(base_url=self.url, timeout=30, limits=limits) as client:

            async def one(mid: str) -> None:
                q = quote(status_json(mid), safe="")
                try:
                    status = (await client.get(f"/callbacks/{TOKEN}?status={q}")).status_code
                except httpx.HTTPError:
                    status = 0
                self.answers[mid] = status
                gate.release()

            loop = asyncio.get_running_loop()
            started, n, tasks = loop.time(), 0, set()
            while not self._stop.is_set():
                delay = started + n / self.rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                await gate.acquire()
                task = asyncio.ensure_future(one(f"load-{n:06d}"))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                n += 1
            if tasks:
                await asyncio.wait(tasks, timeout=45)


OUTAGE_S = 10.0  # the broker away this long, plus its restart: past the producer's 10-s timeout


@pytest.mark.slow
def test_the_spool_drains_after_a_broker_restart_under_load(
    local_kafka_factory: Callable[..., LocalKafka],
    ingress_factory: Callable[[dict[str, str]], Ingress],
    unique_prefix: str,
    tmp_path: Path,
    wait_until: Callable[..., Any],
) -> None:
    """The broker stopped (SIGTERM), then killed (SIGKILL), each while callbacks keep coming:
    after each return the spool is empty within 60 s, and every callback answered 200 is in
    Kafka. Before the producer took a new id after a failed batch, the ingress's idempotent
    producer was refused with OutOfOrderSequenceNumber for good and the spool never drained."""
    broker = local_kafka_factory()
    bootstrap = broker.start()
    ensure_topics(bootstrap, unique_prefix, 6)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "PIPELINE_TOPIC_PREFIX": unique_prefix,
        "PIPELINE_CALLBACK_TOKEN": TOKEN,
        "INGRESS_SPOOL_DIR": str(tmp_path / "spool"),
    }
    ingress = ingress_factory(env)
    ingress.start(wait_until)
    load = _Load(ingress.url, rate=600)
    load.start()
    try:
        for stop in (broker.stop_node, broker.kill_node):
            wait_until(lambda: len(load.ok()) >= 300, 60, "callbacks answered before the outage")
            answered = len(load.answers)
            stop(1)  # SIGTERM (a clean shutdown), then SIGKILL (a crash)
            wait_until(
                lambda a=answered: len(load.answers) >= a + 300, 60, "callbacks during the outage"
            )
            time.sleep(OUTAGE_S)  # the outage itself: no condition to wait for
            broker.start_node(1)  # same data dir, same port
            try:
                wait_until(lambda: ingress.spooled() == 0, 60, "the spool to drain", interval=0.5)
            except AssertionError as exc:
                tail = ingress.log.read_text(errors="replace")[-3000:]
                raise AssertionError(f"{exc} after {stop.__name__}; ingress log:\n{tail}") from None
    finally:
        load.stop()
    wait_until(lambda: ingress.spooled() == 0, 60, "the spool to drain after the load")
    ingress.stop()
    ok = load.ok()
    assert len(ok) == len(load.answers)  # the ingress answered 200 to every callback
    keys = {r.key.decode() for r in read_topic(bootstrap, f"{unique_prefix}callbacks.status")}
    assert not ok - keys, f"{len(ok - keys)} callbacks answered 200 are not in Kafka"
