"""The dashboard's data: every worker's windows as `metrics.sms` holds them, without a broker.

`MetricsView` is fed the records one reader of the topic would see (two workers' windows on
three partitions, re-published windows, a feed restart, tombstones, foreign records); the
`/metrics/sms` answer is built from it; and the page's vendored charting library is served.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.agents import dashboard
from pipeline.agents.metrics import board as board_module
from pipeline.agents.metrics.board import MetricsView, parse_metrics_key
from pipeline.agents.web import metrics_sms_answer
from pipeline.errors import BrokerError
from pipeline.kafka.readers import TopicRecord
from pipeline.records import SmsMetricsWindow
from pipeline.serde import codec_for
from pipeline.settings import Settings
from pipeline.topics import metrics_key

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CODEC = codec_for(Settings(_env_file=None))  # type: ignore[call-arg]


def _window(minute: int, login: str = "*", size: str = "1m", **counts: int) -> SmsMetricsWindow:
    seconds = 60 if size == "1m" else 3600
    start = BASE + timedelta(seconds=seconds * minute)
    return SmsMetricsWindow(start, start + timedelta(seconds=seconds), login, size, **counts)


class Topic:
    """`metrics.sms` as one reader sees it: per partition, records in offset order."""

    def __init__(self, partitions: int = 3) -> None:
        self.partitions: list[list[TopicRecord]] = [[] for _ in range(partitions)]

    def publish(self, record: SmsMetricsWindow | None, key: bytes) -> TopicRecord:
        number = sum(key) % len(self.partitions)
        value = None if record is None else CODEC.encode(record)
        read = TopicRecord(number, len(self.partitions[number]), key, value)
        self.partitions[number].append(read)
        return read

    def window(self, record: SmsMetricsWindow) -> TopicRecord:
        key = metrics_key(record.window, record.window_start, record.login)
        return self.publish(record, key)


def test_every_workers_windows_are_shown_and_the_latest_record_of_each_wins() -> None:
    topic, view = Topic(), MetricsView(CODEC.decode)
    # two workers: windows 0..9, the even ones computed by one, the odd ones by the other,
    # each published twice (a first batch, then the window's final counts)
    for minute in range(10):
        view.apply(topic.window(_window(minute, requested=1, delivered=0)))
        view.apply(topic.window(_window(minute, "alice", requested=1)))
    for minute in range(10):
        view.apply(topic.window(_window(minute, requested=minute + 3, delivered=minute)))
    latest = view.latest("1m", "*", 60)
    assert [w.window_start for w in latest] == [_window(m).window_start for m in range(9, -1, -1)]
    assert sum(w.requested for w in latest) == sum(m + 3 for m in range(10))
    assert sum(w.delivered for w in latest) == sum(range(10))
    assert view.logins("1m") == ["*", "alice"] and view.logins("1h") == []
    assert view.latest("1m", "alice", 3) == [_window(m, "alice", requested=1) for m in (9, 8, 7)]


def test_the_view_is_bounded_per_size_and_login() -> None:
    topic, view = Topic(), MetricsView(CODEC.decode, depth=3)
    for minute in range(50):
        view.apply(topic.window(_window(minute, requested=minute)))
        view.apply(topic.window(_window(minute, size="1h", requested=minute)))
    assert [w.requested for w in view.latest("1m", "*", 1000)] == [49, 48, 47]
    assert [w.requested for w in view.latest("1h", "*")] == [49, 48, 47]
    assert all(len(slot) <= 6 for slot in view._slots.values())  # twice the depth at most


def test_a_feed_read_again_never_puts_an_older_record_over_a_newer_one() -> None:
    topic, view = Topic(), MetricsView(CODEC.decode)
    for requested in (1, 2, 3):
        view.apply(topic.window(_window(0, requested=requested)))
    for partition in topic.partitions:  # the reader restarted: the topic from its beginning
        for record in partition[:1]:
            view.apply(record)
    assert [w.requested for w in view.latest("1m", "*")] == [3]
    assert view.records == 3


def test_tombstones_foreign_keys_and_undecodable_values_are_left_out() -> None:
    topic, view = Topic(), MetricsView(CODEC.decode)
    view.apply(topic.window(_window(0, requested=1)))
    view.apply(topic.window(_window(1, requested=2)))
    view.apply(topic.publish(None, metrics_key("1m", _window(1).window_start, "*")))
    view.apply(topic.publish(_window(2), b"not a window key"))
    view.apply(TopicRecord(0, 99, metrics_key("1m", _window(3).window_start, "*"), b"junk"))
    assert [w.requested for w in view.latest("1m", "*")] == [1]
    assert view.skipped == 2  # the foreign key, then the junk value once it was asked for
    assert view.latest("1m", "*") == [_window(0, requested=1)]


def test_metrics_keys_parse_back_even_with_a_bar_in_the_login() -> None:
    key = metrics_key("1h", BASE, "a|b")
    assert parse_metrics_key(key) == ("1h", BASE, "a|b")
    assert parse_metrics_key(b"1m|yesterday|*") is None
    assert parse_metrics_key(b"\xff|x") is None


def test_the_answer_keeps_its_shape_and_says_whether_the_view_caught_up() -> None:
    topic, view = Topic(), MetricsView(CODEC.decode)
    for minute in range(5):
        view.apply(topic.window(_window(minute, requested=2)))
    body, status = metrics_sms_answer(view, {"window": "1m", "limit": "3"})
    assert status == 200
    assert set(body) == {"window", "login", "logins", "windows", "caught_up"}
    assert (body["window"], body["login"], body["logins"]) == ("1m", "*", ["*"])
    assert [w["window_start"] for w in body["windows"]] == [
        _window(m).window_start.isoformat() for m in (4, 3, 2)
    ]
    assert body["caught_up"] is False
    view._on_caught_up()
    assert metrics_sms_answer(view, {})[0]["caught_up"] is True
    assert metrics_sms_answer(view, {"window": "5m"})[1] == 400
    assert metrics_sms_answer(view, {"limit": "many"})[1] == 400


async def test_the_feed_reads_again_after_a_retriable_error_and_stops_on_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    refused = BrokerError("not authorized")
    refused.retriable = False
    outcomes = [BrokerError("broker down"), refused]

    async def follow_topic(
        client: Any, topic: str, apply: Callable[[TopicRecord], None], caught_up: Callable[[], None]
    ) -> None:
        calls.append(topic)
        caught_up()
        raise outcomes.pop(0)

    monkeypatch.setattr(board_module, "follow_topic", follow_topic)
    view = MetricsView(CODEC.decode)
    with pytest.raises(BrokerError, match="not authorized"):
        await asyncio.wait_for(view.follow({}, "p.metrics.sms", retry_s=0.01), 5)
    assert calls == ["p.metrics.sms", "p.metrics.sms"] and view.caught_up


class _Pages:
    """Stands for the faust app (`page`) and for a view instance (`html`, `text`)."""

    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def page(self, path: str, name: str) -> Callable[[Any], Any]:
        def register(handler: Any) -> Any:
            self.handlers[path] = handler
            return handler

        return register

    def html(self, body: str) -> tuple[str, str]:
        return body, "text/html"

    def text(self, body: str, content_type: str, headers: dict[str, str]) -> tuple[str, str]:
        return body, content_type


async def test_the_page_and_its_vendored_chart_library_are_served() -> None:
    app = _Pages()
    dashboard.register_dashboard(app)
    page, _ = await app.handlers["/"](app, None)
    for name, content_type in dashboard.VENDOR_FILES.items():
        assert f'"static/vendor/{name}"' in page  # relative: served by this worker, no CDN
        body, served_as = await app.handlers[f"/static/vendor/{name}"](app, None)
        assert served_as == content_type and body == dashboard.vendor_file(name)
    assert "https://" not in page.replace("https://github.com", "")
    assert dashboard.vendor_file("uPlot.iife.min.js").startswith(
        "/*! https://github.com/leeoniya/uPlot (v1.6.32) */"
    )
    assert "MIT License" in dashboard.vendor_file("uPlot.LICENSE")
    assert "1.6.32" in dashboard.vendor_file("README.md")
