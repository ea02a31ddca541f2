"""The ingress benchmark's workload: callback URLs of both dialects, in a realistic mix.

Pure (no I/O): the same seed gives the same URLs, so runs compare like with like.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

__all__ = ["TOKEN", "encoded_records", "generate_paths"]

TOKEN = "bench-token"  # noqa: S105 - a throwaway token for a local benchmark
_WORDS = tuple(
    "Bonjour merci votre commande est prête rendez-vous demain à 10h00 "  # noqa: SIM905
    "code promo livraison été café Ça marche 👍 STOP OK oui non rappel".split()
)


def _text(rng: random.Random, low: int, high: int) -> str:
    words: list[str] = []
    target = rng.randint(low, high)
    while sum(len(w) + 1 for w in words) < target:
        words.append(rng.choice(_WORDS))
    return " ".join(words)[:target]


def _phone(rng: random.Random) -> str:
    return f"+336{rng.randint(10_000_000, 99_999_999)}"


def _callback(rng: random.Random, n: int) -> tuple[str, dict[str, Any]]:
    """One callback (param, object) of a realistic mix: mostly statuses, then clicks, SMS, calls."""
    v2 = rng.random() < 0.6
    phone_key = "phone_number" if v2 else "phonenumber"
    roll = rng.random()
    if roll < 0.55:
        return "status", {
            "user": "sender@example.com",
            phone_key: _phone(rng),
            "status": rng.choice(("sent", "received")),
            "date_status": "2024-05-06T12:50:54.211Z",
            "id_sms_api": f"bench-{n:08d}",
        }
    if roll < 0.75:
        return ("clics" if v2 else "click"), {
            "id_sms_api": f"bench-{n:08d}",
            "title": "clicked link",
            phone_key: _phone(rng),
            "link": f"https://shop.example.com/p/{rng.randint(1, 10**6)}?utm_source=sms",
            "date": "2024-05-06 17:04:13",
        }
    if roll < 0.90:
        body = _text(rng, 10, 480)
        if v2:
            return "message", {
                "device_identification": "user@email.com",
                "title": "incoming_sms",
                "from": _phone(rng),
                "message": body,
                "date": "2024-05-06T20:15:30.565Z",
            }
        return "message", {
            "title": "incoming sms",
            "from": _phone(rng),
            "body": body,
            "date": "2024-05-06 10:01:38",
        }
    if roll < 0.97:
        if v2:
            return "calls", {
                "device_identification": "user@email.com",
                "title": rng.choice(("incoming_call", "outgoing_call", "missed_call")),
                "phone_number": _phone(rng),
                "call_time": "2024-05-06 20:32:51",
                "duration": rng.choice(("0", "00:01:12", "01:02:03")),
            }
        return "call", {
            "title": "incoming call",
            "phonenumber": _phone(rng),
            "call_date": "2024-05-06 15:11:04",
        }
    return "qualification", {
        "device_identification": "user@email.com",
        "title": rng.choice(
            ("call_qualification_from_mobile", "call_qualification_from_interface")
        ),
        "from": _phone(rng),
        "date": "2024-05-06 23:57:52",
        "qualification": _text(rng, 10, 80),
    }


def generate_paths(count: int, token: str = TOKEN, seed: int = 7) -> list[str]:
    """`count` distinct callback paths (`/callbacks/<token>?param=<encodeURIComponent(json)>`)."""
    rng = random.Random(seed)
    paths = []
    for n in range(count):
        param, obj = _callback(rng, n)
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        paths.append(f"/callbacks/{token}?{param}={quote(text, safe='')}")
    return paths


def encoded_records(paths: Sequence[str], prefix: str) -> list[tuple[str, bytes | None, bytes]]:
    """What the ingress publishes for these paths: (topic, key, value) per record."""
    from pipeline.ardary.callbacks import parse_callbacks
    from pipeline.ingress.decode import decode_query
    from pipeline.serde import make_codec
    from pipeline.topics import record_key, topic_for_record

    codec = make_codec(None)
    now = datetime.now(UTC)
    tz = ZoneInfo("Europe/Paris")
    out = []
    for path in paths:
        query = path.split("?", 1)[1].encode()
        for record in parse_callbacks(decode_query(query), received_at=now, tz=tz):
            topic = topic_for_record(type(record)).full_name(prefix)
            out.append((topic, record_key(record), codec.encode(record)))
    return out
