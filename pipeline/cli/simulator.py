"""The `ardary-pipeline simulator` command: serve the Ardary simulator until Ctrl-C."""

from __future__ import annotations

from urllib.parse import urlsplit

import click

from pipeline.errors import ConfigError

__all__ = ["simulator"]


def _probability(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"--{name}: must be between 0 and 1")
    return value


def _callback_url(value: str | None) -> str | None:
    """An absolute http(s) URL, checked here: a bad one would fail only at each callback."""
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("--callback-url: give an http:// or https:// URL with a host")
    return value


def _rate(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        rate = float(value.removesuffix("/s"))
    except ValueError:
        raise ConfigError("--rate-limit: give messages per second, e.g. 100/s") from None
    if rate <= 0:
        raise ConfigError("--rate-limit: must be positive")
    return rate


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=int)
@click.option("--callback-url", default=None, help="Where callbacks go; none → no callbacks.")
@click.option(
    "--dialect",
    type=click.Choice(["v1", "v2", "mixed"]),
    default="v2",
    show_default=True,
    help="Callback dialect; mixed: each message's callbacks in one or the other.",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--latency-ms", default=0.0, show_default=True, type=float)
@click.option("--fail-rate", default=0.0, show_default=True, type=float, help="Share of 503s.")
@click.option("--throttle-rate", default=0.0, show_default=True, type=float, help="Share of 429s.")
@click.option(
    "--timeout-rate",
    default=0.0,
    show_default=True,
    type=float,
    help="Share of requests held --hold-seconds.",
)
@click.option("--hold-seconds", default=30.0, show_default=True, type=float)
@click.option(
    "--unknown-error-rate",
    default=0.0,
    show_default=True,
    type=float,
    help="Share of messages answered #009.",
)
@click.option("--rate-limit", default=None, help="Messages/s over a sliding second, e.g. 100/s.")
@click.option("--click-probability", default=0.3, show_default=True, type=float)
@click.option("--reply-probability", default=0.1, show_default=True, type=float)
@click.option("--stop-probability", default=0.02, show_default=True, type=float)
@click.option("--missed-call-probability", default=0.02, show_default=True, type=float)
@click.option("--duplicate-probability", default=0.0, show_default=True, type=float)
@click.option(
    "--drop-status-rate",
    default=0.0,
    show_default=True,
    type=float,
    envvar="SIMULATOR_DROP_STATUS_RATE",
    help="Share of messages whose delivery receipt never comes (overdue with a short "
    "DELIVERY_RECEIPT_TIMEOUT_SECONDS).",
)
@click.option("--shuffle/--no-shuffle", default=False, show_default=True)
@click.option("--delivery-delay-ms", default=200.0, show_default=True, type=float)
@click.option(
    "--callback-attempts",
    default=4,
    show_default=True,
    type=click.IntRange(1, 20),
    help="Tries per callback (1: never retried, as Ardary documents no retry).",
)
@click.option(
    "--accounts",
    default=None,
    help='JSON {"login": "key"} or {"login": {"key": "…", "active": false}}; '
    "none → any login with a non-empty key.",
)
def simulator(
    host: str,
    port: int,
    callback_url: str | None,
    dialect: str,
    seed: int,
    latency_ms: float,
    fail_rate: float,
    throttle_rate: float,
    timeout_rate: float,
    hold_seconds: float,
    unknown_error_rate: float,
    rate_limit: str | None,
    click_probability: float,
    reply_probability: float,
    stop_probability: float,
    missed_call_probability: float,
    duplicate_probability: float,
    drop_status_rate: float,
    shuffle: bool,
    delivery_delay_ms: float,
    callback_attempts: int,
    accounts: str | None,
) -> None:
    """Ardary API simulator (sendSms, sendSmsSolo, contact) that also fires callbacks."""
    from pipeline.devtools.simulator.config import SimulatorConfig, parse_accounts
    from pipeline.devtools.simulator.runner import serve_forever

    try:
        parsed_accounts = parse_accounts(accounts) if accounts else None
    except ValueError as exc:
        raise ConfigError(f"--accounts: {exc}") from exc
    config = SimulatorConfig(
        callback_url=_callback_url(callback_url),
        dialect="v1" if dialect == "v1" else "mixed" if dialect == "mixed" else "v2",
        seed=seed,
        accounts=parsed_accounts,
        latency_ms=latency_ms,
        fail_rate=_probability("fail-rate", fail_rate),
        throttle_rate=_probability("throttle-rate", throttle_rate),
        timeout_rate=_probability("timeout-rate", timeout_rate),
        hold_seconds=hold_seconds,
        unknown_error_rate=_probability("unknown-error-rate", unknown_error_rate),
        rate_limit=_rate(rate_limit),
        click_probability=_probability("click-probability", click_probability),
        reply_probability=_probability("reply-probability", reply_probability),
        stop_probability=_probability("stop-probability", stop_probability),
        missed_call_probability=_probability("missed-call-probability", missed_call_probability),
        duplicate_probability=_probability("duplicate-probability", duplicate_probability),
        drop_status_rate=_probability("drop-status-rate", drop_status_rate),
        shuffle=shuffle,
        delivery_delay_ms=delivery_delay_ms,
        callback_attempts=callback_attempts,
    )
    click.echo(
        f"Ardary simulator: ARDARY_BASE_URL=http://{host}:{port}/api "
        f"(control: http://{host}:{port}/_sim/stats)"
    )
    serve_forever(config, host, port)
