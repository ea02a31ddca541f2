"""The one room that knows the insides of faust-streaming, mode, aiokafka and kafka-python.

Nothing else in `pipeline/` touches a private name of those four libraries (ruff's TID251 and
`tests/unit/test_kafka_boundary.py` refuse it), and importing this package checks that the
installed versions are the ones these adaptations were verified against (`versions.py`:
faust-streaming 0.15.3, mode-streaming 0.7.1, aiokafka 0.14.0, kafka-python 3.0.12; exit 2
otherwise, `ARDARY_ALLOW_UNVERIFIED_CLIENTS=1` to run anyway). Each adaptation, what upstream
behaviour it replaces, and the test that proves it is in use:

- `recovery.SeekFirstRecovery` (faust `Recovery.on_recovery_completed`): faust resumed the
  stream partitions, then awaited the seek to the committed offsets, and events fetched
  meanwhile were dropped and their offsets committed as a gap — faust-streaming #596 (open).
  Seek first, then resume with no await between. Tests: tests/agents/test_recovery_order.py
  (fails against faust's own method), tests/integration/test_outbound_crash.py.
- `transport.PipelineConsumer._getmany` (faust's aiokafka `Consumer`): faust hands the consumer
  thread its live set of active partitions, which aiokafka reads again while the fetch waits
  and takes, empty for a moment at the end of a recovery, to mean "every partition"; faust then
  dropped what came back (the same class of bug as robinhood/faust #69, fixed there with a lock
  that faust-streaming no longer has). A frozen copy is passed. Tests:
  tests/agents/test_transport.py, tests/integration/test_outbound_crash.py.
- `transport.PipelineConsumer.wait_first` (mode `Service.wait_first`, reading `_stopped` and
  `_crashed`): four tasks per delivered message (faust-streaming #229 is a deadlock in the same
  call); the hand-over runs in the drain loop until it must wait. Test:
  tests/agents/test_transport.py.
- `transport.PipelineProducer` (faust's aiokafka `Producer._settings_extra`, `on_start`): faust
  makes its producer idempotent only for `exactly_once`; a request the broker wrote but never
  answered (its leader killed) was resent and written twice. acks=all and idempotence, the
  start bounded to 30 s. No upstream issue (faust documents idempotence with transactions only).
  Tests: tests/integration/test_worker_producer.py, tests/agents/test_transport.py.
- `assignor.PipelinePartitionAssignor` (faust `PartitionAssignor.assign`, aiokafka
  `consumer._client.force_metadata_update`): a group assigned while a subscribed topic (a
  changelog faust had just created) was not in the leader's metadata ran without it until
  aiokafka's next refresh, 5 minutes later; faust logs "Ignoring missing topic" and goes on. No
  upstream issue found. The leader refreshes until the topic is listed, and aiokafka rejoins.
  Tests: tests/integration/test_late_topic_assignment.py (fails without),
  tests/agents/test_assignor.py.
- `produce.track_topic` (aiokafka `client._topics`): aiokafka requests metadata for the topics
  a producer tracks only, once it tracks any, and replaces its view with the answer; a topic it
  knew from the first, full answer but never tracked dropped out when another was added, and a
  batch queued for it was never sent. No upstream issue found. Every topic is tracked before
  its first batch (`PartitionBatches.send`, `transport.PipelineProducer.send`,
  `publisher.KafkaPublisher`). Tests: tests/integration/test_partition_batches.py (fails
  without), tests/unit/ingress/test_publisher.py.
- `codec.AvroFaustCodec` (faust `Codec._dumps/_loads`) and `codec.AvroSchema.compile` (faust
  `Schema`): Avro values decoded in one call instead of through faust's serializer registry.
  Test: tests/agents/test_avro_schema.py.
- `batches.event_batches` (faust `Stream.take_events`): reads the channel's queue and keeps the
  stream's bookkeeping (`consumer.unacked`, `topics.acking_topics`, sensors) itself; no
  upstream issue. Tests: tests/agents/test_event_batches.py, tests/agents/test_outbound_agent.py.
- `produce.app_producer` / `PartitionBatches` (faust `Producer._ensure_producer`, aiokafka
  `create_batch`/`send_batch`): one record batch per partition instead of one `send()` per
  record. Tests: tests/integration/test_partition_batches.py and every agent's integration test.
- `tables` (`faust.streams._current_event`, `Table.data`): a key's partition follows the event
  it came from, and changelog records go into the batch's `PartitionBatches` instead of
  faust's one-at-a-time changelog buffer. Tests: tests/agents/test_sweep.py,
  tests/agents/test_correlate_handler.py.
- `tables.ChangelogOffsets` (faust `Table._on_changelog_sent` → `Store.set_persisted_offset`,
  RocksDB's `_dbs`): faust moves a store's persisted changelog offset only for the records it
  sends itself, so with the changelog in `PartitionBatches` a restarted worker re-read its
  whole changelog. `PartitionBatches.on_ack` tells the store the offset of each acknowledged
  changelog batch, so recovery on the same data dir reads only the tail written since; a
  partition revoked before the ack is left closed. Only for the correlate agent's table
  (`table_write(..., tail_recovery=True)`), which re-emits a replayed event's state: after a
  kill the store can hold writes never acknowledged, which a full replay used to reset. No
  upstream issue (faust's own path does the same). Tests: tests/agents/test_changelog_offsets.py
  (fails without `on_ack`); `bench correlate`'s recovery run (`RATIO recovery_seconds_1m=`).
- `worker.PipelineWorker._setup_logging` (faust `Worker`): faust leaves every logger at DEBUG
  and filters at the handler. Test: tests/agents/test_kafka_adaptations.py.
- `lag.committed_offsets` (faust `Consumer._committed_offset`): the lag gauges without a broker
  round trip. Test: tests/agents/test_kafka_adaptations.py.
- `readers.topic_partitions` (aiokafka `consumer._client.force_metadata_update`): a group-less
  consumer's metadata refresh, which aiokafka 0.14 has no public call for. Test:
  tests/integration/test_readers.py.
- `groupjoin.resume_dropped_join` (kafka-python `KafkaConsumer._coordinator._join_task`): a
  group join that outlived its `poll()` timeout was never applied; no upstream issue found
  (kafka-python #1695 reworked the same rejoin logic). `verify_group_join_internals` fails the
  sink at start if the attributes moved. Tests: tests/unit/test_groupjoin.py,
  tests/integration/test_sink_rebalance.py.
- `publisher.KafkaPublisher` (aiokafka `create_batch`/`send_batch`, `client.fetch_all_metadata`):
  the ingress's batching producer and its readiness probe. Tests: tests/unit/ingress/
  test_publisher.py, tests/integration/test_ingress.py.
- `preflight.check_connection` (aiokafka `conn.create_conn`): one connection made step by step,
  because every client hides a wrong password or CA behind "unable to bootstrap". Tests:
  tests/integration/test_secured_cluster.py.

The rest is public API in one place: `config` (every client's settings, SASL/TLS), `errors`
(`kafka_errors`, the one exception mapper), `admin`, `send_requests`.
"""

from pipeline.kafka.versions import check_versions

check_versions()
