"""The sink's web server on a loopback port: the three endpoints, the broker probe, a busy port."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipeline.cli.sink import web_server
from pipeline.errors import ConfigError
from pipeline.settings import load_settings
from pipeline.sinks.telemetry import LoopState, SinkTelemetry
from pipeline.sinks.web import BrokerProbe, SinkWebServer


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback socket that listens (a port in use, a broker that accepts connections)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


def test_the_endpoints_answer_from_the_telemetry() -> None:
    telemetry = SinkTelemetry()
    with SinkWebServer("127.0.0.1", 0, telemetry) as web:
        base = f"http://127.0.0.1:{web.port}"
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
        before = httpx.get(f"{base}/readyz")
        assert before.status_code == 503
        assert before.json()["status"] == "not ready" and "starting" in before.json()["reason"]
        telemetry.started("g", lambda: {"callbacks_status": 4})
        telemetry.update(LoopState("g", 2))
        ready = httpx.get(f"{base}/readyz")
        assert (ready.status_code, ready.json()) == (200, {"status": "ready", "reason": "ok"})
        metrics = httpx.get(f"{base}/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        assert 'ardary_sink_rows_written_total{table="callbacks_status"} 4.0' in metrics.text
        assert "ardary_sink_ready 1.0" in metrics.text
        missing = httpx.get(f"{base}/nope?x=1")
        assert (missing.status_code, missing.json()["path"]) == (404, "/nope")
    with pytest.raises(httpx.ConnectError):  # closed: the port is released
        httpx.get(f"{base}/healthz", timeout=2)


def test_a_port_in_use_is_one_line_naming_the_setting(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    with pytest.raises(ConfigError) as caught:
        web_server("127.0.0.1", port, SinkTelemetry(), "--web-port")
    message = str(caught.value)
    assert message.startswith(f"--web-port: port {port} on 127.0.0.1 is already in use")
    assert "SINK_WEB_PORT" in message and "\n" not in message
    with pytest.raises(ConfigError, match=r"^SINK_WEB_PORT: port \d+ on 127.0.0.1 is already"):
        web_server("127.0.0.1", port, SinkTelemetry(), "SINK_WEB_PORT")


def test_the_broker_probe_connects_and_caches_its_answer(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    assert BrokerProbe(f"127.0.0.1:{port}")()
    # any of the bootstrap servers will do
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = closed.getsockname()[1]  # bound, never listening: connections are refused
        assert not BrokerProbe(f"127.0.0.1:{dead}", timeout=0.5)()
        assert BrokerProbe(f"127.0.0.1:{dead}, 127.0.0.1:{port}", timeout=0.5)()
    cached = BrokerProbe(f"127.0.0.1:{port}", ttl=3600)
    assert cached()
    listener.close()
    assert cached()  # the answer stands until the ttl is over
    fresh = BrokerProbe(f"127.0.0.1:{port}", ttl=0, timeout=0.5)
    assert not fresh()
    assert not BrokerProbe("")()  # no bootstrap servers: nothing to reach


def test_sink_web_port_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.delenv("SINK_WEB_PORT", raising=False)
    assert load_settings().sink_web_port == 8082
    monkeypatch.setenv("SINK_WEB_PORT", "9182")
    assert load_settings().sink_web_port == 9182
    for bad in ("0", "65536", "http"):
        monkeypatch.setenv("SINK_WEB_PORT", bad)
        with pytest.raises(ConfigError, match=r"^SINK_WEB_PORT: "):
            load_settings()
