"""parse_send_request: both dialects' field names, E.164, send dates, and clear refusals."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from pipeline.core.send_requests import parse_send_request
from pipeline.errors import InputError

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")


def test_contract_names() -> None:
    req = parse_send_request(
        {
            "id_sms_api": "abc",
            "login": "me@x.fr",
            "phone_number": "+33 6 12 34 56 78",
            "message": "hi",
            "priority": 2,
            "routing": "mobile",
            "metadata": {"campaign": "spring", "n": 3},
            "url": "https://example.com/",
        },
        now=NOW,
    )
    assert req.id_sms_api == "abc"
    assert req.phone_number == "+33612345678"
    assert (req.priority, req.routing) == (2, "MOBILE")
    assert dict(req.metadata) == {"campaign": "spring", "n": "3"}
    assert req.requested_at == NOW and req.date_to_send is None


def test_ardary_names_and_naive_date_in_ardary_timezone() -> None:
    req = parse_send_request(
        {"phonenumber": "+33612345678", "message": "x", "priorite": "0", "url": "",
         "date_to_send": "2025-10-29 10:16:10"},
        now=NOW, default_login="L", tz=PARIS,
    )  # fmt: skip
    assert (req.login, req.priority, req.url, req.routing) == ("L", 0, None, "SERVER")
    # 10:16 in Paris on 29 October (winter time, UTC+1)
    assert req.date_to_send == datetime(2025, 10, 29, 9, 16, 10, tzinfo=UTC)


def test_generates_distinct_ids_when_absent() -> None:
    obj = {"phone_number": "+33612345678", "message": "x", "login": "L"}
    a, b = (parse_send_request(obj, now=NOW).id_sms_api for _ in range(2))
    assert a != b and len(a) == 32


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ({"message": "x", "login": "L"}, "phone_number"),
        ({"phone_number": "0612345678", "message": "x", "login": "L"}, "not a valid"),
        ({"phone_number": "+33612345678", "login": "L"}, "message is required"),
        ({"phone_number": "+33612345678", "message": "x"}, "ARDARY_LOGIN"),
        ({"phone_number": "+33612345678", "message": "x", "login": "L", "priority": 5}, "priority"),
        (
            {"phone_number": "+33612345678", "message": "x", "login": "L", "routing": "SMS"},
            "routing",
        ),
        (
            {"phone_number": "+33612345678", "message": "x", "login": "L", "date_to_send": "soon"},
            "date_to_send",
        ),
        (
            {"phone_number": "+33612345678", "message": "x", "login": "L", "metadata": {"a": [1]}},
            "metadata.a",
        ),
        (
            {
                "phone_number": "+33612345678",
                "phonenumber": "+33699999999",
                "message": "x",
                "login": "L",
            },
            "twice",
        ),
    ],
)
def test_refusals_name_the_field(obj: dict[str, object], reason: str) -> None:
    with pytest.raises(InputError, match=reason) as info:
        parse_send_request(obj, now=NOW)
    assert info.value.exit_code == 2


BASE = {"phone_number": "+33612345678", "message": "x", "login": "L"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        (1, True),  # Ardary's 0/1 flags (addStop, addReply)
        (0, False),
        ("1", True),  # the PHP example's form field
        ("0", False),
        ("true", True),
        (" FALSE ", False),
        ("", False),  # an empty form field
        (None, False),
    ],
)
def test_marketing_in_the_contracts_and_ardarys_spellings(value: object, expected: bool) -> None:
    assert parse_send_request({**BASE, "marketing": value}, now=NOW).marketing is expected


def test_marketing_defaults_to_false_and_add_stop_alone_does_not_make_it() -> None:
    assert parse_send_request(BASE, now=NOW).marketing is False
    assert parse_send_request({**BASE, "addStop": 1, "add_stop": "1"}, now=NOW).marketing is False


@pytest.mark.parametrize("value", [2, -1, 1.0, "yes", "oui", [], {}])
def test_a_marketing_flag_that_is_not_a_boolean_is_refused(value: object) -> None:
    with pytest.raises(InputError, match="marketing must be true or false"):
        parse_send_request({**BASE, "marketing": value}, now=NOW)
