"""The simulator's callback plans: dialect shapes from the vendor docs, seeded reproducibility."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import pytest

from pipeline.devtools.simulator.config import SimulatorConfig
from pipeline.devtools.simulator.dispatcher import callback_url_for
from pipeline.devtools.simulator.plan import AcceptedMessage, plan_callbacks

AT = datetime(2024, 1, 10, 9, 30, 0, 250000, tzinfo=UTC)  # 10:30:00 in Paris (CET)


def msg(
    i: str = "m1", text: str = "Hi [Link]", url: str | None = "https://x.io"
) -> AcceptedMessage:
    return AcceptedMessage(i, "shop@example.com", "+33612345678", text, url, AT)


ALWAYS = {
    "click_probability": 1.0,
    "reply_probability": 1.0,
    "stop_probability": 1.0,
    "missed_call_probability": 1.0,
}


def by_kind(config: SimulatorConfig, m: AcceptedMessage) -> dict[str, dict[str, object]]:
    return {cb.kind: dict(cb.payload) for cb in plan_callbacks(config, m)}


def test_v1_shapes() -> None:
    plan = plan_callbacks(SimulatorConfig(dialect="v1", **ALWAYS), msg())
    params = {cb.kind: cb.param for cb in plan}
    assert params == {
        "status:sent": "status",
        "status:received": "status",
        "click": "click",
        "reply": "message",
        "stop": "message",
        "missed_call": "call",
    }
    p = {cb.kind: dict(cb.payload) for cb in plan}
    assert set(p["status:sent"]) == {"user", "phonenumber", "status", "date_status", "id_sms_api"}
    assert p["status:received"]["status"] == "received"
    assert str(p["status:sent"]["date_status"]).endswith("Z")
    assert p["click"]["title"] == "clicked link" and p["click"]["link"] == "https://x.io"
    assert p["reply"]["title"] == "incoming sms" and "body" in p["reply"]
    assert p["stop"]["body"] == "STOP"
    assert p["missed_call"]["title"] == "incoming call" and "call_date" in p["missed_call"]
    # naive local Paris time, one hour ahead of UTC in January
    assert str(p["click"]["date"]).startswith("2024-01-10 10:3")


def test_v2_shapes() -> None:
    p = by_kind(SimulatorConfig(dialect="v2", **ALWAYS), msg())
    assert "phone_number" in p["status:sent"] and "phonenumber" not in p["status:sent"]
    assert p["reply"]["title"] == "incoming_sms"
    assert p["reply"]["device_identification"] == "shop@example.com"
    assert "message" in p["reply"] and str(p["reply"]["date"]).endswith("Z")
    assert p["missed_call"]["title"] == "missed_call" and p["missed_call"]["duration"] == "0"
    params = {cb.kind: cb.param for cb in plan_callbacks(SimulatorConfig(**ALWAYS), msg())}
    assert params["click"] == "clics" and params["missed_call"] == "calls"


def test_sent_comes_before_received_without_shuffle() -> None:
    for i in range(50):
        plan = plan_callbacks(SimulatorConfig(), msg(f"id{i}"))
        kinds = [cb.kind for cb in plan]
        assert kinds.index("status:sent") < kinds.index("status:received")
        assert [cb.delay for cb in plan] == sorted(cb.delay for cb in plan)


def test_no_click_without_placeholder_or_url() -> None:
    cfg = SimulatorConfig(**ALWAYS)
    assert "click" not in by_kind(cfg, msg(text="no placeholder"))
    assert "click" not in by_kind(cfg, msg(url=None))
    assert "click" in by_kind(cfg, msg(text="Go [Lien_Tracking]"))


def test_stop_reply_joins_the_stop_list() -> None:
    plan = plan_callbacks(SimulatorConfig(**ALWAYS), msg())
    assert [cb.kind for cb in plan if cb.joins_stop_list] == ["stop"]


def test_same_seed_same_plan_other_seed_other_plan() -> None:
    cfg = SimulatorConfig(seed=7, click_probability=0.5, reply_probability=0.5, shuffle=True)
    a = [plan_callbacks(cfg, msg(f"id{i}")) for i in range(30)]
    b = [plan_callbacks(cfg, msg(f"id{i}")) for i in reversed(range(30))][::-1]
    assert a == b  # order of planning does not matter
    other = [
        plan_callbacks(
            SimulatorConfig(seed=8, click_probability=0.5, reply_probability=0.5, shuffle=True),
            msg(f"id{i}"),
        )
        for i in range(30)
    ]
    assert a != other


def test_duplicates_are_planned_twice() -> None:
    plan = plan_callbacks(SimulatorConfig(duplicate_probability=1.0), msg())
    kinds = [cb.kind for cb in plan]
    assert kinds.count("status:sent") == 2 and kinds.count("status:received") == 2


def test_shuffle_can_deliver_received_before_sent() -> None:
    cfg = SimulatorConfig(shuffle=True, shuffle_max_ms=5000, delivery_delay_ms=100)
    inverted = 0
    for i in range(100):
        kinds = [cb.kind for cb in plan_callbacks(cfg, msg(f"id{i}"))]
        inverted += kinds.index("status:received") < kinds.index("status:sent")
    assert 0 < inverted < 100


@pytest.mark.parametrize("base", ["http://h/cb/tok", "http://h/cb?x=1"])
def test_callback_url_is_url_encoded_json(base: str) -> None:
    text = 'Café & "quotes" ?='
    (cb,) = [
        c
        for c in plan_callbacks(SimulatorConfig(dialect="v1", **ALWAYS), msg())
        if c.kind == "reply"
    ]
    cb = type(cb)(cb.kind, cb.delay, cb.param, {**cb.payload, "body": text}, cb.phone_number)
    url = callback_url_for(base, cb)
    query = parse_qs(urlsplit(url).query)
    assert json.loads(query["message"][0])["body"] == text
    assert " " not in url and "&" not in url.split("message=")[1]


def test_a_dropped_receipt_takes_only_the_received_status_away() -> None:
    messages = [msg(f"m{i}") for i in range(400)]
    full = [plan_callbacks(SimulatorConfig(**ALWAYS), m) for m in messages]
    dropped = [
        plan_callbacks(SimulatorConfig(drop_status_rate=0.25, **ALWAYS), m) for m in messages
    ]
    lost = 0
    for before, after in zip(full, dropped, strict=True):
        kept = [cb for cb in before if cb.kind != "status:received"]
        assert list(after) in (list(before), kept)  # the rest of the plan is the same
        lost += list(after) == kept
    assert 60 <= lost <= 140  # about a quarter
    every = SimulatorConfig(drop_status_rate=1.0)
    kinds = [{cb.kind for cb in plan_callbacks(every, m)} for m in messages]
    assert all("status:sent" in k and "status:received" not in k for k in kinds)


def test_mixed_dialect_picks_one_dialect_per_message_and_leaves_the_other_draws_alone() -> None:
    mixed = SimulatorConfig(dialect="mixed", seed=3, **ALWAYS)
    seen: set[str] = set()
    for i in range(40):
        m = msg(f"m{i}")
        plan = plan_callbacks(mixed, m)
        keys = {key for cb in plan if cb.kind.startswith("status") for key in cb.payload}
        dialect = "v1" if "phonenumber" in keys else "v2"
        seen.add(dialect)
        # the same plan as the single-dialect mode it drew: same delays, same payloads
        single = plan_callbacks(SimulatorConfig(dialect=dialect, seed=3, **ALWAYS), m)
        assert plan == single
    assert seen == {"v1", "v2"}
