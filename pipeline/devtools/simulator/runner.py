"""Run an ASGI app (the simulator, or a test receiver) in-process under uvicorn on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from pipeline.devtools.simulator.app import SimulatorState, build_app
from pipeline.devtools.simulator.config import SimulatorConfig

__all__ = ["RunningServer", "RunningSimulator", "run_simulator", "serve_app", "serve_forever"]


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without signal handling: the host process owns its signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True, slots=True)
class RunningServer:
    """An app being served: where to reach it."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """The server's root URL."""
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class RunningSimulator:
    """A running simulator: `base_url` is what ARDARY_BASE_URL should be."""

    host: str
    port: int
    state: SimulatorState

    @property
    def url(self) -> str:
        """The root URL (the `/_sim/…` control routes live here)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The API root, shaped like the real one (`…/api`)."""
        return f"{self.url}/api"


@contextlib.asynccontextmanager
async def serve_app(
    app: Any, host: str = "127.0.0.1", port: int = 0, *, startup_timeout: float = 10.0
) -> AsyncIterator[RunningServer]:
    """Serve `app` until the block exits; the socket is bound first, so port=0 just works."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=1,
        backlog=2048,
    )
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(startup_timeout):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("server stopped during start-up")
                await asyncio.sleep(0.01)
        yield RunningServer(host, bound_port)
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, timeout=startup_timeout)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
        finally:
            sock.close()


@contextlib.asynccontextmanager
async def run_simulator(
    config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[RunningSimulator]:
    """`async with run_simulator(cfg) as sim:` — a live simulator at `sim.base_url`."""
    app = build_app(config or SimulatorConfig())
    async with serve_app(app, host, port) as server:
        yield RunningSimulator(server.host, server.port, app.state.sim)


def serve_forever(config: SimulatorConfig, host: str, port: int) -> None:
    """Serve the simulator in the foreground until Ctrl-C or SIGTERM (`ardary-pipeline
    simulator`), then exit 0 like the other commands: `uvicorn.run` re-raises the signal after
    its graceful stop, so a supervisor would see -15 for a clean stop."""
    server = _EmbeddedServer(
        uvicorn.Config(
            build_app(config), host=host, port=port, log_level="warning", access_log=False
        )
    )

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.handle_exit, sig, None)
        await server.serve()

    asyncio.run(serve())
