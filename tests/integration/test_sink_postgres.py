"""PostgreSQL sink on a real server: analytics views, PII hashing, schema evolution."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.serde import SchemaStore, default_schema_dir
from pipeline.sinks.pii import PiiPolicy
from pipeline.sinks.postgres_sink import PostgresSink
from tests import postgres_fixture
from tests.unit.sinks.helpers import lifecycle, query
from tests.unit.sinks.test_pii import BODY, KEY, PHONE, SENDER, _records, expected_hash
from tests.unit.sinks.test_views import check_views

# the PostgreSQL fixtures, until the shared conftest provides them
pg_database = postgres_fixture.pg_database
postgres_dsn = postgres_fixture.postgres_dsn

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def test_views_on_postgres(pg_database: str) -> None:
    sink = PostgresSink(pg_database, "g")
    sink.setup()
    try:
        check_views(sink)
    finally:
        sink.close()


def test_pii_hash_on_postgres(pg_database: str) -> None:
    sink = PostgresSink(pg_database, "g", pii=PiiPolicy("hash", KEY))
    sink.setup()
    try:
        for offset, record in enumerate(_records()):
            sink.add("t", 0, offset, record)
        sink.flush()
        assert query(sink, "SELECT from_number, body, raw FROM callbacks_incoming_sms") == [
            (expected_hash(SENDER), None, None)
        ]
        dump = repr([query(sink, f"SELECT * FROM {t.name}") for t in sink.tables])
        for secret in (PHONE, SENDER, BODY, PHONE[1:]):
            assert secret not in dump
    finally:
        sink.close()


def test_schema_evolution_on_postgres(pg_database: str, tmp_path: Path) -> None:
    old = PostgresSink(pg_database, "g")
    old.setup()
    old.add("t", 0, 0, lifecycle(1))
    old.flush()
    old.close()
    schemas = tmp_path / "schemas"
    shutil.copytree(default_schema_dir(), schemas)
    avsc = schemas / "SmsLifecycle.avsc"
    doc = json.loads(avsc.read_text())
    doc["fields"].append({"name": "campaign_id", "type": ["null", "string"], "default": None})
    avsc.write_text(json.dumps(doc))
    new = PostgresSink(pg_database, "g", store=SchemaStore.load(schemas))
    new.setup()
    try:
        new.add("t", 0, 1, lifecycle(2))
        new.flush()
        assert query(
            new,
            "SELECT is_nullable FROM information_schema.columns "
            "WHERE table_name = 'sms_lifecycle' AND column_name = 'campaign_id'",
        ) == [("YES",)]
        assert query(new, "SELECT id_sms_api, campaign_id FROM sms_lifecycle ORDER BY 1") == [
            ("m1", None),
            ("m2", None),
        ]
    finally:
        new.close()
