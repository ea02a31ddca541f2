"""The chaos verdict: each figure counts what it says, and a run whose books do not balance is
void. Each test starts from a clean run and breaks one thing."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import UTC, datetime, timedelta

from pipeline.devtools.chaos.reconcile import Evidence, SentCallback, reconcile
from pipeline.records import SendResult, SmsLifecycle

T = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SMS = "callbacks_incoming_sms"
STATUS = "callbacks_status"


def cb(raw: str, status: int | None = 200, outcome: str = "ok", table: str = SMS) -> SentCallback:
    return SentCallback("generator", table, raw, outcome, status)


def result(i: str, *codes: str) -> SendResult:
    outcome = "FAILED" if codes else "SUBMITTED"
    return SendResult(i, "l", "+33612345678", outcome, T, error_codes=codes)


def life(i: str, state: str = "DELIVERED", clicks: int = 0) -> SmsLifecycle:
    return SmsLifecycle(i, state, T, click_count=clicks)  # type: ignore[arg-type]


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def clean() -> Evidence:
    lifecycles = {"m1": life("m1"), "m2": life("m2", clicks=1)}
    return Evidence(
        callbacks=(cb("a"), cb("b"), cb('{"s":1}', table=STATUS), cb("a")),
        requests_acked=frozenset({"m1", "m2"}),
        requests_failed=frozenset(),
        requests_in_topic={"m1": 1, "m2": 1},
        results={"m1": (result("m1"),), "m2": (result("m2"),)},
        submissions={"m1": 1, "m2": 1},
        warehouse_raw={SMS: Counter({"a": 1, "b": 1}), STATUS: Counter({'{"s":1}': 1})},
        warehouse_key_dupes={SMS: 0, STATUS: 0},
        in_warehouse_by_join=3,
        lifecycle_latest=lifecycles,
        lifecycle_batch=dict(lifecycles),
        warehouse_lifecycles={
            "m1": ("DELIVERED", 0, ms(T)),
            "m2": ("DELIVERED", 1, ms(T)),
        },
    )


def test_a_clean_run_is_all_zeros_and_balanced() -> None:
    f = reconcile(clean())
    assert f.clean and not f.void
    assert (f.callbacks_sent, f.callbacks_in_warehouse, f.callbacks_missing) == (3, 3, 0)
    assert f.requests == 2 and f.delivered == 2


def test_a_callback_answered_200_and_absent_from_the_warehouse_is_lost() -> None:
    e = clean()
    e = dataclasses.replace(e, callbacks=(*e.callbacks, cb("c")), in_warehouse_by_join=3)
    f = reconcile(e)
    assert f.callbacks_lost == 1 and f.identity_holds and not f.clean
    assert f.samples["callbacks_lost"] == [f"{SMS}: c"]


def test_books_that_do_not_balance_void_the_run() -> None:
    f = reconcile(dataclasses.replace(clean(), in_warehouse_by_join=2))
    assert f.void and not f.identity_holds and not f.clean


def test_unanswered_and_refused_callbacks_promise_nothing_and_are_counted_apart() -> None:
    e = clean()
    e = dataclasses.replace(
        e,
        callbacks=(
            *e.callbacks,
            cb("late", None, "ReadTimeout"),
            cb("gone", None, "RemoteProtocolError"),
            cb("never", None, "ConnectError"),
        ),
        warehouse_raw={**e.warehouse_raw, SMS: Counter({"a": 1, "b": 1, "late": 1})},
    )
    f = reconcile(e)
    assert f.clean
    assert f.callbacks_unanswered == 2 and f.unanswered_in_warehouse == 1
    assert f.callbacks_refused == 1 and f.warehouse_unexplained == 0


def test_every_5xx_counts_even_when_a_retry_got_through() -> None:
    e = clean()
    f = reconcile(dataclasses.replace(e, callbacks=(*e.callbacks, cb("a", 503, "http 503"))))
    assert f.answers_5xx == 1 and f.callbacks_lost == 0 and not f.clean


def test_duplicates_by_text_and_by_key_are_both_counted() -> None:
    e = clean()
    f = reconcile(
        dataclasses.replace(
            e,
            warehouse_raw={**e.warehouse_raw, SMS: Counter({"a": 2, "b": 1})},
            warehouse_key_dupes={SMS: 0, STATUS: 0, "sms_lifecycle": 1},
        )
    )
    assert f.warehouse_duplicates == 2


def test_a_request_needs_exactly_one_result_and_ardary_one_submission() -> None:
    e = clean()
    f = reconcile(
        dataclasses.replace(
            e,
            results={"m1": (result("m1"), result("m1")), "zz": (result("zz"),)},
            submissions={"m1": 2, "m2": 1},
        )
    )
    # m1 twice, m2 none, zz without a request
    assert f.requests_without_one_result == 3
    assert f.samples["requests_without_one_result"] == ["m1 x2", "m2 x0", "zz x1"]
    assert f.duplicate_sends == 1 and f.samples["duplicate_sends"] == ["m1"]


def test_unknown_after_crash_is_listed_apart_with_whether_ardary_had_it() -> None:
    e = clean()
    f = reconcile(
        dataclasses.replace(
            e,
            results={"m1": (result("m1", "UNKNOWN_AFTER_CRASH"),), "m2": (result("m2"),)},
            submissions={"m1": 1},
        )
    )
    assert f.unknown_after_crash == 1 and f.unknown_after_crash_at_ardary == 1
    assert f.duplicate_sends == 0 and f.clean


def test_a_request_kafka_acknowledged_and_absent_from_the_topic_is_lost() -> None:
    e = clean()
    f = reconcile(dataclasses.replace(e, requests_acked=frozenset({"m1", "m2", "m3"})))
    assert f.requests_lost == 1 and not f.clean


def test_lifecycles_differing_from_the_batch_or_in_the_warehouse_are_mismatches() -> None:
    e = clean()
    later = dataclasses.replace(life("m2", clicks=1), updated_at=T + timedelta(seconds=1))
    f = reconcile(dataclasses.replace(e, lifecycle_batch={"m1": life("m1"), "m2": later}))
    assert f.lifecycle_mismatch == 1 and f.samples["lifecycle_mismatch"] == ["m2"]
    fields = f.samples["lifecycle_mismatch_fields"]  # what differs, to tell a cause from a log
    assert [line.split(":")[0] for line in fields] == ["m2 updated_at"]
    assert f"batch={T + timedelta(seconds=1)}" in fields[0] and f"stream={T}" in fields[0]
    f = reconcile(dataclasses.replace(e, warehouse_lifecycles={"m1": ("SENT", 0, ms(T))}))
    assert f.warehouse_lifecycle_mismatch == 2  # m1 differs, m2 is missing
