"""Which callbacks an accepted message triggers, when, and in which dialect (pure, seeded).

Every draw for a message comes from `random.Random(f"{seed}:{id_sms_api}")`, in a fixed order,
so the same seed and id give the same plan however requests interleave. With `dialect="mixed"`
each message's callbacks are all in one dialect, drawn from a stream of its own (so the other
draws, and the plans of the single-dialect modes, stay as they were).

Dialects (Ardary's two published API documents):
- v1: `?status=` {user, phonenumber, status, date_status ISO-Z, id_sms_api};
  `?click=` {title "clicked link", phonenumber, link, date naive local, id_sms_api};
  `?message=` {title "incoming sms", from, body, date naive local};
  `?call=` {title "incoming call", phonenumber, call_date naive local} (v1 knows no missed call).
- v2: `?status=` {user, phone_number, status, date_status ISO-Z, id_sms_api};
  `?clics=` {id_sms_api, title "clicked link", phone_number, link, date naive local};
  `?message=` {device_identification, title "incoming_sms", from, message, date ISO-Z};
  `?calls=` {device_identification, title "missed_call", phone_number, call_time naive local,
  duration "0"}.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pipeline.ardary.api import LINK_PLACEHOLDERS
from pipeline.devtools.simulator.config import Dialect, SimulatorConfig

__all__ = [
    "REPLY_TEXTS",
    "AcceptedMessage",
    "PlannedCallback",
    "dialect_for",
    "drops_receipt",
    "message_rng",
    "plan_callbacks",
]

REPLY_TEXTS: tuple[str, ...] = ("OK thanks", "Yes", "See you tomorrow", "Who is this?", "Merci")


@dataclass(frozen=True, slots=True)
class AcceptedMessage:
    """What the plan needs of a message accepted in prod mode."""

    id_sms_api: str
    login: str
    phone_number: str
    message: str
    url: str | None
    accepted_at: datetime


@dataclass(frozen=True, slots=True)
class PlannedCallback:
    """One GET to the callback URL: `?{param}={urlencoded json of payload}` after `delay` s."""

    kind: str  # status:sent, status:received, click, reply, stop, missed_call
    delay: float
    param: str
    payload: Mapping[str, Any]
    phone_number: str
    joins_stop_list: bool = False


def message_rng(seed: int, id_sms_api: str) -> random.Random:
    """The random stream of one message (string seeds hash deterministically)."""
    return random.Random(f"{seed}:{id_sms_api}")


def dialect_for(config: SimulatorConfig, id_sms_api: str) -> Dialect:
    """The dialect of a message's callbacks: the configured one, or a seeded draw when mixed."""
    if config.dialect != "mixed":
        return config.dialect
    return "v1" if message_rng(config.seed, f"dialect:{id_sms_api}").random() < 0.5 else "v2"


def _iso_z(moment: datetime) -> str:
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def _local(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def _status(d: Dialect, m: AcceptedMessage, status: str, at: datetime) -> dict[str, Any]:
    phone_key = "phonenumber" if d == "v1" else "phone_number"
    return {
        "user": m.login,
        phone_key: m.phone_number,
        "status": status,
        "date_status": _iso_z(at),
        "id_sms_api": m.id_sms_api,
    }


def _click(
    d: Dialect, m: AcceptedMessage, at: datetime, zone: ZoneInfo
) -> tuple[str, dict[str, Any]]:
    if d == "v1":
        return "click", {
            "title": "clicked link",
            "phonenumber": m.phone_number,
            "link": m.url,
            "date": _local(at, zone),
            "id_sms_api": m.id_sms_api,
        }
    return "clics", {
        "id_sms_api": m.id_sms_api,
        "title": "clicked link",
        "phone_number": m.phone_number,
        "link": m.url,
        "date": _local(at, zone),
    }


def _incoming(
    d: Dialect, m: AcceptedMessage, text: str, at: datetime, zone: ZoneInfo
) -> dict[str, Any]:
    if d == "v1":
        return {
            "title": "incoming sms",
            "from": m.phone_number,
            "body": text,
            "date": _local(at, zone),
        }
    return {
        "device_identification": m.login,
        "title": "incoming_sms",
        "from": m.phone_number,
        "message": text,
        "date": _iso_z(at),
    }


def _call(
    d: Dialect, m: AcceptedMessage, at: datetime, zone: ZoneInfo
) -> tuple[str, dict[str, Any]]:
    if d == "v1":
        return "call", {
            "title": "incoming call",
            "phonenumber": m.phone_number,
            "call_date": _local(at, zone),
        }
    return "calls", {
        "device_identification": m.login,
        "title": "missed_call",
        "phone_number": m.phone_number,
        "call_time": _local(at, zone),
        "duration": "0",
    }


def drops_receipt(config: SimulatorConfig, id_sms_api: str) -> bool:
    """Whether this message's delivery receipt is never sent (`drop_status_rate`).

    Drawn from a stream of its own, so the rest of a message's plan is the same at any rate.
    """
    rate = config.drop_status_rate
    return rate > 0 and message_rng(config.seed, f"{id_sms_api}:receipt").random() < rate


def plan_callbacks(config: SimulatorConfig, m: AcceptedMessage) -> tuple[PlannedCallback, ...]:
    """The callbacks `m` triggers, sorted by delay (duplicates and shuffle included).

    A message whose receipt is dropped (`drops_receipt`) gets no ``received`` status: its
    ``sent`` status, clicks and replies still come, as when only the carrier's receipt is lost.
    """
    rng = message_rng(config.seed, m.id_sms_api)
    zone = ZoneInfo(config.timezone)
    d = dialect_for(config, m.id_sms_api)
    base = config.delivery_delay_ms / 1000.0
    sent = base * rng.uniform(0.1, 0.3)
    received = base * rng.uniform(0.8, 1.2)
    at = m.accepted_at
    plan: list[PlannedCallback] = [
        PlannedCallback(
            "status:sent",
            sent,
            "status",
            _status(d, m, "sent", at + timedelta(seconds=sent)),
            m.phone_number,
        ),
        PlannedCallback(
            "status:received",
            received,
            "status",
            _status(d, m, "received", at + timedelta(seconds=received)),
            m.phone_number,
        ),
    ]
    clicked = rng.random() < config.click_probability
    click_delay = received + base * rng.uniform(0.5, 2.0)
    if clicked and m.url and any(p in m.message for p in LINK_PLACEHOLDERS):
        param, payload = _click(d, m, at + timedelta(seconds=click_delay), zone)
        plan.append(PlannedCallback("click", click_delay, param, payload, m.phone_number))
    replied = rng.random() < config.reply_probability
    reply_delay = received + base * rng.uniform(1.0, 3.0)
    reply_text = REPLY_TEXTS[rng.randrange(len(REPLY_TEXTS))]
    if replied:
        payload = _incoming(d, m, reply_text, at + timedelta(seconds=reply_delay), zone)
        plan.append(PlannedCallback("reply", reply_delay, "message", payload, m.phone_number))
    stopped = rng.random() < config.stop_probability
    stop_delay = received + base * rng.uniform(1.0, 3.0)
    if stopped:
        payload = _incoming(d, m, "STOP", at + timedelta(seconds=stop_delay), zone)
        plan.append(PlannedCallback("stop", stop_delay, "message", payload, m.phone_number, True))
    called = rng.random() < config.missed_call_probability
    call_delay = received + base * rng.uniform(0.5, 3.0)
    if called:
        param, payload = _call(d, m, at + timedelta(seconds=call_delay), zone)
        plan.append(PlannedCallback("missed_call", call_delay, param, payload, m.phone_number))
    final: list[PlannedCallback] = []
    extra_max = config.shuffle_max_ms / 1000.0
    for cb in plan:
        shift = rng.uniform(0, extra_max) if config.shuffle else 0.0
        final.append(_shifted(cb, shift))
        if rng.random() < config.duplicate_probability:
            final.append(_shifted(cb, shift + rng.uniform(0, max(extra_max, base))))
    if drops_receipt(config, m.id_sms_api):
        final = [cb for cb in final if cb.kind != "status:received"]
    final.sort(key=lambda cb: cb.delay)
    return tuple(final)


def _shifted(cb: PlannedCallback, extra: float) -> PlannedCallback:
    return PlannedCallback(
        cb.kind, cb.delay + extra, cb.param, cb.payload, cb.phone_number, cb.joins_stop_list
    )
