"""The chaos load generator's own callbacks: incoming SMS, calls and qualifications (pure).

They are not tied to any message the pipeline sent (Ardary reports them for the sender's phone
line), so they test the door alone. Each one is unique — the body, the qualification text or the
call time carries the sequence number — so a copy of it in the warehouse can be told apart from
a second delivery, and its JSON text is what the warehouse keeps in `raw`, byte for byte.
Both dialects, in the shapes of the vendor docs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson

__all__ = ["GeneratedCallback", "generated_callback"]

_PARIS = ZoneInfo("Europe/Paris")
_LOGINS = ("shop@demo.ardary.test", "bank@demo.ardary.test", "clinic@demo.ardary.test")
_CALL_TITLES = ("missed_call", "incoming_call", "outgoing_call")
_QUALIFICATIONS = ("call_qualification_from_mobile", "call_qualification_from_interface")


@dataclass(frozen=True, slots=True)
class GeneratedCallback:
    """One callback to send: `?{param}=` + URL-encoded `raw`."""

    seq: int
    param: str
    raw: str


def _local(moment: datetime) -> str:
    return moment.astimezone(_PARIS).strftime("%Y-%m-%d %H:%M:%S")


def _iso_z(moment: datetime) -> str:
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def generated_callback(seed: int, seq: int, now: datetime) -> GeneratedCallback:
    """The `seq`-th callback of a run seeded `seed`: its kind and dialect drawn from both."""
    rng = random.Random(f"chaos-callback:{seed}:{seq}")
    phone = f"+3367{rng.randrange(10**7):07d}"
    login = _LOGINS[seq % len(_LOGINS)]
    v1 = rng.random() < 0.5
    kind = rng.choice(("sms", "sms", "call", "qualification"))
    # seconds in the past, unique per seq: a call time that differs from every other one
    at = now - timedelta(seconds=seq % 3600, milliseconds=seq % 1000)
    tag = f"chaos {seed} #{seq:07d}"
    param: str
    obj: dict[str, Any]
    if kind == "sms":
        param = "message"
        if v1:
            obj = {
                "title": "incoming sms",
                "from": phone,
                "body": f"Reply {tag}",
                "date": _local(at),
            }
        else:
            obj = {
                "device_identification": login,
                "title": "incoming_sms",
                "from": phone,
                "message": f"Reply {tag}",
                "date": _iso_z(at),
            }
    elif kind == "call":
        if v1:
            param = "call"
            obj = {
                "title": "incoming call",
                "phonenumber": phone,
                "call_date": f"{_local(at)}",
                "ref": tag,
            }
        else:
            param = "calls"
            obj = {
                "device_identification": login,
                "title": rng.choice(_CALL_TITLES),
                "phone_number": phone,
                "call_time": _local(at),
                "duration": "0"
                if rng.random() < 0.5
                else f"00:{rng.randrange(60):02d}:{rng.randrange(60):02d}",
                "ref": tag,
            }
    else:
        param = "qualification"
        obj = {
            "device_identification": login,
            "title": rng.choice(_QUALIFICATIONS),
            "from": phone,
            "date": _local(at),
            "qualification": f"Follow-up {tag}",
        }
    return GeneratedCallback(seq, param, orjson.dumps(obj).decode())
