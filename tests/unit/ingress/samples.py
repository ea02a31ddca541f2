"""Callback examples for the ingress tests: the parser engineer's seed fixtures, plus helpers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "callbacks"

KIND_BY_TYPE = {
    "StatusCallback": "status",
    "ClickCallback": "click",
    "IncomingSms": "incoming_sms",
    "CallEvent": "call",
    "CallQualification": "qualification",
}


@dataclass(frozen=True)
class Sample:
    name: str
    param: str
    value: str  # the JSON text Ardary would put in the parameter
    record_type: str

    @property
    def kind(self) -> str:
        return KIND_BY_TYPE[self.record_type]

    def query(self) -> bytes:
        """`param=<encodeURIComponent(json)>`, as Ardary builds it."""
        return f"{self.param}={quote(self.value, safe='')}".encode()


def seed_samples() -> list[Sample]:
    """Every fixture of tests/fixtures/callbacks (both dialects), or a built-in few."""
    samples = []
    for path in sorted(FIXTURES.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        value = data["value"] if isinstance(data["value"], str) else json.dumps(data["value"])
        samples.append(Sample(path.stem, data["param"], value, data["expected"]["type"]))
    if samples:
        return samples
    return [
        Sample(
            "status",
            "status",
            json.dumps(
                {"phone_number": "+33612345678", "status": "received", "id_sms_api": "abc1"}
            ),
            "StatusCallback",
        ),
        Sample(
            "clics",
            "clics",
            json.dumps(
                {"id_sms_api": "abc1", "phone_number": "+33612345678", "link": "https://x.test/"}
            ),
            "ClickCallback",
        ),
    ]


def status_json(id_sms_api: str = "msg-1", message_pad: str = "") -> str:
    obj = {
        "user": "SENDER_LOGIN",
        "phone_number": "+33612345678",
        "status": "received",
        "date_status": "2019-08-09T12:50:54.211Z",
        "id_sms_api": id_sms_api,
    }
    if message_pad:
        obj["note"] = message_pad
    return json.dumps(obj)


def incoming_json(body: str) -> str:
    return json.dumps(
        {
            "device_identification": "user@email.com",
            "title": "incoming_sms",
            "from": "+33698765432",
            "message": body,
            "date": "2023-12-17T20:15:30.565Z",
        },
        ensure_ascii=False,  # as JSON.stringify does
    )
