"""The sink's HTTP endpoints (/healthz, /readyz, /metrics) on a stdlib server beside its loop.

The sink's loop is synchronous (kafka-python), so the server runs on threads of its own: a
`ThreadingHTTPServer` in a daemon thread, one short-lived thread per request. It only reads
`SinkTelemetry`, never the consumer (kafka-python's consumer is not thread-safe), so a scrape
cannot slow the loop down beyond the GIL time it takes to render a few dozen samples.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from prometheus_client import CONTENT_TYPE_LATEST

from pipeline.sinks.telemetry import SinkTelemetry

__all__ = ["BrokerProbe", "SinkWebServer"]

log = logging.getLogger("pipeline.sink.web")

PROBE_TTL_S = 2.0
PROBE_TIMEOUT_S = 1.0
REQUEST_TIMEOUT_S = 10.0


class BrokerProbe:
    """Whether a bootstrap broker accepts a TCP connection; the answer is kept `ttl` seconds.

    Thread-safe: concurrent requests share one probe run. Called by /readyz and /metrics.
    """

    def __init__(
        self, bootstrap: str, *, ttl: float = PROBE_TTL_S, timeout: float = PROBE_TIMEOUT_S
    ) -> None:
        self.hosts = [h.strip() for h in bootstrap.split(",") if h.strip()]
        self.ttl = ttl
        self.timeout = timeout
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._ok = False

    def __call__(self) -> bool:
        with self._lock:
            if time.monotonic() - self._at >= self.ttl:
                self._ok = any(self._reachable(h) for h in self.hosts)
                self._at = time.monotonic()
            return self._ok

    def _reachable(self, hostport: str) -> bool:
        host, _, port = hostport.rpartition(":")
        try:
            with socket.create_connection(
                (host.strip("[]") or "localhost", int(port or 9092)), timeout=self.timeout
            ):
                return True
        except (OSError, ValueError):
            return False


class _Server(ThreadingHTTPServer):
    """The HTTP server with the telemetry its handlers read."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], telemetry: SinkTelemetry) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.telemetry = telemetry
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that hung up mid-answer is not the sink's problem; no traceback on stderr
        log.debug("web request from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    timeout = REQUEST_TIMEOUT_S
    server_version = "ardary-sink"

    def do_GET(self) -> None:
        telemetry = cast(_Server, self.server).telemetry
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._json(HTTPStatus.OK, {"status": "ok"})
        elif path == "/readyz":
            answer = telemetry.readiness()
            body = {"status": "ready" if answer.ready else "not ready", "reason": answer.reason}
            self._json(HTTPStatus.OK if answer.ready else HTTPStatus.SERVICE_UNAVAILABLE, body)
        elif path == "/metrics":
            self._send(HTTPStatus.OK, telemetry.render(), CONTENT_TYPE_LATEST)
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": "not_found", "path": path})

    def _json(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # probes and scrapes every few seconds: not worth a log line each


class SinkWebServer:
    """/healthz, /readyz and /metrics of `telemetry` on `host:port`, served from a daemon thread.

    The port is bound when the object is built, so "already in use" raises `OSError` there,
    before the sink starts; `start` then serves until `close`. Port 0 takes a free port
    (`port` tells which).
    """

    def __init__(self, host: str, port: int, telemetry: SinkTelemetry) -> None:
        self._server = _Server((host, port), telemetry)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.5},
            name="sink-web",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port (waits for `serve_forever` to return)."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> SinkWebServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
