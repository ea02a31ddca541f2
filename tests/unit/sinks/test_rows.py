"""Records to columns: key de-duplication and records of two versions of one class."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

from pipeline import records
from pipeline.serde import SchemaStore
from pipeline.sinks.pii import PiiPolicy
from pipeline.sinks.rows import dedupe, to_columns
from pipeline.sinks.schema_ddl import TableSpec, table_specs
from tests.unit.sinks.helpers import T0, lifecycle


def _spec(record: str) -> TableSpec:
    return next(t for t in table_specs(SchemaStore.load()) if t.record == record)


def _status(event_id: str, status: str) -> records.StatusCallback:
    return records.StatusCallback(
        event_id=event_id,
        id_sms_api="m1",
        phone_number="+33612345678",
        status=status,
        received_at=T0,
        raw="{}",
    )


def test_upsert_keeps_the_last_record_of_each_key_in_first_seen_order() -> None:
    batch = [lifecycle(1, state="SUBMITTED"), lifecycle(2), lifecycle(1, state="DELIVERED")]
    out = dedupe(_spec("SmsLifecycle"), batch)
    assert [(r.id_sms_api, r.state) for r in out] == [("m1", "DELIVERED"), ("m2", "SUBMITTED")]


def test_ignore_keeps_the_first_record_of_each_key_in_order() -> None:
    batch = [_status("e1", "sent"), _status("e2", "sent"), _status("e1", "received")]
    out = dedupe(_spec("StatusCallback"), batch)
    assert [(r.event_id, r.status) for r in out] == [("e1", "sent"), ("e2", "sent")]


def test_columns_turn_arrays_into_lists_and_maps_into_sorted_json() -> None:
    rec = lifecycle(1, error_codes=("#003",), metadata={"team": "a", "campaign": "b"})
    columns = to_columns(_spec("SmsLifecycle"), [rec, lifecycle(2)], PiiPolicy())
    assert columns["id_sms_api"] == ["m1", "m2"]
    assert columns["error_codes"] == [["#003"], []]
    assert [json.loads(m) if m else m for m in columns["metadata"]] == [
        {"campaign": "b", "team": "a"},
        {},
    ]
    assert list(columns) == [c.name for c in _spec("SmsLifecycle").columns]


def test_records_of_an_older_class_fill_the_new_column_with_null() -> None:
    spec = _spec("SmsLifecycle")
    newer = dataclasses.replace(
        spec, columns=(*spec.columns, dataclasses.replace(spec.columns[0], name="campaign_id"))
    )
    old = lifecycle(1, updated_at=T0 + timedelta(hours=1))

    @dataclasses.dataclass(frozen=True)
    class SmsLifecycle:  # a later version of the record, carrying the new field
        id_sms_api: str
        campaign_id: str

    mixed = to_columns(newer, [old, SmsLifecycle("m9", "c7")], PiiPolicy())  # type: ignore[list-item]
    assert mixed["id_sms_api"] == ["m1", "m9"]
    assert mixed["campaign_id"] == [None, "c7"]
    assert mixed["state"] == ["SUBMITTED", None]
    alone = to_columns(newer, [old], PiiPolicy())
    assert alone["campaign_id"] == [None]
    assert alone["updated_at"] == [T0 + timedelta(hours=1)]
