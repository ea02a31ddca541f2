"""The Avro codec: every record round-trips; evolution; garbage raises DecodeError only."""

from __future__ import annotations

import copy
import json
import struct
from dataclasses import fields, replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import records
from pipeline.errors import DecodeError
from pipeline.serde import (
    SINGLE_OBJECT_MAGIC,
    AvroCodec,
    ConfluentCodec,
    RecordSchema,
    SchemaStore,
    default_schema_dir,
    record_to_dict,
)

T0 = datetime(2026, 3, 29, 1, 30, 15, 123000, tzinfo=UTC)


def samples() -> list[records.Record]:
    """One fully populated instance of every record (nullable fields set, collections filled)."""
    return [
        records.SendRequest(
            "id1",
            "u@x.fr",
            "+33612345678",
            "Hé 😀 [Link]",
            T0,
            url="https://e.x/",
            date_to_send=T0,
            priority=2,
            routing="MOBILE",
            sender_name="Shop",
            metadata={"campaign": "spring"},
            marketing=True,
        ),
        records.SendResult(
            "id1",
            "u@x.fr",
            "+33612345678",
            "REJECTED",
            T0,
            error_codes=("#004",),
            sms_per_message=2,
            sent_time=T0,
            attempts=3,
            scheduled_for=T0,
        ),
        records.ContactSyncRequest("+33612345678", "u@x.fr", T0, "Ann", "Lee", "1 rue", "a@b.c"),
        records.ContactSyncResult("+33612345678", "u@x.fr", "FAILED", T0, ("#004",), 1),
        records.StatusCallback(
            "ev1",
            "+33612345678",
            "received",
            T0,
            '{"status":"received"}',
            id_sms_api="id1",
            login="u@x.fr",
            date_status=T0,
            flags=("X",),
            dialect="v1",
        ),
        records.ClickCallback(
            "ev2", "+33612345678", T0, "{}", id_sms_api="id1", link="https://e.x/", date=T0
        ),
        records.IncomingSms(
            "ev3", "+33612345678", "STOP", T0, "{}", device_identification="d", date=T0
        ),
        records.CallEvent(
            "ev4", "MISSED", "+33612345678", T0, "{}", call_time=T0, duration_seconds=54671
        ),
        records.CallQualification(
            "ev5", "INTERFACE", "+33612345678", "hot lead", T0, "{}", date=T0
        ),
        records.DeadLetter(
            "ev6",
            "invalid_json",
            "status: not JSON",
            "GET",
            b"status=%7B\xff",
            T0,
            content_type="text/plain",
            body=b"\x00\x01",
        ),
        records.SmsLifecycle(
            "id1",
            "DELIVERED",
            T0,
            login="u@x.fr",
            phone_number="+33612345678",
            requested_at=T0,
            submitted_at=T0,
            sent_at=T0,
            delivered_at=T0,
            first_click_at=T0,
            click_count=4,
            sms_per_message=1,
            error_codes=("#009",),
            metadata={"campaign": "x"},
            overdue_since=T0,
        ),
        records.SmsMetricsWindow(
            T0,
            T0,
            "*",
            window="1h",
            requested=10,
            submitted=9,
            rejected=1,
            delivered=8,
            clicks=3,
            unique_clicks=2,
            incoming_sms=1,
            optouts=1,
            calls_missed=2,
            delivery_rate=8 / 9,
            click_through_rate=0.25,
            p50_delivery_ms=1200,
            p95_delivery_ms=4000,
            overdue=3,
        ),
        records.OptOut("+33612345678", True, "INCOMING_SMS", "ev3", T0, login=None, keyword="STOP"),
    ]


@pytest.fixture(scope="module")
def store() -> SchemaStore:
    return SchemaStore.load()


@pytest.fixture(scope="module")
def codec(store: SchemaStore) -> AvroCodec:
    return AvroCodec(store)


def test_every_record_type_has_a_sample_and_a_schema(store: SchemaStore) -> None:
    assert {type(r).__name__ for r in samples()} == {c.__name__ for c in records.RECORD_TYPES}
    assert store.names == sorted(c.__name__ for c in records.RECORD_TYPES)


@pytest.mark.parametrize("record", samples(), ids=lambda r: type(r).__name__)
def test_round_trip(codec: AvroCodec, record: records.Record) -> None:
    data = codec.encode(record)
    assert data[:2] == SINGLE_OBJECT_MAGIC
    assert codec.decode(data) == record


@pytest.mark.parametrize("cls", records.RECORD_TYPES, ids=lambda c: c.__name__)
def test_dataclass_fields_mirror_the_avsc(cls: type) -> None:
    schema = json.loads((default_schema_dir() / f"{cls.__name__}.avsc").read_text())
    assert schema["namespace"] == "ardary.pipeline.v1"
    assert {f.name for f in fields(cls)} == {f["name"] for f in schema["fields"]}
    for f in schema["fields"]:
        nullable = isinstance(f["type"], list) and "null" in f["type"]
        if nullable:
            assert f.get("default", "absent") is None, f"{cls.__name__}.{f['name']}"


def test_fingerprint_is_crc64_avro_of_canonical_form(store: SchemaStore) -> None:
    # Independent CRC-64-AVRO (Rabin) from the Avro specification.
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    rs = store.current("OptOut")
    fp = empty
    for b in rs.canonical.encode():
        fp = (fp >> 8) ^ table[(fp ^ b) & 0xFF]
    assert rs.fingerprint == struct.pack("<Q", fp)


def test_body_is_plain_avro_readable_by_fastavro(codec: AvroCodec, store: SchemaStore) -> None:
    """Any consumer with the .avsc decodes our records without our code."""
    import io

    record = samples()[0]
    data = codec.encode(record)
    schema = fastavro.parse_schema(
        json.loads((default_schema_dir() / "SendRequest.avsc").read_text())
    )
    decoded = fastavro.schemaless_reader(io.BytesIO(data[10:]), schema)
    assert decoded["id_sms_api"] == "id1"
    assert decoded["metadata"] == {"campaign": "spring"}


@pytest.mark.parametrize("record", samples(), ids=lambda r: type(r).__name__)
def test_body_is_byte_for_byte_what_fastavro_writes_from_the_avsc(
    codec: AvroCodec, store: SchemaStore, record: records.Record
) -> None:
    """Timestamps are written as epoch milliseconds by us, exactly as fastavro would."""
    import io

    rs = store.current(type(record).__name__)
    out = io.BytesIO()
    fastavro.schemaless_writer(out, rs.parsed, record_to_dict(record))
    assert codec.encode(record)[10:] == out.getvalue()


@pytest.mark.parametrize(
    "at",
    [
        datetime(2025, 3, 1, 12, 0, 0, 999_999, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC),
        datetime(2025, 3, 1, 12, 0, 0, 123_456, tzinfo=ZoneInfo("Europe/Paris")),
        datetime(2025, 3, 1, 12, 0, 0, 1_000),  # naive: fastavro's local-time rule
    ],
)
def test_sub_millisecond_and_zoned_times_encode_as_fastavro_does(
    codec: AvroCodec, store: SchemaStore, at: datetime
) -> None:
    import io

    record = records.OptOut("+33612345678", True, "INCOMING_SMS", "ev", at)
    out = io.BytesIO()
    fastavro.schemaless_writer(out, store.current("OptOut").parsed, record_to_dict(record))
    assert codec.encode(record)[10:] == out.getvalue()


def test_old_record_read_with_a_schema_that_has_one_more_defaulted_field() -> None:
    raw = json.loads((default_schema_dir() / "OptOut.avsc").read_text())
    old = copy.deepcopy(raw)
    old["fields"] = [f for f in old["fields"] if f["name"] != "keyword"]
    new = copy.deepcopy(raw)  # the current schema has `keyword` (nullable, default null)
    store = SchemaStore([new])
    old_rs = store.register_writer(old)
    codec = AvroCodec(store)
    record = records.OptOut("+33612345678", True, "INCOMING_SMS", "ev", T0, keyword="STOP")
    data = codec.encode_with(old_rs, record)
    decoded = codec.decode(data)
    assert isinstance(decoded, records.OptOut)
    assert decoded.keyword is None  # filled from the new schema's default
    assert decoded.phone_number == "+33612345678"


# Fields added after records were already on the topics (issue 17): each has a default, so a
# record written before it existed still reads, and a consumer that has not upgraded still reads
# the new records (it ignores the field).
ADDED_FIELDS = [
    ("SendRequest", "marketing", False),
    ("SendResult", "scheduled_for", None),
    ("SmsLifecycle", "overdue_since", None),
    ("SmsMetricsWindow", "overdue", 0),
]


def _without(name: str, field_name: str) -> dict[str, object]:
    raw = json.loads((default_schema_dir() / f"{name}.avsc").read_text())
    old = copy.deepcopy(raw)
    old["fields"] = [f for f in old["fields"] if f["name"] != field_name]
    assert len(old["fields"]) == len(raw["fields"]) - 1
    return old


@pytest.mark.parametrize(("name", "field_name", "default"), ADDED_FIELDS)
def test_records_written_before_a_field_was_added_read_with_its_default(
    name: str, field_name: str, default: object
) -> None:
    sample = next(r for r in samples() if type(r).__name__ == name)
    assert getattr(sample, field_name) != default  # the sample sets it, so the default shows
    store = SchemaStore.load()
    old_rs = store.register_writer(_without(name, field_name))
    codec = AvroCodec(store)
    decoded = codec.decode(codec.encode_with(old_rs, sample))
    assert decoded == replace(sample, **{field_name: default})


@pytest.mark.parametrize(("name", "field_name", "default"), ADDED_FIELDS)
def test_a_consumer_with_the_old_schema_reads_new_records(
    name: str, field_name: str, default: object
) -> None:
    sample = next(r for r in samples() if type(r).__name__ == name)
    old_store = SchemaStore(
        [
            _without(name, field_name) if p.stem == name else json.loads(p.read_text())
            for p in sorted(default_schema_dir().glob("*.avsc"))
        ]
    )
    old_store.register_writer(json.loads((default_schema_dir() / f"{name}.avsc").read_text()))
    writer = AvroCodec(SchemaStore.load())
    decoded = AvroCodec(old_store).decode(writer.encode(sample))
    assert decoded == replace(sample, **{field_name: default})


def test_new_field_without_default_is_not_backward_compatible_and_says_so() -> None:
    raw = json.loads((default_schema_dir() / "OptOut.avsc").read_text())
    old = copy.deepcopy(raw)
    old["fields"] = [f for f in old["fields"] if f["name"] != "source"]  # `source` has no default
    store = SchemaStore([raw])
    old_rs = store.register_writer(old)
    codec = AvroCodec(store)
    record = records.OptOut("+3361", True, "INCOMING_SMS", "ev", T0)
    with pytest.raises(DecodeError):
        codec.decode(codec.encode_with(old_rs, record))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc3",
        b"\xc3\x01",
        b"\xc3\x01" + b"\x00" * 8,  # unknown fingerprint
        b"hello world, not avro",
        b'{"status": "sent"}',
        b"\x00\x00\x00\x00\x01rest",  # Confluent framing given to the single-object codec
    ],
)
def test_foreign_payloads_raise_decode_error(codec: AvroCodec, data: bytes) -> None:
    with pytest.raises(DecodeError):
        codec.decode(data)


@pytest.mark.parametrize("record", samples(), ids=lambda r: type(r).__name__)
def test_truncated_payloads_raise_decode_error(codec: AvroCodec, record: records.Record) -> None:
    data = codec.encode(record)
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            codec.decode(data[:cut])


def test_trailing_garbage_is_rejected(codec: AvroCodec) -> None:
    with pytest.raises(DecodeError):
        codec.decode(codec.encode(samples()[0]) + b"\x00")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 12))
def test_corrupted_payloads_never_raise_anything_but_decode_error(tail: bytes, which: int) -> None:
    codec = AvroCodec(SchemaStore.load())
    record = samples()[which]
    data = codec.encode(record)
    corrupted = data[:10] + tail  # valid header, arbitrary body
    try:
        decoded = codec.decode(corrupted)
    except DecodeError:
        return  # the expected outcome for garbage; anything else propagates and fails
    assert isinstance(decoded, records.RECORD_TYPES)  # garbage that happens to be valid Avro


def test_encoding_a_record_with_a_wrong_field_type_is_a_decode_error(codec: AvroCodec) -> None:
    bad = records.OptOut("+33", True, "X", "ev", "not a datetime")  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        codec.encode(bad)


class FakeRegistry:
    """A Confluent-API registry in memory: subject+schema -> id, id -> schema."""

    def __init__(self) -> None:
        self.schemas: dict[int, dict[str, object]] = {}
        self.subjects: dict[str, int] = {}

    def register(self, subject: str, schema: dict[str, object]) -> int:
        if subject not in self.subjects:
            self.subjects[subject] = len(self.schemas) + 1
            self.schemas[self.subjects[subject]] = schema
        return self.subjects[subject]

    def get_by_id(self, schema_id: int) -> dict[str, object]:
        return self.schemas[schema_id]


def test_confluent_framing_round_trip_and_layout(store: SchemaStore) -> None:
    registry = FakeRegistry()
    codec = ConfluentCodec(store, registry)
    for record in samples():
        data = codec.encode(record)
        assert data[0] == 0
        (schema_id,) = struct.unpack(">I", data[1:5])
        assert registry.subjects[f"ardary.pipeline.v1.{type(record).__name__}"] == schema_id
        # a fresh codec (another process) resolves the id through the registry
        assert ConfluentCodec(store, registry).decode(data) == record


def test_confluent_unknown_id_and_garbage_raise_decode_error(store: SchemaStore) -> None:
    codec = ConfluentCodec(store, FakeRegistry())
    with pytest.raises(DecodeError):
        codec.decode(b"\x00\x00\x00\x00\x09body")
    with pytest.raises(DecodeError):
        codec.decode(b"\xc3\x01nope")


def test_record_schema_from_json_lists_array_fields() -> None:
    raw = json.loads((default_schema_dir() / "SmsLifecycle.avsc").read_text())
    assert RecordSchema.from_json(raw).array_fields == frozenset({"error_codes"})
