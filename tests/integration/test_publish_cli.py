"""`ardary-pipeline publish FILE.jsonl` against the real broker: all-or-nothing, --skip-invalid."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline import records
from pipeline.kafka.send_requests import SendRequestPublisher
from pipeline.serde import AvroCodec, SchemaStore
from tests.kafka_read import read_topic

pytestmark = pytest.mark.integration

GOOD = [
    {"id_sms_api": "good-1", "phone_number": "+33612345678", "message": "one"},
    {"phonenumber": "+33 6 12 34 56 79", "message": "two", "priorite": 2, "login": "other"},
    {"id_sms_api": "good-3", "phone_number": "+14155550123", "message": "three",
     "metadata": {"campaign": "c"}},
]  # fmt: skip
BAD_LINES = [
    '{"phone_number": "+33612345678"}',
    "not json",
    '{"phone_number": "12", "message": "x"}',
]


def _read_all(bootstrap: str, topic: str, expected: int) -> list[tuple[bytes, records.Record]]:
    codec = AvroCodec(SchemaStore.load())
    found = read_topic(bootstrap, topic)
    assert len(found) == expected
    return [(m.key, codec.decode(m.value)) for m in found]


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "publish", *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def env(kafka_bootstrap: str, unique_prefix: str, tmp_path: Path) -> dict[str, str]:
    out = dict(os.environ)
    out.update(
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        PIPELINE_TOPIC_PREFIX=unique_prefix,
        ARDARY_LOGIN="me@example.com",
    )
    out.pop("ARDARY_TIMEZONE", None)
    return out


def test_bad_lines_stop_everything_then_skip_invalid_publishes_the_rest(
    kafka_bootstrap: str, make_topic: Any, env: dict[str, str], tmp_path: Path
) -> None:
    topic = make_topic("sms.send-requests", partitions=2)
    lines = [json.dumps(GOOD[0]), BAD_LINES[0], json.dumps(GOOD[1]), "", BAD_LINES[1],
             json.dumps(GOOD[2]), BAD_LINES[2]]  # fmt: skip
    path = tmp_path / "requests.jsonl"
    path.write_text("\n".join(lines) + "\n")
    bad_numbers = [i + 1 for i, line in enumerate(lines) if line in BAD_LINES]

    refused = _run([str(path)], env)
    assert refused.returncode == 2, refused.stderr
    for n in bad_numbers:
        assert f"line {n}:" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert _read_all(kafka_bootstrap, topic, expected=0) == []

    done = _run([str(path), "--skip-invalid"], env)
    assert done.returncode == 0, done.stderr
    got = _read_all(kafka_bootstrap, topic, expected=len(GOOD))
    by_message = {r.message: (key, r) for key, r in got if isinstance(r, records.SendRequest)}
    assert set(by_message) == {"one", "two", "three"}
    key, one = by_message["one"]
    assert key == b"good-1" and one.login == "me@example.com"
    _, two = by_message["two"]
    assert (two.phone_number, two.priority, two.login) == ("+33612345679", 2, "other")
    assert len(two.id_sms_api) == 32
    assert dict(by_message["three"][1].metadata) == {"campaign": "c"}


def test_missing_login_exits_2_naming_the_variable(env: dict[str, str], tmp_path: Path) -> None:
    done = _run(["--to", "+33612345678", "--message", "hi"], {**env, "ARDARY_LOGIN": ""})
    assert done.returncode == 2
    assert "ARDARY_LOGIN" in done.stderr


def test_publisher_returns_ids_and_single_message_flags(
    kafka_bootstrap: str, make_topic: Any, unique_prefix: str, env: dict[str, str]
) -> None:
    topic = make_topic("sms.send-requests", partitions=1)
    with SendRequestPublisher(kafka_bootstrap, prefix=unique_prefix, login="api") as pub:
        ids = pub.publish_many(
            [{"phone_number": "+33612345678", "message": f"m{i}"} for i in range(5)]
        )
    assert len(set(ids)) == 5
    done = _run(["--to", "+33612345678", "--message", "solo"], env)
    assert done.returncode == 0, done.stderr
    promo = _run(["--to", "+33612345678", "--message", "promo", "--marketing"], env)
    assert promo.returncode == 0, promo.stderr
    got = _read_all(kafka_bootstrap, topic, expected=7)
    assert [r.id_sms_api for _, r in got[:5]] == ids
    assert got[5][1].id_sms_api == done.stdout.strip()
    assert not got[5][1].marketing
    assert (got[6][1].id_sms_api, got[6][1].marketing) == (promo.stdout.strip(), True)
