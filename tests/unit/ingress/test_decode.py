"""Raw request → parameter pairs, and raw request → dead letter."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import CallbackError
from pipeline.ingress.decode import RawRequest, dead_letter_for, decode_params, decode_query


def test_query_is_percent_decoded_as_utf8() -> None:
    raw = b"status=%7B%22a%22%3A%22%C3%A9%F0%9F%8E%89%22%7D&x="
    assert decode_query(raw) == [("status", '{"a":"é🎉"}'), ("x", "")]


def test_raw_utf8_in_query_is_tolerated() -> None:
    assert decode_query("m=café".encode()) == [("m", "café")]


@pytest.mark.parametrize("raw", [b"a=%C3", b"a=%ff", b"a=\xe9", b"a=%g1", b"a=%", b"a=%4"])
def test_bad_encoding_raises_invalid_encoding(raw: bytes) -> None:
    with pytest.raises(CallbackError) as caught:
        decode_query(raw)
    assert caught.value.reason == "invalid_encoding"


def test_plus_in_query_is_a_space_as_in_forms() -> None:
    # Ardary's encodeURIComponent sends %2B for '+'; a bare '+' means a space.
    assert decode_query(b"a=%2B33+6") == [("a", "+33 6")]


def test_json_body_values_may_be_objects_or_strings() -> None:
    request = RawRequest(
        "POST",
        b"",
        b'{"status": {"b": 1, "a": "x"}, "message": "{\\"k\\": 2}"}',
        "application/json",
    )
    params = dict(decode_params(request))
    assert params["message"] == '{"k": 2}'
    assert params["status"] == '{"b":1,"a":"x"}'


def test_form_body_follows_query_params() -> None:
    request = RawRequest("POST", b"a=1", b"b=2", "application/x-www-form-urlencoded; charset=x")
    assert decode_params(request) == [("a", "1"), ("b", "2")]


@pytest.mark.parametrize(
    ("body", "ctype", "reason"),
    [
        (b"{", "application/json", "invalid_json"),
        (b"[]", "application/json", "invalid_json"),
        (b'{"a":"\xff"}', "application/json", "invalid_encoding"),
        (b"a=1", "text/plain", "unsupported_media_type"),
        (b"a=1", None, "unsupported_media_type"),
    ],
)
def test_bad_bodies(body: bytes, ctype: str | None, reason: str) -> None:
    with pytest.raises(CallbackError) as caught:
        decode_params(RawRequest("POST", b"", body, ctype))
    assert caught.value.reason == reason


def test_dead_letter_keeps_everything_but_the_path() -> None:
    at = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    request = RawRequest("POST", b"q=\xff", b"\x00body\xfe", "application/json")
    letter = dead_letter_for(request, "invalid_json", "d" * 2000, at)
    assert (letter.method, letter.raw, letter.body, letter.content_type) == (
        "POST",
        b"q=\xff",
        b"\x00body\xfe",
        "application/json",
    )
    assert letter.received_at == at
    assert len(letter.detail) < 2000
    again = dead_letter_for(request, "invalid_json", "x", datetime.now(UTC))
    other = dead_letter_for(RawRequest("POST", b"q=\xfe", b"\x00body\xfe"), "r", "x", at)
    assert letter.event_id == again.event_id != other.event_id


@settings(max_examples=500)
@given(
    st.lists(
        st.tuples(st.text(max_size=8), st.text(max_size=30)).map(
            lambda kv: f"{quote_plus(kv[0])}={quote_plus(kv[1])}"
        ),
        max_size=5,
    ).map("&".join)
    | st.text(alphabet="ab=&+%2Bé\\x", max_size=30).filter(lambda t: "%" not in t)
)
def test_decode_query_agrees_with_parse_qsl(query: str) -> None:
    expected = parse_qsl(query, keep_blank_values=True, errors="strict")
    assert decode_query(query.encode()) == expected


@given(st.binary(max_size=60))
def test_decode_query_agrees_with_parse_qsl_or_rejects(raw: bytes) -> None:
    try:
        got = decode_query(raw)
    except CallbackError as exc:
        assert exc.reason == "invalid_encoding"
        return
    assert got == parse_qsl(raw.decode("utf-8"), keep_blank_values=True, errors="strict")
