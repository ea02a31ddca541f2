"""`ardary-pipeline bench ingress`: callbacks/s over real HTTP into the real broker, and baselines.

Runs, against one broker (KAFKA_BOOTSTRAP_SERVERS, else a LocalKafka started here):
1. the ingress (`ardary-pipeline ingress`, granian) loaded by `wrk` (a compiled load generator
   in its own process) with >= 64 connections cycling through pre-generated callback URLs of
   both dialects and realistic sizes → callbacks/s, p50/p99, ingress RSS (process tree);
2. the same server stack answering a constant 200 to the same URLs → `ingress_vs_hello`;
3. the same aiokafka producer (acks=all, idempotent) producing the same encoded records
   without HTTP through its plain `send()`, 2,048 in flight → `ingress_vs_producer`;
4. p50/p99 at a fixed 1,000 callbacks/s from an open-loop generator (a separate Python
   process: Debian has no wrk2; latency counts from the scheduled send time, so a slow server
   cannot hide queueing — no coordinated omission).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import click

from pipeline.devtools.bench.broker import bench_broker
from pipeline.procutil import free_port

__all__ = [
    "bench_ingress_command",
    "generate_paths",
    "hello_app",
    "parse_wrk",
]

TOKEN = "bench-token"  # noqa: S105 - a throwaway token for a local benchmark
_WORDS = tuple(
    "Bonjour merci votre commande est prête rendez-vous demain à 10h00 "  # noqa: SIM905
    "code promo livraison été café Ça marche 👍 STOP OK oui non rappel".split()
)


# ---- the constant-200 baseline app -----------------------------------------------------------


async def hello_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Bare ASGI app answering a constant 200 (the server's ceiling on the same requests)."""
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        return
    body = b'{"accepted":[]}'
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"15")],
        }
    )
    await send({"type": "http.response.body", "body": body})


# ---- workload -------------------------------------------------------------------------------


def _text(rng: random.Random, low: int, high: int) -> str:
    words: list[str] = []
    target = rng.randint(low, high)
    while sum(len(w) + 1 for w in words) < target:
        words.append(rng.choice(_WORDS))
    return " ".join(words)[:target]


def _phone(rng: random.Random) -> str:
    return f"+336{rng.randint(10_000_000, 99_999_999)}"


def _callback(rng: random.Random, n: int) -> tuple[str, dict[str, Any]]:
    """One callback (param, object) of a realistic mix: mostly statuses, then clicks, SMS, calls."""
    v2 = rng.random() < 0.6
    phone_key = "phone_number" if v2 else "phonenumber"
    roll = rng.random()
    if roll < 0.55:
        return "status", {
            "user": "sender@example.com",
            phone_key: _phone(rng),
            "status": rng.choice(("sent", "received")),
            "date_status": "2024-05-06T12:50:54.211Z",
            "id_sms_api": f"bench-{n:08d}",
        }
    if roll < 0.75:
        return ("clics" if v2 else "click"), {
            "id_sms_api": f"bench-{n:08d}",
            "title": "clicked link",
            phone_key: _phone(rng),
            "link": f"https://shop.example.com/p/{rng.randint(1, 10**6)}?utm_source=sms",
            "date": "2024-05-06 17:04:13",
        }
    if roll < 0.90:
        body = _text(rng, 10, 480)
        if v2:
            return "message", {
                "device_identification": "user@email.com",
                "title": "incoming_sms",
                "from": _phone(rng),
                "message": body,
                "date": "2024-05-06T20:15:30.565Z",
            }
        return "message", {
            "title": "incoming sms",
            "from": _phone(rng),
            "body": body,
            "date": "2024-05-06 10:01:38",
        }
    if roll < 0.97:
        if v2:
            return "calls", {
                "device_identification": "user@email.com",
                "title": rng.choice(("incoming_call", "outgoing_call", "missed_call")),
                "phone_number": _phone(rng),
                "call_time": "2024-05-06 20:32:51",
                "duration": rng.choice(("0", "00:01:12", "01:02:03")),
            }
        return "call", {
            "title": "incoming call",
            "phonenumber": _phone(rng),
            "call_date": "2024-05-06 15:11:04",
        }
    return "qualification", {
        "device_identification": "user@email.com",
        "title": rng.choice(
            ("call_qualification_from_mobile", "call_qualification_from_interface")
        ),
        "from": _phone(rng),
        "date": "2024-05-06 23:57:52",
        "qualification": _text(rng, 10, 80),
    }


def generate_paths(count: int, token: str = TOKEN, seed: int = 7) -> list[str]:
    """`count` distinct callback paths (`/callbacks/<token>?param=<encodeURIComponent(json)>`)."""
    rng = random.Random(seed)
    paths = []
    for n in range(count):
        param, obj = _callback(rng, n)
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        paths.append(f"/callbacks/{token}?{param}={quote(text, safe='')}")
    return paths


def _encoded_records(paths: Sequence[str], prefix: str) -> list[tuple[str, bytes | None, bytes]]:
    """What the ingress publishes for these paths: (topic, key, value) per record."""
    from pipeline.ardary.callbacks import parse_callbacks
    from pipeline.ingress.decode import decode_query
    from pipeline.serde import make_codec
    from pipeline.topics import record_key, topic_for_record

    codec = make_codec(None)
    now = datetime.now(UTC)
    tz = ZoneInfo("Europe/Paris")
    out = []
    for path in paths:
        query = path.split("?", 1)[1].encode()
        for record in parse_callbacks(decode_query(query), received_at=now, tz=tz):
            topic = topic_for_record(type(record)).full_name(prefix)
            out.append((topic, record_key(record), codec.encode(record)))
    return out


# ---- wrk --------------------------------------------------------------------------------------

_LUA = """
local paths = {}
for line in io.lines("%(file)s") do paths[#paths + 1] = line end
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
function init(args)
  i = (id or 0) * 7919
end
function request()
  i = i + 1
  return wrk.format("GET", paths[(i %% #paths) + 1])
end
"""


@dataclass(frozen=True, slots=True)
class WrkResult:
    """What one wrk run measured."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def parse_wrk(output: str) -> WrkResult:
    """Read wrk's `--latency` report."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    lat = {
        p: _ms(v, u)
        for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
    }
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if rps is None or total is None or "50" not in lat or "99" not in lat:
        raise RuntimeError(f"cannot read wrk output:\n{output}")
    return WrkResult(
        requests_per_s=float(rps.group(1)),
        p50_ms=lat["50"],
        p99_ms=lat["99"],
        requests=int(total.group(1)),
        non_2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=sum(int(g) for g in errors.groups()) if errors else 0,
    )


def _wrk(url: str, script: Path, connections: int, threads: int, seconds: float) -> WrkResult:
    done = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    return parse_wrk(done.stdout)


# ---- processes -------------------------------------------------------------------------------


def _tree_rss_bytes(pid: int) -> int:
    """RSS of a process and its descendants (granian serves from a child process)."""
    total = 0
    stack = [pid]
    while stack:
        current = stack.pop()
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                stack.extend(int(c) for c in children)
    return total


class _RssSampler:
    """Samples the peak RSS of a process tree in a background thread."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss_bytes(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - local URL
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer 200 within {timeout:g}s")
        time.sleep(0.2)


@contextlib.contextmanager
def _server(argv: list[str], env: dict[str, str], ready_url: str) -> Iterator[int]:
    """Start a server process (own process group), wait for `ready_url`, SIGTERM it at the end."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log, start_new_session=True)
        yield from _supervise(proc, log, ready_url)


def _supervise(proc: subprocess.Popen[bytes], log: Any, ready_url: str) -> Iterator[int]:
    try:
        try:
            _wait_http(ready_url)
        except RuntimeError:
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-3000:])
            raise
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def _ingress_argv(port: int, server: str, threads: int) -> list[str]:
    if server == "granian":
        return [
            sys.executable, "-m", "pipeline", "ingress",
            "--host", "127.0.0.1", "--port", str(port), "--threads", str(threads),
        ]  # fmt: skip
    code = (
        "import uvicorn; uvicorn.run('pipeline.ingress.app:app_from_env', factory=True, "
        f"host='127.0.0.1', port={port}, loop='uvloop', http='httptools', "
        "log_level='warning', access_log=False)"
    )
    return [sys.executable, "-c", code]


def _hello_argv(port: int, server: str, threads: int) -> list[str]:
    if server == "granian":
        code = (
            "from pipeline.ingress.server import serve; "
            f"serve('pipeline.devtools.bench.ingress:hello_app', '127.0.0.1', {port}, "
            f"runtime_threads={threads})"
        )
    else:
        code = (
            "import uvicorn; uvicorn.run('pipeline.devtools.bench.ingress:hello_app', "
            f"host='127.0.0.1', port={port}, loop='uvloop', http='httptools', "
            "log_level='warning', access_log=False)"
        )
    return [sys.executable, "-c", code]


# ---- producer baseline -----------------------------------------------------------------------


async def _produce(
    bootstrap: str, records: list[tuple[str, bytes | None, bytes]], total: int
) -> float:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        acks="all",
        enable_idempotence=True,
        linger_ms=2,  # aiokafka's send() path at its best here (0 ms measured no faster)
        max_batch_size=256 * 1024,
    )
    await producer.start()
    try:
        window = 2048
        # warm-up: metadata for every topic
        await asyncio.gather(*[await producer.send(t, v, key=k) for t, k, v in records[:50]])
        started = time.perf_counter()
        pending: list[asyncio.Future[Any]] = []
        for n in range(total):
            topic, key, value = records[n % len(records)]
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= window:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return total / (time.perf_counter() - started)
    finally:
        await producer.stop()


# ---- open-loop fixed-rate generator (separate process) ---------------------------------------


def _open_loop_main(
    port: int, paths: list[str], rate: int, seconds: float, out: Any
) -> None:  # pragma: no cover - runs in a child process
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    out.put(asyncio.run(_open_loop(port, paths, rate, seconds)))


async def _open_loop(port: int, paths: list[str], rate: int, seconds: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def one(path: bytes, scheduled: float) -> None:
        if idle:
            reader, writer = idle.pop()
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: bench\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
        await reader.readexactly(length)
        latencies.append(loop.time() - scheduled)
        statuses[status] = statuses.get(status, 0) + 1
        idle.append((reader, writer))

    encoded = [p.encode() for p in paths]
    tasks = []
    total = int(rate * seconds)
    start = loop.time() + 0.1
    for n in range(total):
        scheduled = start + n / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(encoded[n % len(encoded)], scheduled)))
    await asyncio.gather(*tasks)
    elapsed = loop.time() - start
    for _, writer in idle:
        writer.close()
    latencies.sort()
    return {
        "sent": total,
        "achieved_rate": total / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "statuses": statuses,
    }


def _fixed_rate(port: int, paths: list[str], rate: int, seconds: float) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_open_loop_main, args=(port, paths, rate, seconds, out))
    proc.start()
    try:
        result: dict[str, Any] = out.get(timeout=seconds + 120)
    finally:
        proc.join(30)
    return result


# ---- the command -----------------------------------------------------------------------------


@click.command("ingress")
@click.option("--seconds", type=click.FloatRange(2, 600), default=10, show_default=True)
@click.option("--connections", type=click.IntRange(1, 10_000), default=64, show_default=True)
@click.option("--wrk-threads", type=click.IntRange(1, 16), default=2, show_default=True)
@click.option("--paths", "path_count", type=click.IntRange(10, 10**6), default=5000,
              show_default=True, help="Distinct pre-generated callback URLs.")  # fmt: skip
@click.option("--rate", type=click.IntRange(10, 100_000), default=1000, show_default=True,
              help="Fixed rate (callbacks/s) of the open-loop latency run.")  # fmt: skip
@click.option("--producer-records", type=click.IntRange(1000, 10**7), default=200_000,
              show_default=True)  # fmt: skip
@click.option("--server", type=click.Choice(["granian", "uvicorn"]), default="granian",
              show_default=True, help="HTTP server of the ingress and hello runs.")  # fmt: skip
@click.option("--threads", type=click.IntRange(1, 8), default=2, show_default=True,
              help="granian runtime threads.")  # fmt: skip
def bench_ingress_command(
    seconds: float,
    connections: int,
    wrk_threads: int,
    path_count: int,
    rate: int,
    producer_records: int,
    server: str,
    threads: int,
) -> None:
    """Callbacks/s over real HTTP into Kafka, vs a hello server and a bare producer."""
    if shutil.which("wrk") is None:
        click.echo("bench ingress: skipped: `wrk` is not installed (apt-get install wrk)")
        return
    from pipeline.kafka.admin import ensure_topics

    paths = generate_paths(path_count)
    sizes = sorted(len(p) for p in paths)
    load = os.getloadavg()
    click.echo(
        f"workload: {len(paths)} distinct callback URLs, both dialects, "
        f"URL bytes p50 {sizes[len(sizes) // 2]} max {sizes[-1]}; "
        f"{os.cpu_count()} CPUs, load average {load[0]:.1f} (others share this machine)"
    )
    with tempfile.TemporaryDirectory(prefix="bench-ingress-") as tmp, bench_broker() as bootstrap:
        prefix = f"bench{uuid.uuid4().hex[:6]}."
        ensure_topics(bootstrap, prefix, 6)
        path_file = Path(tmp) / "paths.txt"
        path_file.write_text("\n".join(paths) + "\n", encoding="utf-8")
        script = Path(tmp) / "cycle.lua"
        script.write_text(_LUA % {"file": path_file}, encoding="utf-8")
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "PIPELINE_TOPIC_PREFIX": prefix,
            "PIPELINE_CALLBACK_TOKEN": TOKEN,
        }
        env.pop("SCHEMA_REGISTRY_URL", None)

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with _server(_ingress_argv(port, server, threads), env, f"{base}/readyz") as pid:
            _wrk(base, script, connections, wrk_threads, 2)  # warm-up
            with _RssSampler(pid) as rss:
                ingress = _wrk(base, script, connections, wrk_threads, seconds)
            fixed = _fixed_rate(port, paths, rate, seconds)
        hello_port = free_port()
        hello_base = f"http://127.0.0.1:{hello_port}"
        with _server(_hello_argv(hello_port, server, threads), env, f"{hello_base}/x"):
            _wrk(hello_base, script, connections, wrk_threads, 2)
            hello = _wrk(hello_base, script, connections, wrk_threads, seconds)
        records = _encoded_records(paths, prefix)
        producer_rate = asyncio.run(_produce(bootstrap, records, producer_records))

    ok = ingress.requests - ingress.non_2xx
    callbacks_per_s = ingress.requests_per_s * ok / max(1, ingress.requests)
    click.echo(
        f"ingress ({server}, {connections} connections, {seconds:g} s): "
        f"{callbacks_per_s:,.0f} callbacks/s, p50 {ingress.p50_ms:.1f} ms, "
        f"p99 {ingress.p99_ms:.1f} ms, non-2xx {ingress.non_2xx}, "
        f"socket errors {ingress.socket_errors}"
    )
    click.echo(f"ingress RSS (peak, process tree): {rss.peak / 2**20:.0f} MB")
    click.echo(
        f"ingress at a fixed {rate}/s (open loop, {fixed['achieved_rate']:.0f}/s achieved): "
        f"p50 {fixed['p50_ms']:.1f} ms, p99 {fixed['p99_ms']:.1f} ms, "
        f"statuses {fixed['statuses']}"
    )
    click.echo(
        f"hello ({server}, constant 200, same URLs): {hello.requests_per_s:,.0f} req/s, "
        f"p99 {hello.p99_ms:.1f} ms"
    )
    click.echo(
        f"producer (aiokafka acks=all idempotent linger 2 ms, no HTTP): "
        f"{producer_rate:,.0f} records/s"
    )
    click.echo(f"RATIO ingress_vs_producer={callbacks_per_s / producer_rate:.2f}")
    click.echo(f"RATIO ingress_vs_hello={callbacks_per_s / hello.requests_per_s:.2f}")


if __name__ == "__main__":  # pragma: no cover
    bench_ingress_command()
