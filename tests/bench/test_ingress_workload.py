"""The ingress benchmark's workload and wrk report reader (the bench itself needs a broker)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from pipeline.ardary.callbacks import kind_of, parse_callbacks
from pipeline.devtools.bench.workload import TOKEN, generate_paths
from pipeline.devtools.bench.wrk import parse_wrk
from pipeline.ingress.decode import MAX_REQUEST_BYTES, decode_query

WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:8080
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     9.71ms    3.02ms  48.50ms   80.00%
    Req/Sec     3.31k   210.00     3.80k    70.00%
  Latency Distribution
     50%    9.20ms
     75%   11.00ms
     90%   13.10ms
     99%    1.02s
  65912 requests in 10.01s, 12.00MB read
  Non-2xx or 3xx responses: 12
Requests/sec:   6584.91
Transfer/sec:      1.20MB
"""


def test_workload_is_a_mix_of_every_kind_in_both_dialects() -> None:
    paths = generate_paths(400)
    assert len(set(paths)) == 400
    kinds: Counter[str] = Counter()
    dialects: Counter[str] = Counter()
    for path in paths:
        route, _, query = path.partition("?")
        assert route == f"/callbacks/{TOKEN}"
        assert len(query) < MAX_REQUEST_BYTES
        records = parse_callbacks(
            decode_query(query.encode()), received_at=datetime.now(UTC), tz=ZoneInfo("UTC")
        )
        assert len(records) == 1
        kinds[kind_of(records[0])] += 1
        dialects[records[0].dialect] += 1
    assert set(kinds) == {"status", "click", "incoming_sms", "call", "qualification"}
    assert kinds.most_common(1)[0][0] == "status"
    assert set(dialects) == {"v1", "v2"}


def test_workload_is_deterministic() -> None:
    assert generate_paths(50) == generate_paths(50)


def test_parse_wrk_reads_rate_percentiles_and_errors() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert result.requests_per_s == 6584.91
    assert result.requests == 65912
    assert result.p50_ms == 9.2
    assert result.p99_ms == 1020.0
    assert result.non_2xx == 12
    assert result.socket_errors == 0
