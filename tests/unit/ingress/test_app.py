"""The ingress ASGI app over httpx.ASGITransport, with an in-memory publisher."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from pipeline.ingress import app as app_module
from pipeline.ingress.app import IngressApp, create_app
from pipeline.ingress.decode import MAX_REQUEST_BYTES
from pipeline.kafka.publisher import PublishItem
from pipeline.records import DeadLetter, IncomingSms, StatusCallback
from pipeline.serde import AvroCodec
from pipeline.settings import load_settings
from pipeline.topics import record_key, spec_for, topic_for_record

from .conftest import PREFIX, TOKEN, FakePublisher, call_raw
from .samples import incoming_json, seed_samples, status_json

CB = f"/callbacks/{TOKEN}"
DEAD = spec_for("callbacks.dead-letter").full_name(PREFIX)


def q(param: str, value: str) -> str:
    return f"{param}={quote(value, safe='')}"


@pytest.mark.parametrize("sample", seed_samples(), ids=lambda s: s.name)
async def test_every_seed_example_is_published_on_its_topic(
    client: httpx.AsyncClient, publisher: FakePublisher, codec: AvroCodec, sample
) -> None:
    response = await client.get(f"{CB}?{sample.query().decode()}")
    assert response.status_code == 200, response.text
    (accepted,) = response.json()["accepted"]
    (topic, key, value) = publisher.sent[0]
    record = codec.decode(value)
    assert type(record).__name__ == sample.record_type
    assert accepted == {
        "kind": sample.kind,
        "topic": topic_for_record(type(record)).full_name(PREFIX),
        "event_id": record.event_id,
    }
    assert topic == accepted["topic"]
    assert key == record_key(record)


async def test_status_is_keyed_by_id_sms_api(
    client: httpx.AsyncClient, publisher: FakePublisher, codec: AvroCodec
) -> None:
    response = await client.get(f"{CB}?{q('status', status_json('id-42'))}")
    assert response.status_code == 200
    (_, key, value) = publisher.sent[0]
    record = codec.decode(value)
    assert isinstance(record, StatusCallback)
    assert (key, record.id_sms_api, record.phone_number) == (b"id-42", "id-42", "+33612345678")


async def test_two_kinds_in_one_request(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    url = f"{CB}?{q('status', status_json())}&{q('message', incoming_json('Bonjour é 🎉'))}"
    response = await client.get(url)
    assert response.status_code == 200
    kinds = sorted(a["kind"] for a in response.json()["accepted"])
    assert kinds == ["incoming_sms", "status"]
    assert sorted(publisher.topics()) == sorted(
        [f"{PREFIX}callbacks.status", f"{PREFIX}callbacks.incoming-sms"]
    )


async def test_same_callback_twice_gets_same_event_id(client: httpx.AsyncClient) -> None:
    url = f"{CB}?{q('status', status_json())}"
    first = (await client.get(url)).json()["accepted"][0]["event_id"]
    second = (await client.get(url)).json()["accepted"][0]["event_id"]
    assert first == second


async def test_post_form_and_json_match_get(
    client: httpx.AsyncClient, publisher: FakePublisher, codec: AvroCodec
) -> None:
    body = incoming_json("Hello + plus & ampersand")
    by_get = (await client.get(f"{CB}?{q('message', body)}")).json()
    by_form = (await client.post(CB, data={"message": body})).json()
    by_json_string = (await client.post(CB, json={"message": body})).json()
    by_json_object = (await client.post(CB, json={"message": json.loads(body)})).json()
    assert by_get == by_form == by_json_string == by_json_object
    decoded = [codec.decode(v) for _, _, v in publisher.sent]
    assert all(isinstance(r, IncomingSms) for r in decoded)
    assert {r.body for r in decoded} == {"Hello + plus & ampersand"}


async def test_ten_kib_message_is_accepted(
    client: httpx.AsyncClient, publisher: FakePublisher, codec: AvroCodec
) -> None:
    # 10 KiB of text (the limit counts percent-encoded bytes: mostly letters stay 1 byte).
    text = ("Bonjour, ceci est un long SMS de test. " * 300)[: 10 * 1024 - 2] + "é"
    response = await client.get(f"{CB}?{q('message', incoming_json(text))}")
    assert response.status_code == 200
    record = codec.decode(publisher.sent[0][2])
    assert isinstance(record, IncomingSms)
    assert record.body == text


async def test_wrong_token_is_404_like_any_unknown_path(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    query = q("status", status_json())
    wrong = await client.get(f"/callbacks/{TOKEN}x?{query}")
    prefix = await client.get(f"/callbacks/{TOKEN[:-1]}?{query}")
    bare = await client.get(f"/callbacks?{query}")
    unknown = await client.get("/no/such/path")
    posted = await client.post("/callbacks/nope", data={"status": status_json()})
    for response in (wrong, prefix, bare, posted):
        assert response.status_code == 404
        assert response.content == unknown.content
        assert response.headers["content-type"] == unknown.headers["content-type"]
    assert unknown.status_code == 404
    assert publisher.sent == []


async def test_token_is_compared_in_constant_time(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[bytes, bytes]] = []
    real = app_module.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(app_module.hmac, "compare_digest", spy)
    assert (await client.get("/callbacks/guess")).status_code == 404
    assert seen == [(b"guess", TOKEN.encode())]


async def test_without_token_callbacks_is_open(publisher: FakePublisher, codec: AvroCodec) -> None:
    settings = load_settings(pipeline_callback_token=None, pipeline_topic_prefix=PREFIX)
    open_app = create_app(settings, publisher=publisher, codec=codec)
    transport = httpx.ASGITransport(app=open_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        ok = await c.get(f"/callbacks?{q('status', status_json())}")
        tokened = await c.get(f"/callbacks/anything?{q('status', status_json())}")
    assert ok.status_code == 200
    assert tokened.status_code == 404


async def test_query_past_16_kib_is_413(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    big = q("status", status_json(message_pad="x" * MAX_REQUEST_BYTES))
    response = await client.get(f"{CB}?{big}")
    assert response.status_code == 413
    assert publisher.sent == []


async def test_body_past_16_kib_is_413_by_content_length(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    response = await client.post(CB, data={"status": status_json(message_pad="y" * 17_000)})
    assert response.status_code == 413
    assert publisher.sent == []


async def test_body_past_16_kib_is_413_while_streaming(
    app: IngressApp, publisher: FakePublisher
) -> None:
    # No Content-Length (chunked): the app must count the bytes as they arrive.
    chunks = [b"status=" + b"z" * 8000, b"z" * 8000, b"z" * 8000]
    response = await call_raw(
        app,
        "POST",
        CB,
        body_chunks=chunks,
        headers=[
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"transfer-encoding", b"chunked"),
        ],
    )
    assert response.status == 413
    assert publisher.sent == []


async def test_query_plus_body_limit_counts_both(app: IngressApp, publisher: FakePublisher) -> None:
    query = b"status=" + b"a" * 9000
    body = b"message=" + b"b" * 9000
    response = await call_raw(
        app,
        "POST",
        CB,
        query=query,
        body_chunks=[body],
        headers=[
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-length", str(len(body)).encode()),
        ],
    )
    assert response.status == 413


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        (b"status=%7Bnot%20json", "invalid_json"),
        (b"status=%FF%FE", "invalid_encoding"),
        (b"status=\xff\xfe", "invalid_encoding"),
        (b"status=%ZZ", "invalid_encoding"),
        (b"status=%5B1%2C2%5D", "not_an_object"),
        (b"nothing=here", "no_callback"),
    ],
)
async def test_unreadable_query_is_400_and_dead_lettered_byte_exact(
    app: IngressApp, publisher: FakePublisher, codec: AvroCodec, query: bytes, reason: str
) -> None:
    response = await call_raw(app, "GET", CB, query=query)
    assert response.status == 400
    assert response.json["error"] == reason
    assert isinstance(response.json["detail"], str)
    ((topic, key, value),) = publisher.sent
    assert (topic, key) == (DEAD, None)
    letter = codec.decode(value)
    assert isinstance(letter, DeadLetter)
    assert (letter.raw, letter.method, letter.reason, letter.body) == (query, "GET", reason, b"")
    assert TOKEN.encode() not in value


async def test_bad_post_body_is_dead_lettered_with_body_and_content_type(
    app: IngressApp, publisher: FakePublisher, codec: AvroCodec
) -> None:
    body = b'{"status": [1, 2], "x": "\xc3\xa9"}'
    response = await call_raw(
        app,
        "POST",
        CB,
        query=b"a=1",
        body_chunks=[body],
        headers=[
            (b"content-type", b"application/json; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
        ],
    )
    assert response.status == 400
    letter = codec.decode(publisher.sent[0][2])
    assert isinstance(letter, DeadLetter)
    assert (letter.method, letter.raw, letter.body) == ("POST", b"a=1", body)
    assert letter.content_type == "application/json; charset=utf-8"


async def test_json_body_that_is_not_an_object_is_400(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    response = await client.post(CB, json=[{"status": status_json()}])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_json"
    assert publisher.topics() == [DEAD]


async def test_unsupported_content_type_is_400(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    response = await client.post(CB, content=b"status=x", headers={"content-type": "text/plain"})
    assert response.status_code == 400
    assert publisher.topics() == [DEAD]


async def test_same_bad_request_gets_same_dead_letter_id(
    app: IngressApp, publisher: FakePublisher, codec: AvroCodec
) -> None:
    await call_raw(app, "GET", CB, query=b"status=nope")
    await call_raw(app, "GET", CB, query=b"status=nope")
    await call_raw(app, "GET", CB, query=b"status=nope2")
    ids = [codec.decode(v).event_id for _, _, v in publisher.sent]  # type: ignore[union-attr]
    assert ids[0] == ids[1] != ids[2]


async def test_broker_failure_is_503_never_200(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    publisher.fail = True
    good = await client.get(f"{CB}?{q('status', status_json())}")
    bad = await client.get(f"{CB}?status=broken")
    assert good.status_code == 503
    assert good.json() == {"error": "broker_unavailable"}
    # The dead letter could not be kept either: 503, so Ardary retries instead of losing it.
    assert bad.status_code == 503
    assert publisher.sent == []


async def test_hanging_broker_is_503_within_the_bound(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    publisher.gate = asyncio.Event()  # never set: the broker never acknowledges
    response = await client.get(f"{CB}?{q('status', status_json())}")
    assert response.status_code == 503
    assert publisher.sent == []


async def test_one_failed_record_of_two_fails_the_request(
    app: IngressApp, codec: AvroCodec
) -> None:
    class HalfBroken(FakePublisher):
        async def publish(
            self, items: Sequence[PublishItem], within: float, headers: Any = None
        ) -> None:
            if any(topic.endswith("incoming-sms") for topic, _, _ in items):
                from pipeline.errors import BrokerError

                raise BrokerError("partition offline")
            await super().publish(items, within, headers)

    app.publisher = HalfBroken()
    query = f"{q('status', status_json())}&{q('message', incoming_json('hi'))}".encode()
    response = await call_raw(app, "GET", CB, query=query)
    assert response.status == 503


async def test_other_methods_are_405(client: httpx.AsyncClient, publisher: FakePublisher) -> None:
    response = await client.put(CB, content=b"")
    assert response.status_code == 405
    assert publisher.sent == []


async def test_health_ready_and_metrics(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200
    publisher.up = False
    assert (await client.get("/readyz")).status_code == 503
    assert (await client.get("/healthz")).status_code == 200
    await client.get(f"{CB}?{q('status', status_json())}")
    await client.get(f"{CB}?status=broken")
    text = (await client.get("/metrics")).text
    assert 'ardary_ingress_requests_total{code="200",kind="status"} 1.0' in text
    assert 'ardary_ingress_requests_total{code="400",kind="invalid"} 1.0' in text
    assert 'ardary_ingress_dead_letters_total{reason="invalid_json"} 1.0' in text
    assert "ardary_ingress_publish_seconds_count 1.0" in text
    assert "ardary_ingress_in_flight 0.0" in text


async def test_parser_crash_is_dead_lettered_not_500(
    settings, publisher: FakePublisher, codec: AvroCodec
) -> None:
    def crashing(params, *, received_at, tz):
        raise KeyError("bug")

    crash_app = IngressApp(
        codec=codec,
        prefix=PREFIX,
        tz=settings.timezone,
        token=TOKEN,
        publisher=publisher,
        parser=crashing,
    )
    response = await call_raw(crash_app, "GET", CB, query=b"status=%7B%7D")
    assert response.status == 400
    assert response.json["error"] == "parser_error"
    assert publisher.topics() == [DEAD]
