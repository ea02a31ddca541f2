"""The one room that knows the insides of faust-streaming, mode, aiokafka and kafka-python.

Nothing else in `pipeline/` touches a private name of those four libraries (ruff's TID251 and
`tests/unit/test_kafka_boundary.py` refuse it), and importing this package checks that the
installed versions are the ones these adaptations were verified against (`versions.py`:
faust-streaming 0.15.3, mode-streaming 0.7.1, aiokafka 0.14.0, kafka-python 3.0.12; exit 2
otherwise, `ARDARY_ALLOW_UNVERIFIED_CLIENTS=1` to run anyway). Each adaptation — what it
replaces, why, its upstream issue and the test that proves it — is listed once, in
docs/kafka-adaptations.md.

The rest is public API in one place: `config` (every client's settings, SASL/TLS), `errors`
(`kafka_errors`, the one exception mapper, and `is_retriable`, the one rule for "not yet"),
`admin`, `acked`, `send_requests`.
"""

from pipeline.kafka.versions import check_versions

check_versions()
