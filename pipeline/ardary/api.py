"""Ardary's HTTP API as pure functions: request payloads for sendSms/contact and their answers.

Choices where the two versions of the vendor docs disagree (the later one wins):
- `header` is a JSON object (later doc), not the older one-element list; the simulator
  accepts both.
- camel-case `accessKey`, `phone_number` and a per-message `priority` (the later doc's first
  example; its second example's `priorite` is read by the simulator but never sent).
- /contact is only described by the older doc, so its contacts keep that doc's spellings
  (`phonenumber`, `adress`) under the same object header.
- A message with a `url` but no `[Link]`/`[Lien_Tracking]` placeholder gets ` [Link]` appended:
  Ardary only inserts the tracked link where a placeholder is, and a url must not vanish.
- `date_to_send` is Ardary's naive local time ("YYYY-MM-DD HH:MM:SS") in ARDARY_TIMEZONE.
- A marketing message on the servers' route carries `marketing` and the STOP switch in both
  spellings the docs show (`MARKETING_FIELDS`, see `build_send_payload`); nothing else changes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pipeline.ardary.codes import (
    MISSING_IN_ANSWER,
    STOP_REQUESTED,
    CodeCategory,
    send_code,
)
from pipeline.errors import ArdaryProtocolError
from pipeline.records import ContactOutcome, ContactSyncRequest, Routing, SendOutcome, SendRequest

__all__ = [
    "ARDARY_TIME_FORMAT",
    "LINK_PLACEHOLDERS",
    "MARKETING_FIELDS",
    "ContactSyncOutcome",
    "MessageOutcome",
    "Mode",
    "build_contact_payload",
    "build_send_payload",
    "endpoint_for",
    "format_ardary_time",
    "parse_ardary_time",
    "parse_contact_answer",
    "parse_send_answer",
]

Mode = Literal["test", "prod"]
ARDARY_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
LINK_PLACEHOLDERS: tuple[str, ...] = ("[Link]", "[Lien_Tracking]")
_DEFAULT_ZONE = "Europe/Paris"
# Per-message switches of a marketing message routed by Ardary's servers (sendSms): its own
# `marketing` flag and its STOP mention, as the older doc spells it in its JSON example (`addStop`)
# and in its PHP example (`add_stop`). Values are 0/1 flags, like `addReply`.
MARKETING_FIELDS: Mapping[str, int] = MappingProxyType(
    {"marketing": 1, "addStop": 1, "add_stop": 1}
)

# Severity order when one message carries several codes: the first category present decides.
_OUTCOME_BY_CATEGORY: dict[CodeCategory, SendOutcome] = {
    CodeCategory.ACCOUNT: "FAILED",
    CodeCategory.COMPLIANCE: "REJECTED",
    CodeCategory.PERMANENT: "REJECTED",
    CodeCategory.TRANSIENT: "FAILED",
}
_SEVERITY = (
    CodeCategory.ACCOUNT,
    CodeCategory.COMPLIANCE,
    CodeCategory.PERMANENT,
    CodeCategory.TRANSIENT,
)


@dataclass(frozen=True, slots=True)
class MessageOutcome:
    """Ardary's verdict on one requested message (exactly one per requested id)."""

    id_sms_api: str
    outcome: SendOutcome
    error_codes: tuple[str, ...] = ()
    sms_per_message: int | None = None
    sent_time: datetime | None = None
    category: CodeCategory | None = None


@dataclass(frozen=True, slots=True)
class ContactSyncOutcome:
    """Ardary's verdict on one contact of a /contact request."""

    phone_number: str
    outcome: ContactOutcome
    error_codes: tuple[str, ...] = ()


def endpoint_for(routing: Routing) -> str:
    """The API path of a routing: SERVER → sendSms (Ardary's servers), MOBILE → sendSmsSolo."""
    return "sendSmsSolo" if routing == "MOBILE" else "sendSms"


def _zone(timezone: ZoneInfo | str) -> ZoneInfo:
    return timezone if isinstance(timezone, ZoneInfo) else ZoneInfo(timezone)


def format_ardary_time(moment: datetime, timezone: ZoneInfo | str = _DEFAULT_ZONE) -> str:
    """An aware datetime as Ardary's naive local time; naive input is refused (ambiguous)."""
    if moment.tzinfo is None:
        raise ValueError("date_to_send must be timezone-aware")
    return moment.astimezone(_zone(timezone)).strftime(ARDARY_TIME_FORMAT)


def parse_ardary_time(value: str, timezone: ZoneInfo | str = _DEFAULT_ZONE) -> datetime:
    """Ardary's ISO-Z or naive local ("YYYY-MM-DD HH:MM:SS") time as an aware UTC datetime."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_zone(timezone))
    return parsed.astimezone(UTC)


def _with_placeholder(message: str, url: str | None) -> str:
    if url and not any(p in message for p in LINK_PLACEHOLDERS):
        return f"{message} [Link]"
    return message


def build_send_payload(
    login: str,
    access_key: str,
    messages: Sequence[SendRequest],
    *,
    mode: Mode,
    routing: Routing,
    timezone: ZoneInfo | str = _DEFAULT_ZONE,
) -> dict[str, Any]:
    """The JSON body of one sendSms/sendSmsSolo request.

    All messages must belong to `login` and `routing` and share one `sender_name` (Ardary
    takes the sender in the header): group requests by those before batching.

    A `marketing` message routed SERVER (sendSms) also carries `MARKETING_FIELDS`: Ardary's
    `marketing` flag and its STOP mention switched on, under both names the docs use (`addStop`
    in the older doc's JSON example, `add_stop` in its PHP example). Both are sent rather than
    one picked by dialect: this payload has a single dialect (the later doc's spellings), the
    later doc documents neither switch, so nothing tells which one Ardary's servers read — and a
    commercial SMS without its STOP mention breaks the law, while a JSON key the server does not
    know is ignored. Transactional messages carry none of these keys (unchanged payload).

    MOBILE routing (sendSmsSolo) has no STOP option (the older doc marks `addStop` "Not needed
    for Mobile SMS routing") and its example posts no `marketing` either: the SMS leaves the
    user's own phone as written, so nothing is added and the text is not edited — a marketing
    text sent that way must carry its own opt-out wording.
    """
    if not messages:
        raise ValueError("a send request needs at least one message")
    senders = {m.sender_name for m in messages}
    for m in messages:
        if m.login != login or m.routing != routing:
            raise ValueError(f"message {m.id_sms_api} belongs to another login or routing")
    if len(senders) > 1:
        raise ValueError("messages of one request must share one sender_name")
    zone = _zone(timezone)
    header: dict[str, Any] = {"login": login, "accessKey": access_key, "mode": mode}
    sender = senders.pop()
    if sender and routing == "SERVER":  # the mobile route sends from the user's own phone
        header["sender_name"] = sender
    body: list[dict[str, Any]] = []
    for m in messages:
        item: dict[str, Any] = {
            "id_sms_api": m.id_sms_api,
            "phone_number": m.phone_number,
            "message": _with_placeholder(m.message, m.url),
            "priority": m.priority,
        }
        if m.url:
            item["url"] = m.url
        if m.date_to_send is not None:
            item["date_to_send"] = format_ardary_time(m.date_to_send, zone)
        if m.marketing and routing == "SERVER":
            item.update(MARKETING_FIELDS)
        body.append(item)
    return {"header": header, "messages": body}


def _entries(body: Any, *path: str) -> list[Mapping[str, Any]]:
    node = body
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            raise ArdaryProtocolError(f"answer has no {'.'.join(path)} list")
        node = node[key]
    if not isinstance(node, list) or not all(isinstance(e, Mapping) for e in node):
        raise ArdaryProtocolError(f"answer's {'.'.join(path)} is not a list of objects")
    return node


def _codes(raw: Any) -> tuple[str, ...]:
    if raw is None or raw == "":
        return ()
    if isinstance(raw, str):
        return (raw,)
    if isinstance(raw, list) and all(isinstance(c, str) for c in raw):
        return tuple(raw)
    raise ArdaryProtocolError("an error field is neither a code nor a list of codes")


def _optional_int(raw: Any) -> int | None:
    if raw is None or isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.strip().isdigit():
        return int(raw)
    raise ArdaryProtocolError("sms_per_message is not a number")


def _optional_time(raw: Any, zone: ZoneInfo) -> datetime | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise ArdaryProtocolError("sent_time is not a string")
    try:
        return parse_ardary_time(raw, zone)
    except ValueError as exc:
        raise ArdaryProtocolError("sent_time is not a date") from exc


def _outcome_for_codes(id_sms_api: str, codes: tuple[str, ...]) -> MessageOutcome:
    categories = {send_code(c).category for c in codes}
    category = next(c for c in _SEVERITY if c in categories)
    outcome = _OUTCOME_BY_CATEGORY[category]
    if category is not CodeCategory.ACCOUNT and STOP_REQUESTED in codes:
        outcome = "SUPPRESSED"  # the recipient opted out: the caller publishes an opt-out
    return MessageOutcome(id_sms_api, outcome, codes, category=category)


def parse_send_answer(
    body: Any,
    requested_ids: Sequence[str],
    *,
    timezone: ZoneInfo | str = _DEFAULT_ZONE,
) -> list[MessageOutcome]:
    """One outcome per requested id, in the order requested, from a decoded sendSms answer.

    The answer is `{"data": [...], "count_sent": n?}`; `count_sent` is informational (the
    per-message entries decide). An answer that is only `{"error": [codes]}` applies those
    codes to every message. Ids the answer does not mention are FAILED/MISSING_IN_ANSWER,
    ids it mentions but we did not request are ignored. Anything else raises
    ArdaryProtocolError.
    """
    zone = _zone(timezone)
    if isinstance(body, Mapping) and "data" not in body and "error" in body:
        codes = _codes(body["error"])
        if not codes:
            raise ArdaryProtocolError("answer has an empty error and no data")
        return [_outcome_for_codes(i, codes) for i in requested_ids]
    entries = _entries(body, "data")
    by_id: dict[str, MessageOutcome] = {}
    for entry in entries:
        id_sms_api = entry.get("id_sms_api")
        if not isinstance(id_sms_api, str | int) or isinstance(id_sms_api, bool):
            raise ArdaryProtocolError("an answer entry has no id_sms_api")
        key = str(id_sms_api)
        if key in by_id:
            continue
        codes = _codes(entry.get("error", entry.get("errors")))
        if codes:
            by_id[key] = _outcome_for_codes(key, codes)
        else:
            by_id[key] = MessageOutcome(
                key,
                "SUBMITTED",
                sms_per_message=_optional_int(entry.get("sms_per_message")),
                sent_time=_optional_time(entry.get("sent_time"), zone),
            )
    missing = MessageOutcome("", "FAILED", (MISSING_IN_ANSWER,), category=CodeCategory.TRANSIENT)
    return [by_id[i] if i in by_id else _replace_id(missing, i) for i in requested_ids]


def _replace_id(template: MessageOutcome, id_sms_api: str) -> MessageOutcome:
    return MessageOutcome(
        id_sms_api, template.outcome, template.error_codes, category=template.category
    )


def build_contact_payload(
    login: str, access_key: str, contacts: Sequence[ContactSyncRequest]
) -> dict[str, Any]:
    """The JSON body of one /contact request (older doc's contact spellings, object header)."""
    if not contacts:
        raise ValueError("a contact request needs at least one contact")
    items: list[dict[str, Any]] = []
    for c in contacts:
        item: dict[str, Any] = {"phonenumber": c.phone_number}
        for key, value in (
            ("firstname", c.firstname),
            ("lastname", c.lastname),
            ("adress", c.address),
            ("email", c.email),
        ):
            if value is not None:
                item[key] = value
        items.append(item)
    return {"header": {"login": login, "accessKey": access_key}, "contacts": items}


_NOT_DIGITS = re.compile(r"[^\d]")


def _phone_key(phone: str) -> str:
    return _NOT_DIGITS.sub("", phone)


def parse_contact_answer(body: Any, requested_phones: Sequence[str]) -> list[ContactSyncOutcome]:
    """One outcome per requested phone, in order, from `{"data": {"contact": [...]}}`.

    Entries are matched by the digits of their phone number (Ardary may reformat it); a phone
    the answer does not mention is FAILED/MISSING_IN_ANSWER.
    """
    entries = _entries(body, "data", "contact")
    by_phone: dict[str, ContactSyncOutcome] = {}
    for entry in entries:
        phone = entry.get("phonenumber", entry.get("phone_number", ""))
        if not isinstance(phone, str):
            raise ArdaryProtocolError("a contact entry's phone number is not a string")
        result = entry.get("result")
        if result not in ("success", "failed"):
            raise ArdaryProtocolError("a contact entry's result is neither success nor failed")
        codes = _codes(entry.get("errors", entry.get("error")))
        outcome: ContactOutcome = "SUCCESS" if result == "success" and not codes else "FAILED"
        by_phone.setdefault(_phone_key(phone), ContactSyncOutcome(phone, outcome, codes))
    outcomes: list[ContactSyncOutcome] = []
    for phone in requested_phones:
        found = by_phone.get(_phone_key(phone))
        if found is None:
            outcomes.append(ContactSyncOutcome(phone, "FAILED", (MISSING_IN_ANSWER,)))
        else:
            outcomes.append(ContactSyncOutcome(phone, found.outcome, found.error_codes))
    return outcomes
