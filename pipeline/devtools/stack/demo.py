"""`ardary-pipeline demo`: N send requests through the whole local stack, with live progress,
then a summary read from the warehouse."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.core.lifecycle import is_final
from pipeline.devtools.stack.stack import Stack, StackOptions, run_stack, wait_sink_caught_up
from pipeline.devtools.stack.summary import DemoSummary, read_summary
from pipeline.devtools.stack.traffic import demo_requests
from pipeline.errors import PipelineError
from pipeline.kafka.send_requests import SendRequestPublisher
from pipeline.records import SmsLifecycle
from pipeline.serde import codec_for
from pipeline.settings import Settings
from pipeline.topics import spec_for

__all__ = ["LifecycleTally", "print_summary", "run_demo"]


@dataclass
class LifecycleTally:
    """The latest lifecycle per message, as read from `sms.lifecycle`, and its counts."""

    latest: dict[str, SmsLifecycle] = field(default_factory=dict)

    def add(self, record: SmsLifecycle) -> None:
        self.latest[record.id_sms_api] = record

    def count(self, predicate: str) -> int:
        checks = {
            "submitted": lambda r: r.submitted_at is not None or r.state in ("SENT", "DELIVERED"),
            "delivered": lambda r: r.state == "DELIVERED",
            "clicked": lambda r: r.click_count > 0,
            "final": is_final,
        }
        check = checks[predicate]
        return sum(1 for r in self.latest.values() if check(r))


def _follow_lifecycles(stack: Stack) -> Any:
    from kafka import KafkaConsumer

    topic = spec_for("sms.lifecycle").full_name(stack.prefix)
    return KafkaConsumer(
        topic,
        **stack.client.kafka_python(),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )


def run_demo(
    settings: Settings,
    *,
    messages: int,
    dialect: str,
    run_dir: Path,
    console: Console,
    timeout: float = 600.0,
) -> DemoSummary:
    """Run the demo end to end; raise PipelineError if it does not complete within `timeout`."""
    started = time.monotonic()
    options = StackOptions(run_dir=run_dir, dialect=dialect)
    with run_stack(settings, options) as stack:
        console.print(
            f"stack up in {time.monotonic() - started:.1f}s — broker {stack.bootstrap}, "
            f"simulator {stack.simulator_url}, dashboard {stack.worker_url}/"
        )
        console.print(f"logs: {run_dir}")
        codec = codec_for(settings)
        with SendRequestPublisher(stack.client, prefix=stack.prefix, codec=codec) as pub:
            for request in demo_requests(
                messages, seed=options.seed, clock=lambda: datetime.now(UTC)
            ):
                pub.publish(request)
            pub.flush()
        tally = LifecycleTally()
        consumer = _follow_lifecycles(stack)
        deadline = time.monotonic() + timeout
        columns = (
            TextColumn("{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        try:
            with Progress(*columns, console=console, transient=False) as progress:
                tasks = {
                    name: progress.add_task(name, total=messages)
                    for name in ("published", "submitted", "delivered", "clicked", "final")
                }
                progress.update(tasks["published"], completed=messages)
                while tally.count("final") < messages:
                    for batch in consumer.poll(timeout_ms=500).values():
                        for message in batch:
                            record = codec.decode(message.value)
                            if isinstance(record, SmsLifecycle):
                                tally.add(record)
                    for name in ("submitted", "delivered", "clicked", "final"):
                        progress.update(tasks[name], completed=tally.count(name))
                    stack.processes.check_alive()
                    if time.monotonic() > deadline:
                        raise PipelineError(
                            f"demo incomplete after {timeout:.0f}s: "
                            f"{tally.count('final')}/{messages} messages final (logs: {run_dir})"
                        )
        finally:
            consumer.close()
        wait_sink_caught_up(stack)
        sink = next(c for c in stack.processes.children if c.name == "sink")
        if stack.processes.stop(sink) not in (0, None):
            raise PipelineError(f"the sink did not stop cleanly (log: {sink.log_path})")
        summary = read_summary(stack.warehouse_path)
    elapsed = time.monotonic() - started
    print_summary(console, summary, stack.warehouse_path, stack.worker_url, elapsed)
    return summary


def _fmt(value: float | None, unit: str = "") -> str:
    return "—" if value is None else f"{value:,.1f}{unit}"


def print_summary(
    console: Console, s: DemoSummary, warehouse: Path, dashboard: str, elapsed: float
) -> None:
    """The demo's last screen: the figures read from the warehouse, and where things are."""
    # A title wider than the table wraps; the source of the figures goes in the caption.
    table = Table(title=f"Demo summary — {s.messages} messages", caption="read from the warehouse")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("delivered", _fmt(s.delivered_pct, " %"))
    table.add_row("click-through (of delivered)", _fmt(s.click_through_pct, " %"))
    table.add_row("time to deliver p50", _fmt(s.p50_delivery_ms, " ms"))
    table.add_row("time to deliver p95", _fmt(s.p95_delivery_ms, " ms"))
    table.add_row("opt-outs", str(s.optouts))
    for state, count in sorted(s.by_state.items()):
        table.add_row(f"state {state}", str(count))
    for code, count in s.rejections_by_code.items():
        table.add_row(f"not sent: {code}", str(count))
    console.print(table)
    console.print(f"warehouse: {warehouse.resolve()}")
    console.print(f"  query it: duckdb {warehouse} 'FROM sms_lifecycle'")
    console.print(f"dashboard was at {dashboard}/ — `ardary-pipeline dev` keeps it running")
    console.print(f"demo finished in {elapsed:.1f}s")
