"""Ardary callbacks, in both dialects, turned into the pipeline's callback records.

Each kind of callback is one row of `_KINDS` (at the end): the query parameters that carry it,
its record type and the function that builds the record. `CALLBACK_PARAMS`, `KIND_BY_PARAM`
and `kind_of` are derived from that table.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from hashlib import blake2b
from typing import Any, TypeAlias
from urllib.parse import unquote
from zoneinfo import ZoneInfo

import orjson

from pipeline.ardary.phones import normalize_phone
from pipeline.ardary.times import parse_ardary_time, parse_duration
from pipeline.errors import CallbackError
from pipeline.records import (
    CallDirection,
    CallEvent,
    CallQualification,
    ClickCallback,
    IncomingSms,
    QualificationSource,
    StatusCallback,
)

__all__ = [
    "CALLBACK_PARAMS",
    "FLAG_BAD_DURATION",
    "FLAG_BAD_TIMESTAMP",
    "FLAG_MISSING_BODY",
    "FLAG_MISSING_ID_SMS_API",
    "FLAG_MISSING_PHONE",
    "FLAG_PHONE_INVALID",
    "FLAG_PHONE_UNPARSED",
    "KIND_BY_PARAM",
    "CallbackRecord",
    "event_id_for",
    "kind_of",
    "parse_callbacks",
]

CallbackRecord: TypeAlias = (
    StatusCallback | ClickCallback | IncomingSms | CallEvent | CallQualification
)

# Data-quality flags: the record is kept, the doubt is written on it.
FLAG_PHONE_UNPARSED = "PHONE_UNPARSED"  # not a phone number we can read: kept as given
FLAG_PHONE_INVALID = "PHONE_INVALID"  # parsed to E.164, but not an assigned range
FLAG_MISSING_PHONE = "MISSING_PHONE"  # status/click without a number (id_sms_api suffices)
FLAG_MISSING_ID_SMS_API = "MISSING_ID_SMS_API"
FLAG_BAD_TIMESTAMP = "BAD_TIMESTAMP"  # unreadable time: field left None
FLAG_BAD_DURATION = "BAD_DURATION"  # unreadable call duration: 0
FLAG_MISSING_BODY = "MISSING_BODY"  # incoming SMS without body/message: ""

_PHONE_KEYS = ("phone_number", "phonenumber", "from")
_SENDER_KEYS = ("from", "phone_number", "phonenumber")
_DIRECTIONS: Mapping[str, CallDirection] = {
    "incoming_call": "INCOMING",
    "incoming": "INCOMING",
    "outgoing_call": "OUTGOING",
    "outgoing": "OUTGOING",
    "missed_call": "MISSED",
    "missed": "MISSED",
}
_SOURCES: Mapping[str, QualificationSource] = {
    "call_qualification_from_mobile": "MOBILE",
    "call_qualification_from_interface": "INTERFACE",
}
# Floats beyond this lost digits when the JSON was read: no longer an unambiguous id or number.
_EXACT_FLOAT = 2.0**53


def kind_of(record: CallbackRecord) -> str:
    """The kind of a callback record: status, click, incoming_sms, call or qualification."""
    return _KIND_BY_TYPE[type(record)]


def _canonical_json(obj: Mapping[str, Any]) -> bytes:
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        # Deeper than orjson writes (254 levels) or not JSON-native: the slow, total path.
        text = json.dumps(
            obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr
        )
        return text.encode("utf-8", "surrogatepass")


def event_id_for(kind: str, obj: Mapping[str, Any]) -> str:
    """A deterministic id for a callback: `kind-` + a 96-bit hash of its canonical JSON.

    Hashing the parsed object (keys sorted, no whitespace) rather than the raw text means a
    redelivered callback gets the same id even when key order, spacing or escaping differ.
    """
    digest = blake2b(_canonical_json(obj), digest_size=12).hexdigest()
    return f"{kind}-{digest}"


class _Reader:
    """Typed, coercing access to one callback object; collects flags; raises CallbackError."""

    __slots__ = ("flags", "obj", "param", "tz")

    def __init__(self, param: str, obj: dict[str, Any], tz: ZoneInfo) -> None:
        self.param = param
        self.obj = obj
        self.tz = tz
        self.flags: list[str] = []

    def error(self, reason: str, detail: str) -> CallbackError:
        return CallbackError(reason, f"parameter {self.param!r}: {detail}")

    def first(self, keys: tuple[str, ...]) -> tuple[str, Any]:
        """The first of `keys` present with a non-null value, else (keys[0], None)."""
        obj = self.obj
        for key in keys:
            value = obj.get(key)
            if value is not None:
                return key, value
        return keys[0], None

    def text(self, *keys: str) -> str | None:
        """A string field; numbers become their decimal text; None when absent or null."""
        key, value = self.first(keys)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, bool):
            raise self.error("wrong_type", f"field {key!r} is a boolean, expected text")
        if isinstance(value, int):
            return str(value)
        if isinstance(value, float):
            if value.is_integer():
                if abs(value) >= _EXACT_FLOAT:
                    raise self.error("wrong_type", f"field {key!r} is a number too large to keep")
                return str(int(value))
            return repr(value)
        raise self.error("wrong_type", f"field {key!r} is a {_json_type(value)}, expected text")

    def required_text(self, *keys: str) -> str:
        value = self.text(*keys)
        if value is None or not value.strip():
            raise self.error("missing_field", f"field {keys[0]!r} is missing or empty")
        return value

    def id_sms_api(self) -> str | None:
        value = self.text("id_sms_api")
        if value is None or not value.strip():
            self.flags.append(FLAG_MISSING_ID_SMS_API)
            return None
        return value.strip()

    def phone(self, keys: tuple[str, ...]) -> str | None:
        """The number in E.164 (flagged when unreadable or invalid); None when absent."""
        key, value = self.first(keys)
        if isinstance(value, str):
            raw = value
        elif isinstance(value, bool) or value is None:
            if value is None:
                return None
            raise self.error("wrong_type", f"field {key!r} is a boolean, expected a phone number")
        elif isinstance(value, int | float) and value >= 0 and float(value).is_integer():
            if value >= _EXACT_FLOAT:
                raise self.error("wrong_type", f"field {key!r} is a number too large to keep")
            raw = f"+{int(value)}"
        else:
            raise self.error("wrong_type", f"field {key!r} is not a phone number")
        if not raw.strip():
            return None
        result = normalize_phone(raw)
        if not result.parsed:
            self.flags.append(FLAG_PHONE_UNPARSED)
        elif not result.valid:
            self.flags.append(FLAG_PHONE_INVALID)
        return result.e164

    def required_phone(self, keys: tuple[str, ...]) -> str:
        phone = self.phone(keys)
        if phone is None:
            raise self.error("missing_field", f"field {keys[0]!r} (the phone number) is missing")
        return phone

    def time(self, *keys: str) -> datetime | None:
        """A timestamp in UTC; None (flagged BAD_TIMESTAMP) when present but unreadable."""
        _, value = self.first(keys)
        if value is None:
            return None
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            try:
                return parse_ardary_time(value, self.tz)
            except ValueError:
                pass
        self.flags.append(FLAG_BAD_TIMESTAMP)
        return None

    def duration(self) -> int:
        value = self.obj.get("duration")
        if isinstance(value, str | int | float | None) and not isinstance(value, bool):
            try:
                return parse_duration(value)
            except ValueError:
                pass
        self.flags.append(FLAG_BAD_DURATION)
        return 0

    def title(self) -> str | None:
        """The `title` field folded for matching: lower case, spaces and dashes as `_`."""
        title = self.text("title")
        if title is None:
            return None
        return "_".join(title.strip().lower().replace("-", " ").split())

    def spaced_title(self) -> bool:
        """The older dialect writes titles with spaces ("incoming sms", "incoming call")."""
        title = self.obj.get("title")
        return isinstance(title, str) and " " in title.strip()

    def dialect(self, *v1_hints: bool) -> str:
        return "v1" if "phonenumber" in self.obj or any(v1_hints) else "v2"


def _json_type(value: object) -> str:
    if isinstance(value, dict):
        return "JSON object"
    if isinstance(value, list):
        return "JSON array"
    return type(value).__name__


def _decode(param: str, value: str) -> dict[str, Any]:
    """The JSON object in a parameter value, tolerating one extra layer of encoding."""
    text = value.strip()
    if not text:
        raise CallbackError("empty_parameter", f"parameter {param!r} is empty")
    if text[0] == "%":
        # Percent-encoded twice by the sender: JSON never starts with `%`.
        try:
            text = unquote(text, errors="strict").strip()
        except (UnicodeError, ValueError) as exc:
            raise CallbackError("invalid_json", f"parameter {param!r} is not JSON") from exc
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CallbackError("invalid_json", f"parameter {param!r} is not valid JSON") from exc
    if isinstance(obj, str):
        # JSON-encoded twice: a JSON string whose content is the object.
        try:
            obj = orjson.loads(obj)
        except orjson.JSONDecodeError as exc:
            raise CallbackError(
                "not_an_object", f"parameter {param!r} is a JSON string, expected an object"
            ) from exc
    if not isinstance(obj, dict):
        raise CallbackError(
            "not_an_object", f"parameter {param!r} is a {_json_type(obj)}, expected an object"
        )
    return obj


def _status(param: str, r: _Reader, raw: str, received_at: datetime) -> StatusCallback:
    status = r.required_text("status").strip().lower()
    id_sms_api = r.id_sms_api()
    phone = r.phone(_PHONE_KEYS)
    if phone is None:
        if id_sms_api is None:
            raise r.error("missing_field", "neither 'id_sms_api' nor a phone number is given")
        r.flags.append(FLAG_MISSING_PHONE)
    return StatusCallback(
        event_id=event_id_for("status", r.obj),
        phone_number=phone or "",
        status=status,
        received_at=received_at,
        raw=raw,
        id_sms_api=id_sms_api,
        login=r.text("user", "login"),
        date_status=r.time("date_status", "date"),
        flags=tuple(r.flags),
        dialect=r.dialect(),
    )


def _click(param: str, r: _Reader, raw: str, received_at: datetime) -> ClickCallback:
    id_sms_api = r.id_sms_api()
    phone = r.phone(_PHONE_KEYS)
    if phone is None:
        if id_sms_api is None:
            raise r.error("missing_field", "neither 'id_sms_api' nor a phone number is given")
        r.flags.append(FLAG_MISSING_PHONE)
    return ClickCallback(
        event_id=event_id_for("click", r.obj),
        phone_number=phone or "",
        received_at=received_at,
        raw=raw,
        id_sms_api=id_sms_api,
        link=r.text("link", "url"),
        date=r.time("date"),
        flags=tuple(r.flags),
        dialect=r.dialect(param == "click"),
    )


def _incoming_sms(param: str, r: _Reader, raw: str, received_at: datetime) -> IncomingSms:
    sender = r.required_phone(_SENDER_KEYS)
    obj = r.obj
    v1_body = obj.get("message") is None and obj.get("body") is not None
    body = r.text("message", "body")
    if body is None:
        r.flags.append(FLAG_MISSING_BODY)
        body = ""
    return IncomingSms(
        event_id=event_id_for("incoming_sms", obj),
        from_number=sender,
        body=body,
        received_at=received_at,
        raw=raw,
        device_identification=r.text("device_identification"),
        date=r.time("date"),
        flags=tuple(r.flags),
        dialect=r.dialect(v1_body, r.spaced_title()),
    )


def _call(param: str, r: _Reader, raw: str, received_at: datetime) -> CallEvent:
    phone = r.required_phone(_PHONE_KEYS)
    title = r.title()
    if title is None:
        raise r.error("missing_field", "field 'title' (the call type) is missing")
    direction = _DIRECTIONS.get(title)
    if direction is None:
        raise r.error("unknown_title", f"field 'title' is not a known call type: {title[:40]!r}")
    obj = r.obj
    return CallEvent(
        event_id=event_id_for("call", obj),
        direction=direction,
        phone_number=phone,
        received_at=received_at,
        raw=raw,
        device_identification=r.text("device_identification"),
        call_time=r.time("call_time", "call_date", "date"),
        duration_seconds=r.duration(),
        flags=tuple(r.flags),
        dialect=r.dialect(param == "call", "call_date" in obj, r.spaced_title()),
    )


def _qualification(param: str, r: _Reader, raw: str, received_at: datetime) -> CallQualification:
    phone = r.required_phone(_SENDER_KEYS)
    title = r.title()
    if title is None:
        raise r.error("missing_field", "field 'title' (the qualification source) is missing")
    source = _SOURCES.get(title)
    if source is None:
        raise r.error("unknown_title", f"field 'title' is not a known source: {title[:40]!r}")
    qualification = r.text("qualification")
    if qualification is None:
        raise r.error("missing_field", "field 'qualification' is missing")
    return CallQualification(
        event_id=event_id_for("qualification", r.obj),
        source=source,
        phone_number=phone,
        qualification=qualification,
        received_at=received_at,
        raw=raw,
        device_identification=r.text("device_identification"),
        date=r.time("date"),
        flags=tuple(r.flags),
        dialect=r.dialect(),
    )


_Builder: TypeAlias = Callable[[str, _Reader, str, datetime], CallbackRecord]


@dataclass(frozen=True, slots=True)
class _Kind:
    """One kind of callback: the query parameters that carry it, its record and its builder.

    `name` prefixes event ids, so `?click=` (v1) and `?clics=` (v2) carrying the same object
    give the same id.
    """

    name: str
    params: tuple[str, ...]
    record: type[CallbackRecord]
    build: _Builder


_KINDS: tuple[_Kind, ...] = (
    _Kind("status", ("status",), StatusCallback, _status),
    _Kind("incoming_sms", ("message",), IncomingSms, _incoming_sms),
    _Kind("click", ("click", "clics"), ClickCallback, _click),
    _Kind("call", ("call", "calls"), CallEvent, _call),
    _Kind("qualification", ("qualification",), CallQualification, _qualification),
)

CALLBACK_PARAMS: tuple[str, ...] = tuple(p for kind in _KINDS for p in kind.params)
"""Every query parameter that carries a callback, in the order error messages list them."""
KIND_BY_PARAM: Mapping[str, str] = {p: kind.name for kind in _KINDS for p in kind.params}
"""The record kind each query parameter yields."""
_KIND_BY_TYPE: Mapping[type, str] = {kind.record: kind.name for kind in _KINDS}
_BUILDERS: Mapping[str, _Builder] = {p: kind.build for kind in _KINDS for p in kind.params}


def parse_callbacks(
    params: Iterable[tuple[str, str]], *, received_at: datetime, tz: ZoneInfo
) -> list[CallbackRecord]:
    """Turn the URL-decoded parameters of one Ardary callback request into records.

    One record per recognised parameter (CALLBACK_PARAMS), in request order; other names are
    ignored. Both dialects are accepted (see records.py for the fields they fill). Doubtful
    data is kept and flagged (PHONE_UNPARSED, MISSING_ID_SMS_API, BAD_TIMESTAMP, ...); a
    parameter that cannot be understood — empty, not JSON, not an object, missing what gives
    the record its meaning — fails the whole request with CallbackError, and nothing else is
    ever raised, so the ingress can answer 400 and dead-letter the request.
    """
    records: list[CallbackRecord] = []
    for name, value in params:
        builder = _BUILDERS.get(name)
        if builder is None:
            continue
        obj = _decode(name, value)
        records.append(builder(name, _Reader(name, obj, tz), value, received_at))
    if not records:
        raise CallbackError(
            "no_callback", "the request carries none of: " + ", ".join(CALLBACK_PARAMS)
        )
    return records
