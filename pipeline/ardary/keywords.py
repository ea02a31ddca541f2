"""Opt-out (STOP) and opt-in (START) keywords in incoming SMS replies."""

from __future__ import annotations

import unicodedata
from typing import Literal

__all__ = ["START_KEYWORDS", "STOP_KEYWORDS", "classify_reply", "normalize_reply"]

# Normalised spellings (see normalize_reply): ARRÊT → "arret", DÉSABONNER → "desabonner".
STOP_KEYWORDS = frozenset({"stop", "arret", "stop sms", "unsubscribe", "desabonner"})
START_KEYWORDS = frozenset({"start", "start sms"})
# Longest keyword plus generous room for punctuation and spaces; longer bodies are sentences
# (and are not worth normalising on the hot path).
_MAX_KEYWORD_BODY = 64


def normalize_reply(body: str) -> str:
    """Fold case and accents, turn punctuation and symbols into spaces, collapse whitespace."""
    decomposed = unicodedata.normalize("NFKD", body.casefold())
    kept: list[str] = []
    for char in decomposed:
        if char.isalnum():
            kept.append(char)
        elif not unicodedata.combining(char):
            kept.append(" ")
    return " ".join("".join(kept).split())


def classify_reply(body: str) -> Literal["STOP", "START"] | None:
    """Say whether a reply is an opt-out, an opt-in, or neither.

    The rule: the WHOLE body, once case, accents and punctuation are ignored and surrounding
    whitespace dropped, must be one keyword. STOP: STOP, ARRET/ARRÊT, STOP SMS, UNSUBSCRIBE,
    DESABONNER/DÉSABONNER. START: START, START SMS. So "Stop." and "arrêt !" opt out, while a
    sentence that merely contains a keyword ("please don't stop") does not — a false opt-out
    silences a customer who wanted the messages.
    """
    stripped = body.strip()
    if len(stripped) > _MAX_KEYWORD_BODY:
        return None
    word = normalize_reply(stripped)
    if word in STOP_KEYWORDS:
        return "STOP"
    if word in START_KEYWORDS:
        return "START"
    return None
