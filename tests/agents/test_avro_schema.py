"""AvroSchema: the pipeline topics decode their Avro values in one call, with faust's outcome."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import faust
import pytest
from faust.exceptions import ValueDecodeError
from faust.types.tuples import ConsumerMessage

from pipeline.agents.app import create_app
from pipeline.kafka.codec import AvroSchema
from pipeline.records import StatusCallback
from pipeline.settings import Settings

STATUS = StatusCallback(
    "e1", "+33612345678", "received", datetime(2026, 3, 1, tzinfo=UTC), "{}", "m1", "alice"
)


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")  # nothing connects here
    return create_app(Settings(), agents=[])


def _message(value: bytes | None, key: bytes | None = b"m1") -> ConsumerMessage:
    return ConsumerMessage("t", 0, 7, 0.0, 0, [], key, value, None)


async def test_a_pipeline_topic_decodes_to_the_same_event_as_fausts_own_schema(
    built: tuple[Any, Any],
) -> None:
    app, streams = built
    topic = streams["callbacks.status"]
    assert isinstance(topic.schema, AvroSchema)
    message = _message(streams.codec.codec.encode(STATUS))

    ours = await topic.schema.compile(app)(message)
    faust_own = await faust.Schema(
        key_type=bytes, key_serializer="raw", value_serializer=streams.codec
    ).compile(app)(message)

    assert (ours.key, ours.value, ours.message) == (faust_own.key, faust_own.value, message)
    assert ours.value == STATUS


async def test_a_tombstone_decodes_to_none(built: tuple[Any, Any]) -> None:
    app, streams = built
    event = await streams["sms.lifecycle"].schema.compile(app)(_message(None))
    assert event.key == b"m1" and event.value is None


async def test_a_value_that_does_not_decode_is_a_value_decode_error(
    built: tuple[Any, Any],
) -> None:
    app, streams = built
    errors: list[Any] = []

    async def on_error(exc: Exception, message: Any) -> None:
        errors.append(exc)

    decode = streams["callbacks.status"].schema.compile(app, on_value_decode_error=on_error)
    with pytest.raises(ValueDecodeError):
        await decode(_message(b"not avro"), propagate=True)
    assert await decode(_message(b"not avro")) is None
    assert len(errors) == 1 and isinstance(errors[0], ValueDecodeError)


async def test_other_serializers_keep_fausts_decode(built: tuple[Any, Any]) -> None:
    app, _streams = built
    topic = app.topic("t.json", key_type=bytes, key_serializer="raw", value_serializer="json")
    event = await topic.schema.compile(app)(_message(b'{"a": 1}'))
    assert event.value == {"a": 1}
