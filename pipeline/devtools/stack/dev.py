"""`ardary-pipeline dev`: the demo's stack kept running until Ctrl-C, with a trickle of traffic."""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from pipeline.devtools.stack.stack import StackOptions, run_stack
from pipeline.devtools.stack.traffic import demo_requests
from pipeline.kafka.send_requests import SendRequestPublisher
from pipeline.serde import codec_for
from pipeline.settings import Settings

__all__ = ["run_dev"]


def run_dev(settings: Settings, *, dialect: str, trickle: float, run_dir: Path) -> None:
    """Start the stack, print where everything is, publish `trickle` requests/s until stopped."""

    console = Console()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with run_stack(settings, StackOptions(run_dir=run_dir, dialect=dialect)) as stack:
        console.print(f"broker     {stack.bootstrap}  (topics {stack.prefix}*)")
        console.print(f"ingress    {stack.ingress_url}")
        console.print(f"dashboard  {stack.worker_url}/")
        console.print(f"simulator  {stack.simulator_url}/_sim/stats")
        console.print(f"warehouse  {stack.warehouse_path}   logs: {run_dir}")
        console.print("Ctrl-C to stop.")
        try:
            codec = codec_for(settings)
            with SendRequestPublisher(stack.client, prefix=stack.prefix, codec=codec) as pub:
                requests = demo_requests(
                    10**9, seed=int(time.time()), clock=lambda: datetime.now(UTC)
                )
                while not stop.is_set():
                    if trickle > 0:
                        pub.publish(next(requests))
                        pub.flush()
                    stack.processes.check_alive()
                    stop.wait(1.0 / trickle if trickle > 0 else 1.0)
        except KeyboardInterrupt:
            console.print("stopping…")
