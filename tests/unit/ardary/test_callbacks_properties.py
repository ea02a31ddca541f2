"""Property: on any input the parser returns records or raises CallbackError, nothing else."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.ardary.callbacks import CALLBACK_PARAMS, parse_callbacks
from pipeline.ardary.times import get_zone
from pipeline.errors import CallbackError

PARIS = get_zone("Europe/Paris")
RECEIVED = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
KEYS = (
    "user",
    "login",
    "phonenumber",
    "phone_number",
    "from",
    "status",
    "date_status",
    "id_sms_api",
    "title",
    "body",
    "message",
    "link",
    "url",
    "date",
    "call_date",
    "call_time",
    "duration",
    "device_identification",
    "qualification",
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3)
    ),
    max_leaves=8,
)
plausible = st.sampled_from(
    [
        "+33612345678",
        " 33612345678",
        "0612345678",
        "+1XXXXXXXXXX",
        "2023-12-17 20:32:51",
        "2019-08-09T12:50:54.211Z",
        "15:11:04",
        "0",
        "",
        "incoming call",
        "incoming_call",
        "missed_call",
        "incoming sms",
        "call_qualification_from_mobile",
        "call_qualification_from_interface",
        "received",
        33612345678,
        1577971800000,
        2**70,
        -1,
        1e300,
    ]
)
callback_objects = st.dictionaries(
    st.sampled_from(KEYS) | st.text(max_size=5), plausible | json_values, max_size=8
)

# Valid callbacks of each kind with a few fields overwritten: reaches the record builders.
BASES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("status", {"phone_number": "+33612345678", "status": "sent", "id_sms_api": "1"}),
    ("clics", {"phone_number": "+33612345678", "id_sms_api": "1", "link": "https://x.io/"}),
    ("message", {"title": "incoming_sms", "from": "+33612345678", "message": "hi"}),
    ("calls", {"title": "missed_call", "phone_number": "+33612345678", "duration": "0"}),
    (
        "qualification",
        {"title": "call_qualification_from_mobile", "from": "+33612345678", "qualification": "q"},
    ),
)
overrides = st.dictionaries(st.sampled_from(KEYS), plausible | json_values, max_size=3)
perturbed = st.tuples(st.sampled_from(BASES), overrides).map(
    lambda base_over: (base_over[0][0], {**base_over[0][1], **base_over[1]})
)


def _encodings(obj: Any) -> st.SearchStrategy[str]:
    text = json.dumps(obj, ensure_ascii=False)
    return st.sampled_from(
        [text, json.dumps(obj), json.dumps(text), quote(text, safe=""), " " + text + "\n"]
    )


values = (
    st.text()
    | json_values.map(json.dumps)
    | callback_objects.flatmap(_encodings)
    | st.text(alphabet='%7B%22{}[]":,0123456789abc \\u')
)
names = st.sampled_from((*CALLBACK_PARAMS, "cb", "", "Status"))
near_valid = perturbed.flatmap(lambda kv: st.tuples(st.just(kv[0]), _encodings(kv[1])))
requests = st.lists(st.tuples(names, values) | near_valid, max_size=4)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(requests)
def test_parse_returns_records_or_raises_callback_error(pairs: list[tuple[str, str]]) -> None:
    try:
        records = parse_callbacks(pairs, received_at=RECEIVED, tz=PARIS)
    except CallbackError as exc:
        assert exc.reason
        assert exc.detail
        return
    recognised = [value for name, value in pairs if name in CALLBACK_PARAMS]
    assert [r.raw for r in records] == recognised
    assert all(r.received_at == RECEIVED for r in records)
    for record in records:
        for name in ("date", "date_status", "call_time"):
            when = getattr(record, name, None)
            assert when is None or when.utcoffset() is not None
    # Deterministic: the same request parses to the same records, ids included.
    assert parse_callbacks(pairs, received_at=RECEIVED, tz=PARIS) == records


@settings(max_examples=500)
@given(callback_objects, st.sampled_from(CALLBACK_PARAMS))
def test_key_order_never_changes_the_event_id(obj: dict[str, Any], param: str) -> None:
    forward = json.dumps(obj)
    backward = json.dumps(dict(reversed(list(obj.items()))), indent=2)
    try:
        (a,) = parse_callbacks([(param, forward)], received_at=RECEIVED, tz=PARIS)
    except CallbackError:
        return
    (b,) = parse_callbacks([(param, backward)], received_at=RECEIVED, tz=PARIS)
    assert a.event_id == b.event_id
