"""STOP / START reply classification: whole-body keywords only."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.ardary.keywords import classify_reply


@pytest.mark.parametrize(
    "body",
    [
        "STOP",
        "stop",
        "Stop.",
        "  STOP  ",
        "STOP!",
        "ARRET",
        "arrêt",
        "ARRÊT !",
        "STOP SMS",
        "stop-sms",
        "Stop   sms",
        "UNSUBSCRIBE",
        "DESABONNER",
        "Désabonner",
        "DÉSABONNER",
        "\u200bSTOP",  # zero-width space pasted from a web page
        "\uff33\uff54\uff4f\uff50",  # fullwidth letters
        "stop 🙏",
    ],
)
def test_stop_keywords(body: str) -> None:
    assert classify_reply(body) == "STOP"


@pytest.mark.parametrize("body", ["START", "start", "Start!", "START SMS", " start sms. "])
def test_start_keywords(body: str) -> None:
    assert classify_reply(body) == "START"


@pytest.mark.parametrize(
    "body",
    [
        "please don't stop",
        "stop it now",
        "STOP STOP",
        "arrêtez",
        "stopping",
        "non-stop",
        "START STOP",
        "",
        "   ",
        "Hello world !",
        "S T O P",
        "STOP" + " " * 10 + "x" * 80,
    ],
)
def test_not_a_keyword(body: str) -> None:
    assert classify_reply(body) is None


@given(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz ", min_size=1), st.sampled_from(["STOP", "START"])
)
def test_keyword_inside_a_sentence_is_never_a_keyword(words: str, keyword: str) -> None:
    body = f"{words.strip() or 'x'} zz {keyword}"
    assert classify_reply(body) is None


@given(st.text())
def test_never_raises(body: str) -> None:
    assert classify_reply(body) in ("STOP", "START", None)
