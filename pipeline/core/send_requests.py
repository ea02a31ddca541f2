"""Send requests as upstream apps give them: validated into `SendRequest` records (pure).

`parse_send_request` accepts the contract's field names and Ardary's own
(`phonenumber`, `priorite`), normalises the phone number to E.164 and the send date to UTC
(a naive `YYYY-MM-DD HH:MM:SS` is wall-clock time in ARDARY_TIMEZONE), and raises `InputError`
with a one-line reason. Unknown fields are ignored, so Ardary payloads can be fed as they are.

`marketing` has the same name in the contract and in Ardary's docs (the PHP example posts a
per-message `marketing`); Ardary's spelling of its value is a 0/1 flag, like its `addStop` and
`addReply` (`1`, or `"1"` from the PHP example's form field), so those are read as well as JSON
`true`/`false` and `"true"`/`"false"`. `addStop`/`add_stop` in the input are not read as
marketing: the STOP mention is what the pipeline derives from `marketing`, not the other way.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

from pipeline.ardary.phones import normalize_phone
from pipeline.ardary.times import parse_ardary_time
from pipeline.errors import InputError
from pipeline.records import Routing, SendRequest

__all__ = ["MAX_ID_LENGTH", "parse_send_request"]

_ALIASES = {"phonenumber": "phone_number", "priorite": "priority"}
_PARIS = ZoneInfo("Europe/Paris")
MAX_ID_LENGTH = 64


def _text(obj: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = obj.get(name)
    if value is None or value == "":
        if required:
            raise InputError(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise InputError(f"{name} must be a string, not {type(value).__name__}")
    return value


def _field(obj: Mapping[str, Any], name: str) -> Any:
    """A field by its contract name or its Ardary alias (both given: they must agree)."""
    values = [obj[k] for k in (name, *[a for a, n in _ALIASES.items() if n == name]) if k in obj]
    if len({repr(v) for v in values}) > 1:
        raise InputError(f"{name} is given twice with different values")
    return values[0] if values else None


def _priority(value: Any) -> int:
    if value is None or value == "":
        return 1
    if isinstance(value, bool):
        raise InputError("priority must be 0, 1 or 2")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InputError("priority must be 0, 1 or 2") from None
    if number not in (0, 1, 2) or (isinstance(value, float) and value != number):
        raise InputError("priority must be 0, 1 or 2")
    return number


_TRUE = frozenset({"1", "true"})
_FALSE = frozenset({"", "0", "false"})


def _marketing(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return value == 1
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise InputError("marketing must be true or false (or Ardary's 1 or 0)")


def _metadata(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError("metadata must be an object of strings")
    out: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise InputError(f"metadata.{key} must be a string")
        out[str(key)] = str(item)
    return out


def parse_send_request(
    obj: Mapping[str, Any],
    *,
    now: datetime,
    default_login: str | None = None,
    tz: ZoneInfo = _PARIS,
) -> SendRequest:
    """A validated SendRequest from a JSON object; `InputError` says what is wrong."""
    if not isinstance(obj, Mapping):
        raise InputError("a send request must be a JSON object")
    id_sms_api = _text(obj, "id_sms_api") or uuid.uuid4().hex
    if len(id_sms_api) > MAX_ID_LENGTH:
        raise InputError(f"id_sms_api is longer than {MAX_ID_LENGTH} characters")
    login = _text(obj, "login") or default_login
    if not login:
        raise InputError("login is required (or set ARDARY_LOGIN)")
    phone_raw = _field(obj, "phone_number")
    if phone_raw is None or phone_raw == "":
        raise InputError("phone_number (or phonenumber) is required")
    if not isinstance(phone_raw, str):
        raise InputError("phone_number must be a string")
    phone = normalize_phone(phone_raw)
    if not phone.parsed or not phone.valid:
        raise InputError(f"phone_number {phone_raw!r} is not a valid international number")
    message = _text(obj, "message", required=True)
    assert message is not None
    try:
        date_to_send = parse_ardary_time(_text(obj, "date_to_send"), tz)
    except ValueError as exc:
        raise InputError(f"date_to_send: {exc}") from None
    routing = (_text(obj, "routing") or "SERVER").upper()
    if routing not in ("SERVER", "MOBILE"):
        raise InputError("routing must be SERVER or MOBILE")
    return SendRequest(
        id_sms_api=id_sms_api,
        login=login,
        phone_number=phone.e164,
        message=message,
        requested_at=now,
        url=_text(obj, "url"),
        date_to_send=date_to_send,
        priority=_priority(_field(obj, "priority")),
        routing=cast(Routing, routing),
        sender_name=_text(obj, "sender_name"),
        metadata=_metadata(obj.get("metadata")),
        marketing=_marketing(obj.get("marketing")),
    )
