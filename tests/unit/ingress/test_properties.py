"""Property: while the broker works, no query string or form body makes the ingress answer 5xx."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.ingress.app import IngressApp, create_app
from pipeline.serde import AvroCodec, SchemaStore
from pipeline.settings import load_settings

from .conftest import PREFIX, TOKEN, FakePublisher, call_raw

PARAMS = ["status", "message", "click", "clics", "call", "calls", "qualification", "x", ""]
CODEC = AvroCodec(SchemaStore.load())
SETTINGS = load_settings(pipeline_callback_token=TOKEN, pipeline_topic_prefix=PREFIX)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
known_keys = st.sampled_from(
    [
        "phone_number", "phonenumber", "from", "status", "id_sms_api", "user", "date_status",
        "date", "title", "body", "message", "link", "call_time", "call_date", "duration",
        "qualification", "device_identification",
    ]
)  # fmt: skip
callback_objects = st.dictionaries(known_keys, json_values, max_size=8)
param_values = (
    callback_objects.map(lambda o: quote(json.dumps(o), safe=""))
    | json_values.map(lambda v: quote(json.dumps(v), safe=""))
    | st.text(max_size=40).map(lambda t: quote(t, safe=""))
    | st.text(max_size=40)
)
structured_queries = st.lists(st.tuples(st.sampled_from(PARAMS), param_values), max_size=4).map(
    lambda pairs: "&".join(f"{k}={v}" for k, v in pairs).encode("utf-8", "surrogatepass")
)
queries = structured_queries | st.binary(max_size=200)


def fresh_app() -> tuple[IngressApp, FakePublisher]:
    publisher = FakePublisher()
    return create_app(SETTINGS, publisher=publisher, codec=CODEC), publisher


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query=queries)
def test_no_query_string_makes_a_5xx(query: bytes) -> None:
    app, publisher = fresh_app()
    response = asyncio.run(call_raw(app, "GET", f"/callbacks/{TOKEN}", query=query))
    assert response.status in (200, 400, 413), (response.status, response.body)
    if response.status == 200:
        assert len(publisher.sent) == len(response.json["accepted"]) >= 1
    if response.status == 400:
        assert publisher.topics() == [f"{PREFIX}callbacks.dead-letter"]
        assert response.json["error"] != "parser_error", "the parser crashed on this input"


@settings(max_examples=100, deadline=None)
@given(body=queries)
def test_no_form_body_makes_a_5xx(body: bytes) -> None:
    app, _ = fresh_app()
    headers = [
        (b"content-type", b"application/x-www-form-urlencoded"),
        (b"content-length", str(len(body)).encode()),
    ]
    response = asyncio.run(
        call_raw(app, "POST", f"/callbacks/{TOKEN}", body_chunks=[body], headers=headers)
    )
    assert response.status in (200, 400, 413)
