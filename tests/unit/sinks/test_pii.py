"""WAREHOUSE_PII=hash: no phone number or message body reaches the warehouse."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline import records
from pipeline.sinks.duckdb_sink import DuckDBSink
from pipeline.sinks.parquet_sink import ParquetSink
from pipeline.sinks.pii import PiiPolicy
from tests.unit.sinks.helpers import T0, lifecycle, query

KEY = b"test-pii-key"
PHONE = "+33687654321"
SENDER = "+33711223344"
BODY = "STOP please unsubscribe me"


def _records() -> list[records.Record]:
    raw = json.dumps({"phone": PHONE, "text": BODY})
    return [
        lifecycle(1, phone_number=PHONE),
        records.StatusCallback("e1", PHONE, "received", T0, raw=raw),
        records.IncomingSms("e2", SENDER, BODY, T0, raw=raw),
        records.OptOut(PHONE, True, "STOP", "e2", T0),
        records.DeadLetter("d1", "bad", "x", "GET", raw.encode(), T0, body=raw.encode()),
    ]


def expected_hash(phone: str) -> str:
    return hmac.new(KEY, phone.encode(), hashlib.sha256).hexdigest()[:32]


def test_hash_mode_needs_a_key_and_hides_it_from_repr() -> None:
    with pytest.raises(ValueError):
        PiiPolicy("hash")
    assert "test-pii-key" not in repr(PiiPolicy("hash", KEY))


def test_duckdb_file_holds_no_phone_or_body(tmp_path: Path) -> None:
    path = tmp_path / "pii.duckdb"
    sink = DuckDBSink(path, "g", pii=PiiPolicy("hash", KEY))
    sink.setup()
    for offset, record in enumerate(_records()):
        sink.add("t", 0, offset, record)
    sink.flush()
    assert query(sink, "SELECT phone_number FROM sms_lifecycle") == [(expected_hash(PHONE),)]
    assert query(sink, "SELECT phone_number FROM sms_optouts") == [(expected_hash(PHONE),)]
    assert query(sink, "SELECT from_number, body, raw FROM callbacks_incoming_sms") == [
        (expected_hash(SENDER), None, None)
    ]
    assert query(sink, "SELECT raw, body FROM dead_letters") == [(None, None)]
    sink.conn.execute("CHECKPOINT")
    dump = "\n".join(
        repr(query(sink, f"SELECT * FROM {t.name}")) for t in sink.tables
    )  # every table, every column
    sink.close()
    data = path.read_bytes()
    for secret in (PHONE, SENDER, BODY, PHONE[1:], "STOP please"):
        assert secret not in dump
        assert secret.encode() not in data


def test_raw_mode_keeps_phone_numbers(tmp_path: Path) -> None:
    sink = DuckDBSink(tmp_path / "raw.duckdb", "g")
    sink.setup()
    sink.add("t", 0, 0, _records()[2])
    sink.flush()
    assert query(sink, "SELECT from_number, body FROM callbacks_incoming_sms") == [(SENDER, BODY)]
    sink.close()


def test_parquet_files_hold_no_phone_or_body(tmp_path: Path) -> None:
    sink = ParquetSink(tmp_path / "pq", "g", pii=PiiPolicy("hash", KEY))
    sink.setup()
    for offset, record in enumerate(_records()):
        sink.add("t", 0, offset, record)
    sink.flush()
    files = list((tmp_path / "pq").rglob("*.parquet"))
    assert len(files) == 5
    for file in files:
        assert PHONE.encode() not in file.read_bytes()
        assert BODY.encode() not in file.read_bytes()
        text = repr(pq.read_table(file).to_pylist())
        assert PHONE not in text and SENDER not in text and BODY not in text
