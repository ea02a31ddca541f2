"""`bench fuzz`: hypothesis-generated hostile callbacks against a running ingress (broker up).

Every request is well-framed HTTP/1.1 (so it reaches the app, not only granian's parser) and
hostile in what it carries: methods, query strings of arbitrary percent-encoded bytes, repeated
and empty keys, form / JSON / binary bodies in any declared content type and charset, sizes
around the 16 KiB limit, extra headers of any shape. `FuzzTally` counts the answers; the
dead-letter topic is read afterwards and its records counted per reason against the 400s.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes
from uuid import uuid4

import httpx
import orjson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pipeline.devtools.waiting import wait_until
from pipeline.errors import ConfigError
from pipeline.procutil import free_port

__all__ = [
    "FuzzTally",
    "HostileRequest",
    "ShippedIngress",
    "dead_letter_reasons",
    "dead_letter_topic",
    "fuzz",
    "generate_corpus",
    "hostile_requests",
    "load_corpus",
    "process_tree_rss_mb",
    "run_fuzz",
    "send_hostile",
    "shipped_ingress",
]

_FIELDS = ["status", "incoming", "call", "qualification", "sms", "id", "id_sms_api", "statut"]
_CONTENT_TYPES = [
    None,
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=latin-1",
    "application/json",
    "application/json; charset=utf-16",
    "multipart/form-data; boundary=x",
    "text/plain",
    "application/octet-stream",
    "",
    ";;;",
]


@dataclass(frozen=True)
class HostileRequest:
    """One generated request: method, query string (already encoded), headers, body."""

    method: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


_ints = st.integers(-(2**63), 2**63 - 1)  # orjson's range


def _percent(data: bytes) -> str:
    return quote_from_bytes(data, safe="")


_names = st.one_of(st.sampled_from(_FIELDS), st.binary(max_size=12).map(_percent))
_values = st.one_of(
    st.binary(max_size=64).map(_percent),
    st.text(max_size=200).map(lambda t: _percent(t.encode("utf-8", "surrogatepass"))),
    st.recursive(
        st.none() | st.booleans() | _ints | st.floats() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=12,
    ).map(lambda v: _percent(orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS))),
    st.integers(0, 20_000).map(lambda n: "a" * n),  # around the 16 KiB limit
)
_query = st.lists(st.tuples(_names, _values), max_size=6).map(
    lambda pairs: "&".join(f"{k}={v}" if v else k for k, v in pairs)
)
_json_bodies = st.recursive(
    st.none() | st.booleans() | _ints | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.sampled_from(_FIELDS), inner),
    max_leaves=20,
).map(orjson.dumps)
_bodies = st.one_of(
    st.just(b""),
    st.binary(max_size=512),
    _json_bodies,
    _query.map(str.encode),
    st.integers(0, 20_000).map(lambda n: b"x" * n),
)
_HEADER_NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-"
_header_name = st.text(_HEADER_NAME_CHARS, min_size=1, max_size=30).filter(lambda n: n[0] != "-")
_header_value = st.text("".join(map(chr, range(32, 127))), max_size=200).map(str.strip)
_extra_headers = st.lists(
    st.tuples(_header_name, _header_value).filter(
        lambda h: h[0].lower() not in ("content-length", "transfer-encoding", "host", "connection")
    ),
    max_size=8,
)


@st.composite
def hostile_requests(draw: Callable[[Any], Any]) -> HostileRequest:
    """A strategy of `HostileRequest`s (mostly GET/POST, the methods the ingress serves)."""
    method = draw(st.sampled_from([*["GET"] * 5, *["POST"] * 4, "PUT", "DELETE", "PATCH"]))
    headers = list(draw(_extra_headers))
    content_type = draw(st.sampled_from(_CONTENT_TYPES))
    if content_type is not None:
        headers.append(("content-type", content_type))
    body = draw(_bodies) if method != "GET" or draw(st.booleans()) else b""
    return HostileRequest(method, draw(_query), tuple(headers), body)


@dataclass
class FuzzTally:
    """The answers so far: by status, 400s by the reason in their body, what broke framing."""

    statuses: Counter[int] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    transport_errors: Counter[str] = field(default_factory=Counter)

    @property
    def sent(self) -> int:
        return sum(self.statuses.values()) + sum(self.transport_errors.values())

    @property
    def answers_5xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


def send_hostile(
    client: httpx.Client, path: str, request: HostileRequest, tally: FuzzTally
) -> None:
    """Send `request` to `path` (the callback path, token included) and count the answer."""
    url = f"{path}?{request.query}" if request.query else path
    answer: httpx.Response | None
    try:
        answer = client.request(
            request.method, url, headers=list(request.headers), content=request.body
        )
    except httpx.InvalidURL:  # httpx builds no URL over 65,536 characters: a server still gets one
        answer = _send_raw(client.base_url, request.method, url, request)
    except httpx.HTTPError as exc:
        tally.transport_errors[type(exc).__name__] += 1
        return
    if answer is None:
        tally.transport_errors["closed without an answer"] += 1
        return
    tally.statuses[answer.status_code] += 1
    if answer.status_code == 400:
        try:
            reason = str(orjson.loads(answer.content)["error"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            reason = "?"
        tally.reasons[reason] += 1


def _send_raw(
    base: httpx.URL, method: str, target: str, request: HostileRequest
) -> httpx.Response | None:
    """`request` written on a socket of its own (HTTP/1.1, `Connection: close`), for a request
    line httpx will not build; its answer, or None when the server closed without one."""
    host, port = base.host, base.port or 80
    head = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    head += [f"{name}: {value}" for name, value in request.headers]
    head.append(f"Content-Length: {len(request.body)}")
    wire = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + request.body
    received = bytearray()
    with socket.create_connection((host, port), timeout=10) as sock:
        with contextlib.suppress(OSError):  # the server may answer and close before reading all
            sock.sendall(wire)
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                received += chunk
    status_line, _, rest = bytes(received).partition(b"\r\n")
    parts = status_line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        return None
    _, _, body = rest.partition(b"\r\n\r\n")
    return httpx.Response(int(parts[1]), content=body)


def fuzz(count: int, each: Callable[[HostileRequest], None], seed: int) -> None:
    """Call `each` on `count` generated requests (generation only: no shrinking, no database)."""

    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=False,
    )
    @given(hostile_requests())
    def run(request: HostileRequest) -> None:
        each(request)

    from hypothesis import seed as with_seed

    with_seed(seed)(run)()


def process_tree_rss_mb(pid: int) -> float:
    """Resident memory of `pid` and its descendants (granian serves from a child process)."""
    total_kb = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        pids.extend(int(c) for c in children)
    return total_kb / 1024


def run_fuzz(
    *,
    count: int,
    checkpoint: int,
    seed: int,
    corpus: Path | None = None,
    echo: Callable[[str], Any] = print,
) -> None:
    """Generate `count` requests (or load them from `corpus`), then start a broker and an
    ingress, send them all, and check the answers, the dead letters and the RSS.

    Generation costs far more than sending (10-40 ms per example here), so a `corpus` file
    (JSON) lets it run once, without the broker (`generate_corpus`), and the broker part be
    short.
    """
    from pipeline.devtools.bench.broker import bench_broker

    if corpus is not None and corpus.exists():
        requests = load_corpus(corpus)[:count]
        echo(f"{len(requests):,} requests from {corpus}")
    else:
        requests = generate_corpus(count, seed, corpus)
    with bench_broker() as cluster:  # a plaintext cluster: the fuzzed part is HTTP
        echo(f"cluster: {cluster.describe()}")
        _fuzz_ingress(cluster.bootstrap, requests, checkpoint, echo)


def generate_corpus(count: int, seed: int, corpus: Path | None = None) -> list[HostileRequest]:
    """`count` generated requests; written to `corpus` (pickle) when given."""
    requests: list[HostileRequest] = []
    fuzz(count, requests.append, seed)
    if corpus is not None:
        corpus.write_bytes(orjson.dumps([_to_json(r) for r in requests]))
    return requests


def load_corpus(corpus: Path) -> list[HostileRequest]:
    """The requests a `generate_corpus` call wrote to `corpus` (ConfigError for another file)."""
    try:
        return [_from_json(item) for item in orjson.loads(corpus.read_bytes())]
    except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(
            f"--corpus: {corpus} is not a corpus written by `bench fuzz --generate-only` "
            f"({type(exc).__name__})"
        ) from None


def _to_json(request: HostileRequest) -> list[Any]:
    body = request.body.decode("latin-1")  # every byte to one code point, and back
    return [request.method, request.query, [list(h) for h in request.headers], body]


def _from_json(item: list[Any]) -> HostileRequest:
    method, query, headers, body = item
    return HostileRequest(method, query, tuple((k, v) for k, v in headers), body.encode("latin-1"))


@dataclass(frozen=True)
class ShippedIngress:
    """`ardary-pipeline ingress` (granian) running as a child: its base URL, token and pid."""

    url: str
    token: str
    pid: int

    @property
    def callback_path(self) -> str:
        return f"/callbacks/{self.token}"


@contextlib.contextmanager
def shipped_ingress(bootstrap: str, prefix: str, token: str) -> Iterator[ShippedIngress]:
    """Serve the ingress as the CLI does (no spool: what the broker alone does) until exit."""
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "PIPELINE_TOPIC_PREFIX": prefix,
        "PIPELINE_CALLBACK_TOKEN": token,
        "INGRESS_SPOOL_DIR": "",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "ingress", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ready(base, proc), 60, "the ingress to be ready", interval=0.2)
        yield ShippedIngress(base, token, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _fuzz_ingress(
    bootstrap: str, requests: list[HostileRequest], checkpoint: int, echo: Callable[[str], Any]
) -> None:
    from pipeline.kafka.admin import ensure_topics

    prefix = f"fuzz{uuid4().hex[:6]}."
    ensure_topics(bootstrap, prefix, 2)
    tally = FuzzTally()
    rss: dict[str, float] = {}
    with (
        shipped_ingress(bootstrap, prefix, uuid4().hex) as ingress,
        httpx.Client(base_url=ingress.url, timeout=10) as client,
    ):
        for request in requests:
            send_hostile(client, ingress.callback_path, request, tally)
            if tally.sent == checkpoint:
                rss["checkpoint"] = process_tree_rss_mb(ingress.pid)
        rss["end"] = process_tree_rss_mb(ingress.pid)
    letters = dead_letter_reasons(bootstrap, dead_letter_topic(prefix), sum(tally.reasons.values()))
    _report(tally, letters, rss, checkpoint, echo)


def dead_letter_topic(prefix: str) -> str:
    from pipeline.records import DeadLetter
    from pipeline.topics import topic_for_record

    return topic_for_record(DeadLetter).full_name(prefix)


def _ready(base: str, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise RuntimeError(f"the ingress exited {proc.returncode} during start-up")
    try:
        return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def dead_letter_reasons(bootstrap: str, topic: str, expected: int) -> Counter[str]:
    """The dead letters' reasons, once at least `expected` are on `topic` (or after 60 s)."""
    from kafka import KafkaConsumer, TopicPartition

    from pipeline.serde import make_codec

    codec = make_codec(None)
    reasons: Counter[str] = Counter()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        wait_until(lambda: consumer.partitions_for_topic(topic), 30, f"topic {topic}")
        consumer.assign([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)])
        consumer.seek_to_beginning()

        def enough() -> bool:
            for messages in consumer.poll(timeout_ms=500).values():
                reasons.update(_reason(codec.decode(m.value)) for m in messages)
            return sum(reasons.values()) >= expected

        wait_until(enough, 60, f"{expected} dead letters on {topic}", interval=0)
    finally:
        consumer.close()
    return reasons


def _reason(record: object) -> str:
    from pipeline.records import DeadLetter

    return record.reason if isinstance(record, DeadLetter) else f"not a dead letter: {record!r}"


def _report(
    tally: FuzzTally,
    letters: Counter[str],
    rss: dict[str, float],
    checkpoint: int,
    echo: Callable[[str], Any],
) -> None:
    echo(f"requests sent: {tally.sent:,}")
    echo("answers: " + ", ".join(f"{s}: {n:,}" for s, n in sorted(tally.statuses.items())))
    if tally.transport_errors:
        echo(f"transport errors: {dict(tally.transport_errors)}")
    echo(f"400 answers by reason: {dict(sorted(tally.reasons.items()))}")
    echo(f"dead letters by reason: {dict(sorted(letters.items()))}")
    missing = sum((tally.reasons - letters).values())
    no_letter = {s: n for s, n in tally.statuses.items() if 400 <= s < 500 and s != 400}
    echo(f"4xx refused before the body was read (no dead letter by design): {no_letter}")
    growth = 0.0
    if "checkpoint" in rss:
        growth = (rss["end"] - rss["checkpoint"]) / rss["checkpoint"] * 100
        echo(
            f"ingress RSS: {rss['checkpoint']:.0f} MB after {checkpoint:,}, "
            f"{rss['end']:.0f} MB at the end ({growth:+.1f} %)"
        )
    echo(f"RATIO fuzz_answers_5xx={tally.answers_5xx}")
    echo(f"RATIO fuzz_400_without_dead_letter={missing}")
    echo(f"RATIO fuzz_rss_growth_pct={growth:.1f}")
