"""The Faust codec for our Avro records, so agents read and write `pipeline.records` values."""

from __future__ import annotations

from typing import Any

from faust.serializers.codecs import Codec as FaustCodec

from pipeline import records
from pipeline.serde import Codec

__all__ = ["AvroFaustCodec"]


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
