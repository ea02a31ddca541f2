"""Ardary API payloads, answer parsing, error codes, the httpx client and the login breaker."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest

from pipeline.ardary import api, codes
from pipeline.ardary.codes import CodeCategory
from pipeline.clients.ardary_api import (
    ArdaryClient,
    ArdaryOutcomeUnknown,
    parse_retry_after,
)
from pipeline.core.breaker import BreakerState, LoginCircuitBreaker
from pipeline.errors import (
    ArdaryAuthError,
    ArdaryError,
    ArdaryProtocolError,
    ArdaryTransientError,
)
from pipeline.records import ContactSyncRequest, SendRequest

SECRET = "sk-very-secret-0123456789"
LOGIN = "sender@example.com"
T0 = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)


def req(i: str = "id1", **kw: Any) -> SendRequest:
    base: dict[str, Any] = {
        "id_sms_api": i,
        "login": LOGIN,
        "phone_number": "+33612345678",
        "message": "Hello",
        "requested_at": T0,
    }
    base.update(kw)
    return SendRequest(**base)


# ---------------------------------------------------------------- codes


def test_send_codes_categories_follow_the_brief() -> None:
    expected = {
        "#001": CodeCategory.ACCOUNT,
        "#002": CodeCategory.ACCOUNT,
        "#003": CodeCategory.COMPLIANCE,
        "#004": CodeCategory.COMPLIANCE,
        "#006": CodeCategory.PERMANENT,
        "#007": CodeCategory.PERMANENT,
        "#009": CodeCategory.TRANSIENT,
    }
    assert {c: e.category for c, e in codes.SEND_CODES.items()} == expected
    assert "stop" in codes.SEND_CODES["#003"].meaning.lower()


def test_contact_codes_are_a_separate_table() -> None:
    assert set(codes.CONTACT_CODES) == {"#001", "#002", "#003", "#004"}
    assert "phone" in codes.CONTACT_CODES["#001"].meaning.lower()
    assert "auth" in codes.SEND_CODES["#001"].meaning.lower()
    assert "mail" in codes.contact_code("#004").meaning.lower()


def test_undocumented_send_code_is_transient() -> None:
    assert codes.send_code("#005").category is CodeCategory.TRANSIENT


# ---------------------------------------------------------------- payloads


def test_send_payload_uses_the_later_doc_spellings() -> None:
    payload = api.build_send_payload(
        LOGIN, SECRET, [req(priority=2)], mode="prod", routing="SERVER"
    )
    assert payload["header"] == {"login": LOGIN, "accessKey": SECRET, "mode": "prod"}
    (msg,) = payload["messages"]
    assert msg["phone_number"] == "+33612345678"
    assert msg["priority"] == 2
    assert "phonenumber" not in msg and "priorite" not in msg


def test_send_payload_date_to_send_is_naive_local_time() -> None:
    # 12:00 UTC in January is 13:00 in Paris (CET, UTC+1), 07:00 in New York.
    payload = api.build_send_payload(
        LOGIN, SECRET, [req(date_to_send=T0)], mode="test", routing="SERVER"
    )
    assert payload["messages"][0]["date_to_send"] == "2025-01-15 13:00:00"
    ny = api.build_send_payload(
        LOGIN,
        SECRET,
        [req(date_to_send=T0)],
        mode="test",
        routing="SERVER",
        timezone="America/New_York",
    )
    assert ny["messages"][0]["date_to_send"] == "2025-01-15 07:00:00"


def test_naive_date_to_send_is_refused() -> None:
    with pytest.raises(ValueError):
        api.build_send_payload(
            LOGIN, SECRET, [req(date_to_send=datetime(2025, 1, 1))], mode="test", routing="SERVER"
        )


@pytest.mark.parametrize(
    ("message", "url", "expected"),
    [
        ("Book here", "https://x.io", "Book here [Link]"),
        ("Book here [Link] now", "https://x.io", "Book here [Link] now"),
        ("Book [Lien_Tracking]", "https://x.io", "Book [Lien_Tracking]"),
        ("No link", None, "No link"),
    ],
)
def test_link_placeholder(message: str, url: str | None, expected: str) -> None:
    payload = api.build_send_payload(
        LOGIN, SECRET, [req(message=message, url=url)], mode="test", routing="SERVER"
    )
    (msg,) = payload["messages"]
    assert msg["message"] == expected
    assert msg.get("url") == url


def test_sender_name_only_for_server_routing_and_must_be_shared() -> None:
    server = api.build_send_payload(
        LOGIN, SECRET, [req(sender_name="Shop")], mode="test", routing="SERVER"
    )
    assert server["header"]["sender_name"] == "Shop"
    mobile = api.build_send_payload(
        LOGIN, SECRET, [req(sender_name="Shop", routing="MOBILE")], mode="test", routing="MOBILE"
    )
    assert "sender_name" not in mobile["header"]
    with pytest.raises(ValueError):
        api.build_send_payload(
            LOGIN,
            SECRET,
            [req("a", sender_name="A"), req("b", sender_name="B")],
            mode="test",
            routing="SERVER",
        )
    with pytest.raises(ValueError):
        api.build_send_payload(LOGIN, SECRET, [req(login="other")], mode="test", routing="SERVER")


def test_marketing_on_the_servers_route_switches_stop_on_in_both_spellings() -> None:
    payload = api.build_send_payload(
        LOGIN, SECRET, [req("m", marketing=True), req("t")], mode="prod", routing="SERVER"
    )
    marketing, transactional = payload["messages"]
    # Ardary's own flag, and the STOP mention as the older doc's JSON (addStop) and PHP
    # (add_stop) examples spell it, as 0/1 flags
    assert {k: marketing[k] for k in ("marketing", "addStop", "add_stop")} == {
        "marketing": 1,
        "addStop": 1,
        "add_stop": 1,
    }
    assert marketing["message"] == "Hello"  # the text itself is not edited
    # a transactional message's payload is exactly what it was before issue 17
    assert transactional == {
        "id_sms_api": "t",
        "phone_number": "+33612345678",
        "message": "Hello",
        "priority": 1,
    }


def test_marketing_on_the_mobile_route_adds_nothing() -> None:
    # sendSmsSolo has no STOP option ("Not needed for Mobile SMS routing") and its example posts
    # no marketing flag: the user's phone sends the text as written
    mobile = api.build_send_payload(
        LOGIN,
        SECRET,
        [req(marketing=True, routing="MOBILE")],
        mode="prod",
        routing="MOBILE",
    )
    plain = api.build_send_payload(
        LOGIN, SECRET, [req(routing="MOBILE")], mode="prod", routing="MOBILE"
    )
    assert mobile == plain
    assert not set(api.MARKETING_FIELDS) & set(mobile["messages"][0])


def test_endpoint_for_routing() -> None:
    assert api.endpoint_for("SERVER") == "sendSms"
    assert api.endpoint_for("MOBILE") == "sendSmsSolo"


def test_contact_payload() -> None:
    contact = ContactSyncRequest(
        "+33612345678", LOGIN, T0, firstname="Jo", address="1 rue X", email="jo@x.io"
    )
    payload = api.build_contact_payload(LOGIN, SECRET, [contact])
    assert payload["header"] == {"login": LOGIN, "accessKey": SECRET}
    assert payload["contacts"] == [
        {"phonenumber": "+33612345678", "firstname": "Jo", "adress": "1 rue X", "email": "jo@x.io"}
    ]


# ---------------------------------------------------------------- answers

DOC_SUCCESS = {  # the older doc's success example, made valid JSON
    "data": [
        {
            "id_sms_api": "09403292039020",
            "sms_per_message": 1,
            "sent_time": "2020-01-02T13:34:37.096Z",
            "phonenumber": "+1XXXXXXXXXX",
            "message": "Hi",
        },
        {
            "id_sms_api": "109O3238932832",
            "sms_per_message": 2,
            "sent_time": "2020-01-02T13:34:37.096Z",
        },
    ]
}


def test_parse_documented_success() -> None:
    out = api.parse_send_answer(DOC_SUCCESS, ["09403292039020", "109O3238932832"])
    assert [o.outcome for o in out] == ["SUBMITTED", "SUBMITTED"]
    assert [o.sms_per_message for o in out] == [1, 2]
    assert out[0].sent_time == datetime(2020, 1, 2, 13, 34, 37, 96000, tzinfo=UTC)
    assert out[0].error_codes == () and out[0].category is None


def test_parse_naive_sent_time_is_local() -> None:
    body = {"data": [{"id_sms_api": "a", "sent_time": "2020-07-01 10:00:00"}]}
    (o,) = api.parse_send_answer(body, ["a"])
    assert o.sent_time == datetime(2020, 7, 1, 8, 0, tzinfo=UTC)  # Paris is UTC+2 in July


@pytest.mark.parametrize(
    ("code", "outcome", "category"),
    [
        ("#001", "FAILED", CodeCategory.ACCOUNT),
        ("#002", "FAILED", CodeCategory.ACCOUNT),
        ("#003", "SUPPRESSED", CodeCategory.COMPLIANCE),
        ("#004", "REJECTED", CodeCategory.COMPLIANCE),
        ("#006", "REJECTED", CodeCategory.PERMANENT),
        ("#007", "REJECTED", CodeCategory.PERMANENT),
        ("#009", "FAILED", CodeCategory.TRANSIENT),
    ],
)
def test_parse_each_error_code(code: str, outcome: str, category: CodeCategory) -> None:
    body = {"data": [{"id_sms_api": "x", "error": [code]}, {"id_sms_api": "y"}], "count_sent": 1}
    x, y = api.parse_send_answer(body, ["x", "y"])
    assert (x.outcome, x.error_codes, x.category) == (outcome, (code,), category)
    assert y.outcome == "SUBMITTED"


def test_stop_wins_over_other_message_codes_and_account_over_all() -> None:
    body = {
        "data": [
            {"id_sms_api": "a", "error": ["#004", "#003"]},
            {"id_sms_api": "b", "error": ["#003", "#001"]},
        ]
    }
    a, b = api.parse_send_answer(body, ["a", "b"])
    assert a.outcome == "SUPPRESSED" and a.error_codes == ("#004", "#003")
    assert b.category is CodeCategory.ACCOUNT and b.outcome == "FAILED"


def test_count_sent_does_not_override_entries() -> None:
    body = {"data": [{"id_sms_api": "a"}, {"id_sms_api": "b", "error": "#007"}], "count_sent": 2}
    a, b = api.parse_send_answer(body, ["a", "b"])
    assert a.outcome == "SUBMITTED"
    assert b.outcome == "REJECTED" and b.error_codes == ("#007",)


def test_missing_ids_fail_and_extra_ids_are_ignored() -> None:
    body = {"data": [{"id_sms_api": "b"}, {"id_sms_api": "zzz"}]}
    out = api.parse_send_answer(body, ["a", "b", "c"])
    assert [o.id_sms_api for o in out] == ["a", "b", "c"]
    assert out[0].outcome == "FAILED" and out[0].error_codes == (codes.MISSING_IN_ANSWER,)
    assert out[1].outcome == "SUBMITTED"
    assert out[2].error_codes == (codes.MISSING_IN_ANSWER,)


def test_top_level_error_applies_to_every_message() -> None:
    out = api.parse_send_answer({"error": ["#001"]}, ["a", "b"])
    assert all(o.category is CodeCategory.ACCOUNT for o in out)
    assert [o.id_sms_api for o in out] == ["a", "b"]


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "ok",
        {},
        {"data": "x"},
        {"data": [1]},
        {"data": [{"sms_per_message": 1}]},
        {"data": [{"id_sms_api": "a", "error": [1]}]},
        {"data": [{"id_sms_api": "a", "sms_per_message": "lots"}]},
        {"data": [{"id_sms_api": "a", "sent_time": "yesterday"}]},
        {"error": []},
    ],
)
def test_malformed_answers_raise_protocol_error(body: Any) -> None:
    with pytest.raises(ArdaryProtocolError):
        api.parse_send_answer(body, ["a"])


def test_parse_contact_answer() -> None:
    body = {
        "data": {
            "contact": [
                {"phonenumber": "+33 6 12 34 56 78", "result": "success"},
                {"phonenumber": "+1999", "result": "failed", "errors": ["#001"]},
            ]
        }
    }
    out = api.parse_contact_answer(body, ["+33612345678", "+1999", "+4420"])
    assert [(o.outcome, o.error_codes) for o in out] == [
        ("SUCCESS", ()),
        ("FAILED", ("#001",)),
        ("FAILED", (codes.MISSING_IN_ANSWER,)),
    ]
    with pytest.raises(ArdaryProtocolError):
        api.parse_contact_answer({"data": [{}]}, ["+1"])
    with pytest.raises(ArdaryProtocolError):
        api.parse_contact_answer({"data": {"contact": [{"phonenumber": "+1"}]}}, ["+1"])


# ---------------------------------------------------------------- retry-after


def test_parse_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    http_date = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(http_date, now=now) == pytest.approx(30.0)


# ---------------------------------------------------------------- breaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_half_opens_and_closes() -> None:
    clock = FakeClock()
    b = LoginCircuitBreaker(cooldown=60, clock=clock)
    assert b.allow("a") and b.state("a") is BreakerState.CLOSED
    b.record_account_error("a")
    assert b.state("a") is BreakerState.OPEN and not b.allow("a")
    assert b.allow("other")  # per login
    clock.now += 59
    assert not b.allow("a") and b.retry_in("a") == pytest.approx(1)
    clock.now += 1
    assert b.state("a") is BreakerState.HALF_OPEN
    assert b.allow("a")  # the one probe
    assert not b.allow("a")  # no second probe while the first runs
    b.record_success("a")
    assert b.state("a") is BreakerState.CLOSED and b.allow("a")


def test_breaker_failed_probe_reopens_for_a_full_cooldown() -> None:
    clock = FakeClock()
    b = LoginCircuitBreaker(cooldown=10, clock=clock)
    b.record_account_error("a")
    clock.now += 10
    assert b.allow("a")
    b.record_account_error("a")
    assert b.state("a") is BreakerState.OPEN and b.retry_in("a") == pytest.approx(10)
    clock.now += 10
    assert b.allow("a")
    b.release_probe("a")  # probe ended without a verdict: another may go
    assert b.allow("a")


# ---------------------------------------------------------------- client


def make_client(handler: Any, **kw: Any) -> tuple[ArdaryClient, httpx.AsyncClient]:
    http = httpx.AsyncClient(
        base_url="https://ardary.test/api", transport=httpx.MockTransport(handler)
    )
    keys = {LOGIN: SECRET}
    return ArdaryClient(http, keys.get, **kw), http


def echo_success(request: httpx.Request) -> httpx.Response:
    body = orjson.loads(request.content)
    data = [
        {"id_sms_api": m["id_sms_api"], "sms_per_message": 1, "sent_time": "2025-01-01T00:00:00Z"}
        for m in body["messages"]
    ]
    return httpx.Response(200, json={"data": data})


async def test_client_posts_to_the_routing_endpoint() -> None:
    seen: list[tuple[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, orjson.loads(request.content)))
        return echo_success(request)

    client, http = make_client(handler, mode="prod")
    async with http:
        out = await client.send_sms(LOGIN, [req("a"), req("b")], "SERVER")
        await client.send_sms(LOGIN, [req("c", routing="MOBILE")], "MOBILE")
    assert [o.outcome for o in out] == ["SUBMITTED", "SUBMITTED"]
    assert [p for p, _ in seen] == ["/api/sendSms", "/api/sendSmsSolo"]
    assert seen[0][1]["header"]["mode"] == "prod"


async def test_client_429_carries_retry_after() -> None:
    client, http = make_client(lambda r: httpx.Response(429, headers={"Retry-After": "3"}))
    async with http:
        with pytest.raises(ArdaryTransientError) as info:
            await client.send_sms(LOGIN, [req()])
    assert info.value.retry_after == 3.0 and info.value.retriable


async def test_send_with_retries_recovers_after_5xx() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] <= 2:
            return httpx.Response(503 if calls["n"] == 1 else 429, headers={"Retry-After": "2"})
        return echo_success(request)

    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    client, http = make_client(handler)
    async with http:
        result = await client.send_with_retries(LOGIN, [req()], sleep=fake_sleep, base_delay=0.01)
    assert result.attempts == 3
    assert [o.outcome for o in result.outcomes] == ["SUBMITTED"]
    assert len(waits) == 2 and all(w >= 2.0 for w in waits)  # Retry-After is a minimum


async def test_send_with_retries_gives_up_after_max_attempts() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        return httpx.Response(500)

    async def no_sleep(seconds: float) -> None:
        return None

    client, http = make_client(handler)
    async with http:
        with pytest.raises(ArdaryTransientError):
            await client.send_with_retries(LOGIN, [req()], max_attempts=4, sleep=no_sleep)
    assert calls["n"] == 4


async def test_non_retriable_errors_are_not_retried() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        return httpx.Response(200, content=b"<html>maintenance</html>")

    async def no_sleep(seconds: float) -> None:
        return None

    client, http = make_client(handler)
    async with http:
        with pytest.raises(ArdaryProtocolError):
            await client.send_with_retries(LOGIN, [req()], sleep=no_sleep)
    assert calls["n"] == 1


async def test_read_timeout_is_outcome_unknown_and_not_retried_blindly() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        raise httpx.ReadTimeout("timed out", request=request)

    async def no_sleep(seconds: float) -> None:
        return None

    client, http = make_client(handler)
    async with http:
        with pytest.raises(ArdaryOutcomeUnknown):
            await client.send_with_retries(LOGIN, [req()], sleep=no_sleep)
        assert calls["n"] == 1
        with pytest.raises(ArdaryOutcomeUnknown):
            await client.send_with_retries(
                LOGIN, [req()], sleep=no_sleep, max_attempts=3, retry_unknown_outcome=True
            )
    assert calls["n"] == 4


async def test_connect_error_is_transient_and_retried() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ConnectError("refused", request=request)
        return echo_success(request)

    async def no_sleep(seconds: float) -> None:
        return None

    client, http = make_client(handler)
    async with http:
        result = await client.send_with_retries(LOGIN, [req()], sleep=no_sleep)
    assert result.attempts == 2


async def test_all_account_errors_raise_auth_error_and_trip_the_breaker() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        ids = [m["id_sms_api"] for m in orjson.loads(request.content)["messages"]]
        return httpx.Response(
            200, json={"data": [{"id_sms_api": i, "error": ["#002"]} for i in ids]}
        )

    clock = FakeClock()
    breaker = LoginCircuitBreaker(cooldown=60, clock=clock)
    client, http = make_client(handler, breaker=breaker)
    async with http:
        with pytest.raises(ArdaryAuthError, match="#002"):
            await client.send_sms(LOGIN, [req("a"), req("b")])
        assert breaker.state(LOGIN) is BreakerState.OPEN
        with pytest.raises(ArdaryAuthError):
            await client.send_sms(LOGIN, [req("c")])
        assert calls["n"] == 1  # the open breaker did not call Ardary
        clock.now += 60
        with pytest.raises(ArdaryAuthError):
            await client.send_sms(LOGIN, [req("d")])  # the half-open probe fails
        assert calls["n"] == 2 and breaker.state(LOGIN) is BreakerState.OPEN


async def test_mixed_account_and_ok_answer_is_not_an_auth_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"data": [{"id_sms_api": "a", "error": ["#001"]}, {"id_sms_api": "b"}]}
        )

    client, http = make_client(handler)
    async with http:
        a, b = await client.send_sms(LOGIN, [req("a"), req("b")])
    assert a.category is CodeCategory.ACCOUNT and b.outcome == "SUBMITTED"


async def test_missing_access_key_is_an_auth_error() -> None:
    client, http = make_client(echo_success)
    async with http:
        with pytest.raises(ArdaryAuthError, match="nobody@x"):
            await client.send_sms("nobody@x", [req(login="nobody@x")])


async def test_sync_contacts() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        assert request.url.path == "/api/contact"
        contacts = [{**c, "result": "success"} for c in body["contacts"]]
        return httpx.Response(200, json={"data": {"contact": contacts}})

    client, http = make_client(handler)
    async with http:
        out = await client.sync_contacts(LOGIN, [ContactSyncRequest("+33612345678", LOGIN, T0)])
    assert [o.outcome for o in out] == ["SUCCESS"]


def _failing_handlers() -> list[Any]:
    def raise_(exc_type: type[Exception]) -> Any:
        def handler(request: httpx.Request) -> httpx.Response:
            raise exc_type("connection trouble", request=request)

        return handler

    def respond(status: int, content: bytes = b"") -> Any:
        def handler(request: httpx.Request) -> httpx.Response:
            return httpx.Response(status, content=content or request.content)

        return handler

    def account_error(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [{"id_sms_api": "id1", "error": ["#001"]}]})

    return [
        raise_(httpx.ReadTimeout),
        raise_(httpx.ConnectTimeout),
        raise_(httpx.ConnectError),
        raise_(httpx.RemoteProtocolError),
        respond(429),
        respond(500),
        respond(401),
        respond(404),
        respond(200, b"not json " + SECRET.encode()),
        respond(200),  # echoes the request (with the key) as an answer of the wrong shape
        account_error,
    ]


@pytest.mark.parametrize("handler", _failing_handlers())
async def test_access_key_never_leaks(handler: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def no_sleep(seconds: float) -> None:
        return None

    client, http = make_client(handler, breaker=LoginCircuitBreaker())
    async with http:
        with pytest.raises(ArdaryError) as info:
            await client.send_with_retries(LOGIN, [req()], max_attempts=2, sleep=no_sleep)
    exc: BaseException | None = info.value
    while exc is not None:  # the whole chain, as a logged traceback would show it
        assert SECRET not in str(exc) and SECRET not in repr(exc)
        exc = exc.__cause__ or exc.__context__
    assert SECRET not in caplog.text
    assert SECRET not in repr(client)


def test_timezone_object_is_accepted() -> None:
    out = api.format_ardary_time(T0, ZoneInfo("UTC"))
    assert out == "2025-01-15 12:00:00"
