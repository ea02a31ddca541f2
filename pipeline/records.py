"""The canonical records, one per `schemas/avro/*.avsc`, shared by every stage.

Plain frozen dataclasses: cheap to build, hashable where their fields are, free of Kafka and
HTTP. Field names and types mirror the Avro schemas exactly (a unit test checks it); times
are timezone-aware UTC datetimes, arrays are tuples, enums are `Literal` strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, TypeAlias

__all__ = [
    "RECORD_TYPES",
    "CallDirection",
    "CallEvent",
    "CallQualification",
    "ClickCallback",
    "ContactOutcome",
    "ContactSyncRequest",
    "ContactSyncResult",
    "DeadLetter",
    "IncomingSms",
    "OptOut",
    "QualificationSource",
    "Record",
    "Routing",
    "SendOutcome",
    "SendRequest",
    "SendResult",
    "SmsLifecycle",
    "SmsMetricsWindow",
    "SmsState",
    "StatusCallback",
]

Routing: TypeAlias = Literal["SERVER", "MOBILE"]
SendOutcome: TypeAlias = Literal["SUBMITTED", "REJECTED", "SUPPRESSED", "FAILED"]
ContactOutcome: TypeAlias = Literal["SUCCESS", "FAILED"]
CallDirection: TypeAlias = Literal["INCOMING", "OUTGOING", "MISSED"]
QualificationSource: TypeAlias = Literal["MOBILE", "INTERFACE"]
SmsState: TypeAlias = Literal[
    "REQUESTED", "SUBMITTED", "REJECTED", "SUPPRESSED", "SENT", "DELIVERED", "FAILED"
]


@dataclass(frozen=True, slots=True)
class SendRequest:
    """A request from an upstream app to send one SMS."""

    id_sms_api: str
    login: str
    phone_number: str
    message: str
    requested_at: datetime
    url: str | None = None
    date_to_send: datetime | None = None
    priority: int = 1
    routing: Routing = "SERVER"
    sender_name: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    marketing: bool = False


@dataclass(frozen=True, slots=True)
class SendResult:
    """Ardary's answer for one SendRequest; exactly one per request."""

    id_sms_api: str
    login: str
    phone_number: str
    outcome: SendOutcome
    completed_at: datetime
    error_codes: tuple[str, ...] = ()
    sms_per_message: int | None = None
    sent_time: datetime | None = None
    attempts: int = 0
    scheduled_for: datetime | None = None


@dataclass(frozen=True, slots=True)
class ContactSyncRequest:
    """A contact to synchronise into the Ardary box of `login`."""

    phone_number: str
    login: str
    requested_at: datetime
    firstname: str | None = None
    lastname: str | None = None
    address: str | None = None
    email: str | None = None


@dataclass(frozen=True, slots=True)
class ContactSyncResult:
    """Ardary's answer for one ContactSyncRequest."""

    phone_number: str
    login: str
    outcome: ContactOutcome
    completed_at: datetime
    error_codes: tuple[str, ...] = ()
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class StatusCallback:
    """A delivery status callback (?status=)."""

    event_id: str
    phone_number: str
    status: str
    received_at: datetime
    raw: str
    id_sms_api: str | None = None
    login: str | None = None
    date_status: datetime | None = None
    flags: tuple[str, ...] = ()
    dialect: str = "v2"


@dataclass(frozen=True, slots=True)
class ClickCallback:
    """A tracked-link click callback (?click= / ?clics=)."""

    event_id: str
    phone_number: str
    received_at: datetime
    raw: str
    id_sms_api: str | None = None
    link: str | None = None
    date: datetime | None = None
    flags: tuple[str, ...] = ()
    dialect: str = "v2"


@dataclass(frozen=True, slots=True)
class IncomingSms:
    """An SMS received by the account (?message=)."""

    event_id: str
    from_number: str
    body: str
    received_at: datetime
    raw: str
    device_identification: str | None = None
    date: datetime | None = None
    flags: tuple[str, ...] = ()
    dialect: str = "v2"


@dataclass(frozen=True, slots=True)
class CallEvent:
    """A call on the account's phone (?call= / ?calls=)."""

    event_id: str
    direction: CallDirection
    phone_number: str
    received_at: datetime
    raw: str
    device_identification: str | None = None
    call_time: datetime | None = None
    duration_seconds: int = 0
    flags: tuple[str, ...] = ()
    dialect: str = "v2"


@dataclass(frozen=True, slots=True)
class CallQualification:
    """A call qualification (?qualification=)."""

    event_id: str
    source: QualificationSource
    phone_number: str
    qualification: str
    received_at: datetime
    raw: str
    device_identification: str | None = None
    date: datetime | None = None
    flags: tuple[str, ...] = ()
    dialect: str = "v2"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A request the ingress could not understand, kept whole so nothing is lost."""

    event_id: str
    reason: str
    detail: str
    method: str
    raw: bytes
    received_at: datetime
    content_type: str | None = None
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class SmsLifecycle:
    """The current state of one message: a merge of everything known about it."""

    id_sms_api: str
    state: SmsState
    updated_at: datetime
    login: str | None = None
    phone_number: str | None = None
    requested_at: datetime | None = None
    submitted_at: datetime | None = None
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    first_click_at: datetime | None = None
    click_count: int = 0
    sms_per_message: int | None = None
    error_codes: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    overdue_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class SmsMetricsWindow:
    """Counts and rates of one tumbling window for one login (`*` = all)."""

    window_start: datetime
    window_end: datetime
    login: str
    window: str = "1m"
    requested: int = 0
    submitted: int = 0
    rejected: int = 0
    delivered: int = 0
    clicks: int = 0
    unique_clicks: int = 0
    incoming_sms: int = 0
    optouts: int = 0
    calls_missed: int = 0
    delivery_rate: float | None = None
    click_through_rate: float | None = None
    p50_delivery_ms: int | None = None
    p95_delivery_ms: int | None = None
    overdue: int = 0


@dataclass(frozen=True, slots=True)
class OptOut:
    """A phone number's current consent: opted out (STOP, #003) or back in (START)."""

    phone_number: str
    opted_out: bool
    source: str
    event_id: str
    at: datetime
    login: str | None = None
    keyword: str | None = None


Record: TypeAlias = (
    SendRequest
    | SendResult
    | ContactSyncRequest
    | ContactSyncResult
    | StatusCallback
    | ClickCallback
    | IncomingSms
    | CallEvent
    | CallQualification
    | DeadLetter
    | SmsLifecycle
    | SmsMetricsWindow
    | OptOut
)

RECORD_TYPES: tuple[type[Record], ...] = (
    SendRequest,
    SendResult,
    ContactSyncRequest,
    ContactSyncResult,
    StatusCallback,
    ClickCallback,
    IncomingSms,
    CallEvent,
    CallQualification,
    DeadLetter,
    SmsLifecycle,
    SmsMetricsWindow,
    OptOut,
)
