"""The simulator's pure parts: request reading, codes, segments, rate window, ledger, config."""

from __future__ import annotations

import pytest

from pipeline.devtools.simulator.config import Account, SimulatorConfig, parse_accounts
from pipeline.devtools.simulator.ledger import Ledger, LedgerEntry
from pipeline.devtools.simulator.ratelimit import SlidingWindow
from pipeline.devtools.simulator.rules import (
    BadRequest,
    Header,
    account_codes,
    forbidden_pattern,
    message_codes,
    normalize_number,
    read_header,
)


@pytest.mark.parametrize(
    "header",
    [
        {"login": "a@b.c", "accessKey": "k", "mode": "test"},
        [{"login": "a@b.c", "accesskey": "k", "mode": "test"}],
    ],
)
def test_header_object_or_list_both_key_spellings(header: object) -> None:
    h = read_header({"header": header, "messages": []})
    assert (h.login, h.access_key, h.mode) == ("a@b.c", "k", "test")


@pytest.mark.parametrize("body", [[], {"header": "x"}, {"header": [{}, {}]}, {}])
def test_bad_headers(body: object) -> None:
    with pytest.raises(BadRequest):
        read_header(body)


def test_account_codes() -> None:
    accounts = {"a@b.c": Account("k"), "off@b.c": Account("k2", active=False)}

    def h(login: str, key: str) -> Header:
        return read_header({"header": {"login": login, "accessKey": key}})

    assert account_codes(h("a@b.c", "k"), accounts) == ()
    assert account_codes(h("a@b.c", "bad"), accounts) == ("#001",)
    assert account_codes(h("who@b.c", "k"), accounts) == ("#001",)
    assert account_codes(h("off@b.c", "k2"), accounts) == ("#002",)
    assert account_codes(h("any@b.c", "any"), None) == ()
    assert account_codes(h("any@b.c", ""), None) == ("#001",)


def test_message_codes() -> None:
    stop = {"+33612345678"}
    words = forbidden_pattern(("forbiddenword", "casino"))
    assert message_codes("+33698765432", "Hello", stop, words) == []
    assert message_codes("+33 6 12 34 56 78", "Hello", stop, words) == ["#003"]
    assert message_codes("+33698765432", "Win at the CASINO!", stop, words) == ["#004"]
    assert message_codes("+33698765432", "casinos are fine", stop, words) == []
    assert message_codes("+33698765432", "   ", stop, words) == ["#006"]
    assert message_codes("+33698765432", None, stop, words) == ["#006"]
    assert message_codes("12", "Hello", stop, words) == ["#007"]
    assert message_codes(None, "", stop, words) == ["#007", "#006"]


def test_normalize_number() -> None:
    assert normalize_number("+33 6 12 34 56 78") == "+33612345678"
    assert normalize_number("0612345678") is None  # not international
    assert normalize_number("+1") is None


def test_sliding_window() -> None:
    w = SlidingWindow(10)
    assert w.admit(6, now=100.0) == 0
    assert w.admit(4, now=100.5) == 0
    wait = w.admit(3, now=100.6)
    assert wait == pytest.approx(0.4)  # the first 6 leave the window at 101.0
    assert w.admit(3, now=101.0) == 0
    assert w.admit(25, now=105.0) == 0  # oversized batch admitted into an empty window
    assert w.admit(1, now=105.5) > 0
    assert SlidingWindow.header_value(0.4) == "1" and SlidingWindow.header_value(1.2) == "2"


def entry(i: str, at: float) -> LedgerEntry:
    return LedgerEntry(i, "l", "+33612345678", "SERVER", "prod", 1, "m", None, 1, None, at, at)


def test_ledger_counts_duplicates() -> None:
    ledger = Ledger()
    assert ledger.accept(entry("a", 10.2)) == 1
    assert ledger.accept(entry("b", 10.7)) == 1
    assert ledger.accept(entry("a", 11.1)) == 2
    ledger.reject(["#007"])
    stats = ledger.stats()
    assert stats["accepted"] == 3 and stats["unique_ids"] == 2
    assert stats["duplicate_ids"] == 1 and stats["duplicate_submissions"] == 1
    assert stats["accepted_per_second"] == {"10": 2, "11": 1}
    assert stats["rejected_by_code"] == {"#007": 1}
    assert ledger.entries["a"].first_accepted_at == 10.2
    assert ledger.entries["a"].last_accepted_at == 11.1


def test_runtime_config_changes() -> None:
    cfg = SimulatorConfig().with_runtime({"fail_rate": 0.5, "rate_limit": 100, "shuffle": True})
    assert (cfg.fail_rate, cfg.rate_limit, cfg.shuffle) == (0.5, 100.0, True)
    for bad in ({"fail_rate": 2}, {"accounts": {}}, {"shuffle": 1}, {"latency_ms": -1}):
        with pytest.raises(ValueError):
            SimulatorConfig().with_runtime(bad)


def test_parse_accounts_hides_keys_in_repr() -> None:
    accounts = parse_accounts('{"a@b.c": "k1", "x@b.c": {"key": "k2", "active": false}}')
    assert accounts["a@b.c"] == Account("k1")
    assert accounts["x@b.c"].active is False
    assert "k2" not in repr(accounts["x@b.c"])
    with pytest.raises(ValueError):
        parse_accounts('{"a": 1}')
    with pytest.raises(ValueError):
        parse_accounts("[")
