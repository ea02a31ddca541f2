"""Run the ingress in-process (uvicorn on the current event loop) for tests and the demo.

The same ASGI app as `ardary-pipeline ingress`, which serves it with granian instead: granian
runs apps in worker processes, which tests and the demo cannot reach into. Use the CLI (or
`pipeline.ingress.server.serve`) where throughput matters.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import uvicorn

from pipeline.errors import BrokerError
from pipeline.ingress.app import IngressApp, create_app
from pipeline.ingress.durable import Publisher
from pipeline.settings import Settings

__all__ = ["RunningIngress", "run_ingress"]


@dataclass(frozen=True, slots=True)
class RunningIngress:
    """A served ingress: `url` is the base URL (no trailing slash), `app` the ASGI app."""

    url: str
    app: IngressApp

    def callback_url(self, token: str | None) -> str:
        """The callback URL Ardary should call (holds the token: never log it)."""
        return f"{self.url}/callbacks/{token}" if token else f"{self.url}/callbacks"


@contextlib.asynccontextmanager
async def run_ingress(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    publisher: Publisher | None = None,
    publish_timeout: float = 5.0,
    startup_timeout: float = 30.0,
) -> AsyncIterator[RunningIngress]:
    """Serve the ingress until the block exits; then drain, flush the producer and stop.

    `port=0` picks a free port (see `.url`). A broker unreachable at start-up raises
    BrokerError instead of serving 503s.
    """
    app = create_app(settings, publisher=publisher, publish_timeout=publish_timeout)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="none",
        http="httptools",
        lifespan="on",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=15,
        server_header=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + startup_timeout
    while not server.started:
        if task.done():
            task.result()  # re-raises a crash
            raise BrokerError("the ingress did not start (is Kafka reachable?)")
        if loop.time() > deadline:
            server.should_exit = True
            await task
            raise BrokerError(f"the ingress did not start within {startup_timeout:g}s")
        await asyncio.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()
    try:
        yield RunningIngress(url=f"http://{bound[0]}:{bound[1]}", app=app)
    finally:
        server.should_exit = True
        await task
