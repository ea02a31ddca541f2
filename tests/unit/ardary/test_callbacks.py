"""The callback parser: every seed example of both dialects, and the nasty cases."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import pytest

from pipeline.ardary.callbacks import (
    CALLBACK_PARAMS,
    KIND_BY_PARAM,
    CallbackRecord,
    event_id_for,
    kind_of,
    parse_callbacks,
)
from pipeline.ardary.times import get_zone
from pipeline.errors import CallbackError
from pipeline.records import (
    CallEvent,
    CallQualification,
    ClickCallback,
    IncomingSms,
    StatusCallback,
)

FIXTURES = Path(__file__).parents[2] / "fixtures" / "callbacks"
FIXTURE_FILES = sorted(FIXTURES.glob("v[12]_*.json"))
PARIS = get_zone("Europe/Paris")
RECEIVED = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
TIME_FIELDS = {"date_status", "date", "call_time"}
RECORD_TYPES = {
    cls.__name__: cls
    for cls in (StatusCallback, ClickCallback, IncomingSms, CallEvent, CallQualification)
}


def parse(*pairs: tuple[str, str]) -> list[CallbackRecord]:
    return parse_callbacks(pairs, received_at=RECEIVED, tz=PARIS)


def one(param: str, obj: Any) -> CallbackRecord:
    records = parse((param, json.dumps(obj, ensure_ascii=False)))
    assert len(records) == 1
    return records[0]


def reason_of(*pairs: tuple[str, str]) -> str:
    with pytest.raises(CallbackError) as info:
        parse(*pairs)
    return info.value.reason


STATUS = {
    "user": "shop@example.com",
    "phone_number": "+33612345678",
    "status": "received",
    "date_status": "2019-08-09T12:50:54.211Z",
    "id_sms_api": "A-1",
}


# --- the seed examples, repaired ------------------------------------------------------------


def test_fixtures_cover_both_dialects_and_every_kind() -> None:
    names = [f.stem for f in FIXTURE_FILES]
    assert sum(n.startswith("v1_") for n in names) >= 4
    assert sum(n.startswith("v2_") for n in names) >= 8
    params = {json.loads(f.read_text())["param"] for f in FIXTURE_FILES}
    assert params == {"status", "message", "click", "clics", "call", "calls", "qualification"}


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.stem)
def test_seed_example(path: Path) -> None:
    fixture = json.loads(path.read_text(encoding="utf-8"))
    value = json.dumps(fixture["value"], ensure_ascii=False)
    (record,) = parse(("cache_buster", "17"), (fixture["param"], value))
    expected = dict(fixture["expected"])
    assert type(record) is RECORD_TYPES[expected.pop("type")]
    for name, want in expected.items():
        got = getattr(record, name)
        if name in TIME_FIELDS:
            want = datetime.fromisoformat(want)
        elif name == "flags":
            want = tuple(want)
        assert got == want, name
    assert record.raw == value
    assert record.received_at == RECEIVED
    assert record.event_id.startswith(KIND_BY_PARAM[fixture["param"]] + "-")
    assert kind_of(record) == KIND_BY_PARAM[fixture["param"]]


def test_v1_click_with_escaped_slashes_as_the_doc_prints_it() -> None:
    raw = (
        '{ "title":"clicked link", "phonenumber":"+12025550123", '
        '"link":"https:\\/\\/www.my-link.com\\/", "date":"2019-07-08 15:07:03", '
        '"id_sms_api":"YOUR_ID_SMS" }'
    )
    (record,) = parse(("click", raw))
    assert isinstance(record, ClickCallback)
    assert record.link == "https://www.my-link.com/"
    assert record.raw == raw


def test_doc_placeholder_number_is_kept_and_flagged() -> None:
    record = one("status", {**STATUS, "phone_number": "+1XXXXXXXXXX"})
    assert record.phone_number == "+1XXXXXXXXXX"
    assert "PHONE_UNPARSED" in record.flags


def test_seed_doc_with_comments_is_invalid_json() -> None:
    raw = '{ "status":"received", // values : "sent" or "received"\n "id_sms_api":"X" }'
    assert reason_of(("status", raw)) == "invalid_json"


# --- transport damage -----------------------------------------------------------------------


def test_plus_turned_into_space_by_url_decoding() -> None:
    # Ardary (or a proxy) left the `+` unencoded; form decoding turns it into a space.
    query = "status=" + quote(json.dumps(STATUS), safe="+")
    pairs = parse_qsl(query, keep_blank_values=True)
    assert json.loads(pairs[0][1])["phone_number"] == " 33612345678"
    (record,) = parse_callbacks(pairs, received_at=RECEIVED, tz=PARIS)
    assert record.phone_number == "+33612345678"
    assert record.flags == ()


def test_emoji_and_accents_round_trip_exactly_through_the_query_string() -> None:
    body = 'Ça marche 👍🏽 — merci ! 日本 ñ \u200d\U0001f468\u200d\U0001f469 "quoted" & 100% + more'
    obj = {"title": "incoming_sms", "from": "+33612345678", "message": body, "date": ""}
    pairs = parse_qsl(urlencode({"message": json.dumps(obj, ensure_ascii=False)}))
    (record,) = parse_callbacks(pairs, received_at=RECEIVED, tz=PARIS)
    assert isinstance(record, IncomingSms)
    assert record.body == body
    assert record.date is None
    assert record.raw == json.dumps(obj, ensure_ascii=False)


def test_ascii_escaped_unicode_decodes_to_the_same_text() -> None:
    obj = {"from": "+33612345678", "message": "Été 😀"}
    escaped = one("message", obj)
    plain = parse(("message", json.dumps(obj, ensure_ascii=True)))[0]
    assert isinstance(escaped, IncomingSms)
    assert isinstance(plain, IncomingSms)
    assert plain.body == escaped.body == "Été 😀"
    assert plain.event_id == escaped.event_id


def test_double_json_encoding_is_tolerated() -> None:
    single = one("status", STATUS)
    double = parse(("status", json.dumps(json.dumps(STATUS))))[0]
    assert double == dataclasses.replace(single, raw=json.dumps(json.dumps(STATUS)))


def test_double_percent_encoding_is_tolerated() -> None:
    single = one("status", STATUS)
    encoded = quote(json.dumps(STATUS), safe="")
    assert encoded.startswith("%7B")
    (double,) = parse(("status", encoded))
    assert isinstance(double, StatusCallback)
    assert double.event_id == single.event_id
    assert double.phone_number == single.phone_number
    assert double.raw == encoded


# --- request shape --------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "   ", "\n"])
def test_empty_parameter_is_rejected(value: str) -> None:
    assert reason_of(("status", value)) == "empty_parameter"


def test_empty_parameter_rejects_the_whole_request() -> None:
    assert reason_of(("status", json.dumps(STATUS)), ("clics", "")) == "empty_parameter"


@pytest.mark.parametrize("pairs", [(), (("cb", "123"),), (("STATUS", json.dumps(STATUS)),)])
def test_no_recognised_parameter_is_no_callback(pairs: tuple[tuple[str, str], ...]) -> None:
    assert reason_of(*pairs) == "no_callback"


def test_two_kinds_in_one_request_give_two_records_in_order() -> None:
    click = {"id_sms_api": "A-1", "phone_number": "+33612345678", "link": "https://x.io/"}
    records = parse(
        ("_", "1"), ("clics", json.dumps(click)), ("utm", "x"), ("status", json.dumps(STATUS))
    )
    assert [type(r) for r in records] == [ClickCallback, StatusCallback]
    assert records[0].id_sms_api == records[1].id_sms_api == "A-1"
    assert records[0].event_id != records[1].event_id


def test_ten_kib_message_is_kept_whole() -> None:
    body = ("Lorem ipsum dolor sit amet, é € 😀 " * 400)[: 10 * 1024]
    record = one("message", {"title": "incoming_sms", "from": "+33612345678", "message": body})
    assert isinstance(record, IncomingSms)
    assert record.body == body
    assert len(record.body) == 10 * 1024


@pytest.mark.parametrize("value", ["[]", json.dumps([STATUS]), "42", "null", "true", '"text"'])
def test_non_objects_are_rejected(value: str) -> None:
    assert reason_of(("status", value)) == "not_an_object"


@pytest.mark.parametrize(
    "value", ["{", '{"status": "sent",}', "not json", "{'status': 'sent'}", "%E0%A4%A", "%ZZ"]
)
def test_invalid_json_is_rejected(value: str) -> None:
    assert reason_of(("status", value)) == "invalid_json"


def test_error_detail_names_the_parameter_and_field() -> None:
    with pytest.raises(CallbackError) as info:
        parse(
            ("clics", json.dumps({"id_sms_api": "A-1", "phone_number": "+33612345678"})),
            ("calls", json.dumps({"title": "missed_call"})),
        )
    assert info.value.reason == "missing_field"
    assert "'calls'" in info.value.detail
    assert "phone_number" in info.value.detail


# --- coercion -------------------------------------------------------------------------------


def test_numbers_where_strings_belong() -> None:
    record = one("status", {**STATUS, "id_sms_api": 12345, "phone_number": 33612345678})
    assert isinstance(record, StatusCallback)
    assert record.id_sms_api == "12345"
    assert record.phone_number == "+33612345678"
    assert record.flags == ()


def test_integral_float_id_is_its_integer() -> None:
    assert one("status", {**STATUS, "id_sms_api": 12345.0}).id_sms_api == "12345"  # type: ignore[union-attr]


def test_float_id_beyond_exact_range_is_rejected() -> None:
    assert reason_of(("status", json.dumps({**STATUS, "id_sms_api": 1e20}))) == "wrong_type"


def test_strings_where_numbers_belong() -> None:
    record = one(
        "calls",
        {
            "title": "incoming_call",
            "phone_number": "+33612345678",
            "duration": "42",
            "call_time": "1577971800",
        },
    )
    assert isinstance(record, CallEvent)
    assert record.duration_seconds == 42
    assert record.call_time == datetime(2020, 1, 2, 13, 30, tzinfo=UTC)


def test_numeric_duration_and_epoch_millis() -> None:
    record = one(
        "calls",
        {
            "title": "outgoing_call",
            "phone_number": "+33612345678",
            "duration": 90,
            "call_time": 1577971800000,
        },
    )
    assert isinstance(record, CallEvent)
    assert record.duration_seconds == 90
    assert record.call_time == datetime(2020, 1, 2, 13, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("status", {"a": 1}),
        ("status", [1]),
        ("status", True),
        ("phone_number", True),
        ("phone_number", [1]),
        ("phone_number", -5),
        ("user", {"x": 1}),
    ],
)
def test_wrong_types_are_rejected(field: str, value: object) -> None:
    assert reason_of(("status", json.dumps({**STATUS, field: value}))) == "wrong_type"


# --- timestamps -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2023-07-01 12:00:00", datetime(2023, 7, 1, 10, 0, tzinfo=UTC)),  # CEST, UTC+2
        ("2023-01-01 12:00:00", datetime(2023, 1, 1, 11, 0, tzinfo=UTC)),  # CET, UTC+1
        ("2023-07-01T12:00:00Z", datetime(2023, 7, 1, 12, 0, tzinfo=UTC)),
        ("2023-01-01T12:00:00Z", datetime(2023, 1, 1, 12, 0, tzinfo=UTC)),
    ],
)
def test_naive_is_paris_time_and_z_is_utc(value: str, expected: datetime) -> None:
    record = one("status", {**STATUS, "date_status": value})
    assert isinstance(record, StatusCallback)
    assert record.date_status == expected


def test_configured_zone_applies_to_naive_times() -> None:
    obj = {**STATUS, "date_status": "2023-07-01 12:00:00"}
    (record,) = parse_callbacks(
        [("status", json.dumps(obj))], received_at=RECEIVED, tz=get_zone("UTC")
    )
    assert isinstance(record, StatusCallback)
    assert record.date_status == datetime(2023, 7, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("value", ["yesterday", "2023-02-30 12:00:00", {"d": 1}, [1], True])
def test_bad_timestamp_is_flagged_not_rejected(value: object) -> None:
    record = one("status", {**STATUS, "date_status": value})
    assert isinstance(record, StatusCallback)
    assert record.date_status is None
    assert record.flags == ("BAD_TIMESTAMP",)
    assert record.status == "received"


@pytest.mark.parametrize("value", ["forever", "1:99", -3, {"s": 1}])
def test_bad_duration_is_flagged_as_zero(value: object) -> None:
    record = one(
        "calls", {"title": "incoming_call", "phone_number": "+33612345678", "duration": value}
    )
    assert isinstance(record, CallEvent)
    assert record.duration_seconds == 0
    assert "BAD_DURATION" in record.flags


# --- missing fields -------------------------------------------------------------------------


def test_status_without_id_is_kept_and_flagged() -> None:
    obj = {k: v for k, v in STATUS.items() if k != "id_sms_api"}
    record = one("status", obj)
    assert isinstance(record, StatusCallback)
    assert record.id_sms_api is None
    assert record.flags == ("MISSING_ID_SMS_API",)


def test_click_with_empty_id_is_kept_and_flagged() -> None:
    record = one("clics", {"id_sms_api": "", "phone_number": "+33612345678", "link": "u"})
    assert isinstance(record, ClickCallback)
    assert record.id_sms_api is None
    assert "MISSING_ID_SMS_API" in record.flags


def test_status_without_phone_but_with_id_is_kept_and_flagged() -> None:
    obj = {k: v for k, v in STATUS.items() if k != "phone_number"}
    record = one("status", obj)
    assert record.phone_number == ""
    assert record.flags == ("MISSING_PHONE",)


@pytest.mark.parametrize(
    ("param", "obj"),
    [
        ("status", {k: v for k, v in STATUS.items() if k != "status"}),
        ("status", {**STATUS, "status": "  "}),
        ("status", {"status": "sent"}),
        ("clics", {"link": "https://x.io/"}),
        ("message", {"title": "incoming_sms", "message": "hi"}),
        ("message", {"from": "", "message": "hi"}),
        ("calls", {"title": "missed_call", "call_time": "2023-12-17 20:32:51"}),
        ("calls", {"phone_number": "+33612345678"}),
        ("qualification", {"title": "call_qualification_from_mobile", "qualification": "x"}),
        ("qualification", {"title": "call_qualification_from_mobile", "from": "+33612345678"}),
    ],
)
def test_meaningless_callbacks_are_missing_field(param: str, obj: dict[str, Any]) -> None:
    assert reason_of((param, json.dumps(obj))) == "missing_field"


@pytest.mark.parametrize(
    ("param", "obj"),
    [
        ("calls", {"title": "video_call", "phone_number": "+33612345678"}),
        ("qualification", {"title": "from_the_moon", "from": "+33612345678", "qualification": "x"}),
    ],
)
def test_unknown_titles_are_rejected(param: str, obj: dict[str, Any]) -> None:
    assert reason_of((param, json.dumps(obj))) == "unknown_title"


def test_incoming_sms_without_body_is_kept_and_flagged() -> None:
    record = one("message", {"title": "incoming_sms", "from": "+33612345678"})
    assert isinstance(record, IncomingSms)
    assert record.body == ""
    assert record.flags == ("MISSING_BODY",)


# --- dialects and extras --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("param", "obj", "dialect"),
    [
        ("message", {"title": "incoming sms", "from": "+33612345678", "body": "x"}, "v1"),
        ("message", {"title": "incoming_sms", "from": "+33612345678", "body": "x"}, "v1"),
        ("message", {"title": "incoming_sms", "from": "+33612345678", "message": "x"}, "v2"),
        ("click", {"id_sms_api": "1", "phone_number": "+33612345678"}, "v1"),
        ("clics", {"id_sms_api": "1", "phonenumber": "+33612345678"}, "v1"),
        ("clics", {"id_sms_api": "1", "phone_number": "+33612345678"}, "v2"),
        ("calls", {"title": "incoming call", "phone_number": "+33612345678"}, "v1"),
        (
            "calls",
            {
                "title": "incoming_call",
                "phone_number": "+33612345678",
                "call_date": "2019-07-05 15:11:04",
            },
            "v1",
        ),
        ("calls", {"title": "incoming_call", "phone_number": "+33612345678"}, "v2"),
        ("call", {"title": "incoming_call", "phone_number": "+33612345678"}, "v1"),
    ],
)
def test_dialect_detection(param: str, obj: dict[str, Any], dialect: str) -> None:
    assert one(param, obj).dialect == dialect


def test_unknown_extra_fields_survive_in_raw() -> None:
    obj = {**STATUS, "operator": "Orange", "nested": {"a": [1, 2]}}
    record = one("status", obj)
    assert json.loads(record.raw) == obj


def test_status_is_trimmed_and_lower_cased() -> None:
    record = one("status", {**STATUS, "status": " Sent "})
    assert isinstance(record, StatusCallback)
    assert record.status == "sent"


# --- event ids ------------------------------------------------------------------------------


def test_event_id_ignores_key_order_and_whitespace() -> None:
    reordered = dict(reversed(list(STATUS.items())))
    a = one("status", STATUS)
    b = parse(("status", json.dumps(reordered, indent=4)))[0]
    assert list(reordered) != list(STATUS)
    assert a.event_id == b.event_id


def test_event_id_differs_for_a_different_payload() -> None:
    a = one("status", STATUS)
    b = one("status", {**STATUS, "status": "sent"})
    c = one("status", {**STATUS, "id_sms_api": "A-2"})
    assert len({a.event_id, b.event_id, c.event_id}) == 3


def test_event_id_depends_on_kind_not_on_parameter_spelling() -> None:
    obj = {"id_sms_api": "A-1", "phone_number": "+33612345678", "link": "https://x.io/"}
    assert one("click", obj).event_id == one("clics", obj).event_id
    assert event_id_for("click", obj) != event_id_for("status", obj)


def test_event_id_for_matches_the_record() -> None:
    assert one("status", STATUS).event_id == event_id_for("status", STATUS)


def test_event_id_for_very_deep_objects() -> None:
    deep: Any = "x"
    for _ in range(600):
        deep = {"d": deep}
    assert event_id_for("status", deep) == event_id_for("status", deep)
    assert event_id_for("status", deep) != event_id_for("status", {"d": deep})


def test_callback_params_are_the_contract_names() -> None:
    assert set(CALLBACK_PARAMS) == set(KIND_BY_PARAM)
    assert {"status", "message", "click", "clics", "call", "calls", "qualification"} == set(
        CALLBACK_PARAMS
    )
