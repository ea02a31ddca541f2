"""The Faust codec for our Avro records, so agents read and write `pipeline.records` values."""

from __future__ import annotations

from typing import Any

import faust
from faust.exceptions import ValueDecodeError
from faust.serializers.codecs import Codec as FaustCodec

from pipeline import records
from pipeline.serde import Codec

__all__ = ["AvroFaustCodec", "AvroSchema"]


class AvroFaustCodec(FaustCodec):  # type: ignore[misc]
    """Wraps a pipeline codec; a DecodeError becomes faust ValueDecodeError (logged, skipped)."""

    def __init__(self, codec: Codec, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.codec = codec

    def _dumps(self, obj: Any) -> bytes:
        if isinstance(obj, bytes):
            return obj  # already encoded (e.g. forwarded as is)
        if not isinstance(obj, records.RECORD_TYPES):
            raise TypeError(f"not a pipeline record: {type(obj).__name__}")
        return self.codec.encode(obj)

    def _loads(self, s: bytes) -> Any:
        return self.codec.decode(s)


class AvroSchema(faust.Schema):  # type: ignore[misc,type-arg]
    """faust's topic schema, decoding our Avro values with the pipeline codec directly.

    faust's own decode goes through its serializer registry (codec lookup, error wrapping, model
    reconstruction) for the key and the value of every message: ~9 % of the correlate worker's
    time, as much as the Avro decode itself (py-spy). For raw keys and `AvroFaustCodec` values
    this decodes in one call, with faust's outcome: the same event, and a `ValueDecodeError`
    for a value that does not decode. Any other schema is faust's. Installed as the app's
    `Schema` setting, so every channel the app makes uses it.
    """

    def compile(self, app: Any, *, default_propagate: bool = False, **handlers: Any) -> Any:
        codec = self.value_serializer
        if self.key_serializer != "raw" or not isinstance(codec, AvroFaustCodec):
            return super().compile(app, default_propagate=default_propagate, **handlers)
        on_value_decode_error = handlers.get("on_value_decode_error")
        decode_value = codec.codec.decode
        create_event = app.create_event

        async def decode(message: Any, *, propagate: bool = default_propagate) -> Any:
            value = message.value
            try:
                decoded = None if value is None else decode_value(value)
            except MemoryError:
                raise
            except Exception as exc:
                error = ValueDecodeError(str(exc))
                if propagate:
                    raise error from exc
                if on_value_decode_error is not None:
                    await on_value_decode_error(error, message)
                return None
            return create_event(message.key, decoded, message.headers, message)

        return decode
