"""The Ardary simulator as a Starlette app: the API endpoints, failure injection and a ledger.

Routes (each API route is served with and without the `/api` prefix, so a base URL of either
`http://host:port/api` — the real API's shape — or `http://host:port` works):
- POST /api/sendSms, /api/sendSmsSolo, /api/contact — as the vendor docs describe.
- GET /_sim/ledger, GET /_sim/ledger/{id}, GET /_sim/callbacks (every callback attempt and
  its answer), GET /_sim/stats, GET|POST /_sim/stop-list, POST /_sim/reset, POST /_sim/config —
  inspection and runtime control.

Semantics: `mode: test` is validated and answered like prod and the message is recorded in the
ledger (with its mode) but no callback fires. An account failure on /contact is HTTP 401 (the
contact codes #001-#004 are about contacts). A held request ("timeout" injection) is processed
after the hold, as a slow Ardary would: a client that gave up and resends shows up in the
ledger as a duplicate. Per message, the ledger keeps what scheduling and compliance fields came
(`date_to_send` as sent, `marketing`, `addStop`/`add_stop`): the simulator does not hold a
scheduled message back — its callbacks fire at once — so tests see what Ardary was asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pipeline.ardary.api import LINK_PLACEHOLDERS
from pipeline.ardary.codes import (
    CONTACT_EMPTY_PHONE,
    CONTACT_INVALID_EMAIL,
    CONTACT_INVALID_PHONE,
    CONTACT_NO_PHONE,
    UNKNOWN_ERROR,
)
from pipeline.ardary.segments import count_segments
from pipeline.devtools.simulator.config import SimulatorConfig
from pipeline.devtools.simulator.dispatcher import CallbackDispatcher
from pipeline.devtools.simulator.ledger import Ledger, LedgerEntry
from pipeline.devtools.simulator.plan import AcceptedMessage, drops_receipt, message_rng
from pipeline.devtools.simulator.ratelimit import SlidingWindow
from pipeline.devtools.simulator.rules import (
    BadRequest,
    Header,
    account_codes,
    first,
    forbidden_pattern,
    message_codes,
    normalize_number,
    read_header,
)

__all__ = ["SimulatorState", "build_app"]

_SHORT_LINK = "https://ardy.me/AbC123"  # what Ardary puts in place of [Link], for segments
_STOP_KEYS = ("addStop", "add_stop")  # the older doc's JSON example, its PHP example
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status, headers, media_type="application/json")


class SimulatorState:
    """The simulator's mutable state, shared by its routes."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.ledger = Ledger()
        self.stop_list: set[str] = set()
        self.contacts: dict[str, dict[str, Any]] = {}
        self.dispatcher = CallbackDispatcher(
            lambda: self.config, self.stop_list.add, on_fired=lambda a: self.ledger.fired(a)
        )
        self._ids = itertools.count(1)
        self.reset_counters()

    def reset_counters(self) -> None:
        """Back to the configured start: empty ledger, configured stop list, fresh rng."""
        self.ledger = Ledger()
        self.stop_list.clear()
        self.stop_list.update(n for n in map(normalize_number, self.config.stop_list) if n)
        self.contacts.clear()
        self.rng = random.Random(self.config.seed)
        self._apply_config()

    def _apply_config(self) -> None:
        c = self.config
        self.forbidden = forbidden_pattern(c.forbidden_words)
        limit = c.rate_limit
        self.window = SlidingWindow(limit) if limit else None

    def reconfigure(self, changes: dict[str, Any]) -> None:
        """Change runtime fields (failure injection, probabilities, rate limit)."""
        old_limit = self.config.rate_limit
        self.config = self.config.with_runtime(changes)
        self.forbidden = forbidden_pattern(self.config.forbidden_words)
        if self.config.rate_limit != old_limit:
            self.window = SlidingWindow(self.config.rate_limit) if self.config.rate_limit else None

    def next_id(self) -> str:
        """An id_sms_api for a message that came without one."""
        return f"SIM{self.config.seed}x{next(self._ids):010d}"

    def draw_failure(self) -> str | None:
        """Which injected failure this request gets, if any (one draw per configured rate)."""
        c = self.config
        for name, rate in (
            ("fail", c.fail_rate),
            ("throttle", c.throttle_rate),
            ("hold", c.timeout_rate),
        ):
            if rate > 0 and self.rng.random() < rate:
                return name
        return None


async def _inject(state: SimulatorState) -> Response | None:
    c = state.config
    if c.latency_ms > 0:
        await asyncio.sleep(c.latency_ms / 1000.0)
    failure = state.draw_failure()
    if failure == "fail":
        return _json({"error": "simulated server error"}, 503)
    if failure == "throttle":
        return _json(
            {"error": "too many requests"}, 429, {"Retry-After": str(c.retry_after_seconds)}
        )
    if failure == "hold":
        await asyncio.sleep(c.hold_seconds)
    return None


def _decode(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("body is not JSON") from exc


async def _read_call(
    request: Request, items_field: str
) -> Response | tuple[SimulatorState, Header, list[dict[str, Any]]]:
    """What every API call does first: read, inject failures, decode the header and items.

    Returns the (state, header, items) of a good call, or the Response that ends a bad one.
    """
    state: SimulatorState = request.app.state.sim
    raw = await request.body()  # before any hold: a client that gives up cannot be read later
    injected = await _inject(state)
    if injected is not None:
        return injected
    try:
        body = _decode(raw)
        header = read_header(body)
        items = body.get(items_field)
        if not isinstance(items, list) or not all(isinstance(m, dict) for m in items):
            raise BadRequest(f"{items_field} must be a list of objects")
    except BadRequest as exc:
        return _json({"error": str(exc)}, 400)
    return state, header, items


async def _send(request: Request, routing: str) -> Response:
    call = await _read_call(request, "messages")
    if isinstance(call, Response):
        return call
    state, header, messages = call
    if state.window is not None:
        wait = state.window.admit(len(messages), time.monotonic())
        if wait > 0:
            return _json(
                {"error": "rate limit exceeded"},
                429,
                {"Retry-After": SlidingWindow.header_value(wait)},
            )
    c = state.config
    refused = account_codes(header, c.accounts)
    phone_key = "phonenumber" if c.dialect == "v1" else "phone_number"
    now = datetime.now(UTC)
    epoch = now.timestamp()
    sent_time = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    dispatch = header.mode == "prod" and c.callback_url is not None
    data: list[dict[str, Any]] = []
    accepted = 0
    for m in messages:
        raw_id = m.get("id_sms_api")
        id_sms_api = str(raw_id) if raw_id not in (None, "") else state.next_id()
        phone = first(m, "phone_number", "phonenumber")
        text = m.get("message")
        codes = list(refused) or message_codes(phone, text, state.stop_list, state.forbidden)
        if not codes and c.unknown_error_rate > 0:
            seen = state.ledger.entries.get(id_sms_api)
            salt = f"{id_sms_api}:{seen.submissions if seen else 0}"
            if message_rng(c.seed, salt).random() < c.unknown_error_rate:
                codes = [UNKNOWN_ERROR]
        if codes:
            state.ledger.reject(codes)
            data.append({"id_sms_api": id_sms_api, "error": codes})
            continue
        assert isinstance(text, str) and isinstance(phone, str)
        url = m.get("url") or None
        shown = text
        for placeholder in LINK_PLACEHOLDERS:
            shown = shown.replace(placeholder, _SHORT_LINK)
        segments = max(1, count_segments(shown).segments)
        stop_keys = tuple(k for k in _STOP_KEYS if k in m)
        state.ledger.accept(
            LedgerEntry(
                id_sms_api=id_sms_api,
                login=header.login,
                phone_number=phone,
                routing=routing,
                mode=header.mode,
                segments=segments,
                message=text,
                url=url,
                priority=first(m, "priority", "priorite") or header.priority,
                date_to_send=m.get("date_to_send") or header.date_to_send,
                first_accepted_at=epoch,
                last_accepted_at=epoch,
                marketing=m.get("marketing"),
                add_stop=m[stop_keys[0]] if stop_keys else None,
                add_stop_keys=stop_keys,
                receipt_dropped=dispatch and drops_receipt(c, id_sms_api),
            )
        )
        accepted += 1
        data.append(
            {
                "id_sms_api": id_sms_api,
                "sms_per_message": segments,
                "sent_time": sent_time,
                phone_key: phone,
                "message": text,
            }
        )
        if dispatch:
            e164 = normalize_number(phone) or phone
            state.dispatcher.schedule(
                AcceptedMessage(id_sms_api, header.login, e164, text, url, now)
            )
    answer: dict[str, Any] = {"data": data}
    if accepted < len(messages):
        answer["count_sent"] = accepted
    return _json(answer)


async def send_sms(request: Request) -> Response:
    return await _send(request, "SERVER")


async def send_sms_solo(request: Request) -> Response:
    return await _send(request, "MOBILE")


def _contact_codes(contact: dict[str, Any]) -> list[str]:
    codes: list[str] = []
    if "phonenumber" not in contact and "phone_number" not in contact:
        codes.append(CONTACT_NO_PHONE)
    else:
        phone = first(contact, "phonenumber", "phone_number")
        if not isinstance(phone, str) or not phone.strip():
            codes.append(CONTACT_EMPTY_PHONE)
        elif normalize_number(phone) is None:
            codes.append(CONTACT_INVALID_PHONE)
    email = contact.get("email")
    if email not in (None, "") and (not isinstance(email, str) or not _EMAIL.match(email)):
        codes.append(CONTACT_INVALID_EMAIL)
    return codes


async def contact(request: Request) -> Response:
    call = await _read_call(request, "contacts")
    if isinstance(call, Response):
        return call
    state, header, contacts = call
    if account_codes(header, state.config.accounts):
        return _json({"error": "authentication failed"}, 401)
    results: list[dict[str, Any]] = []
    for item in contacts:
        codes = _contact_codes(item)
        out = {k: item.get(k, "") for k in ("firstname", "lastname", "adress", "email")}
        out["phonenumber"] = first(item, "phonenumber", "phone_number") or ""
        if codes:
            out.update(result="failed", errors=codes)
        else:
            out["result"] = "success"
            state.contacts[normalize_number(out["phonenumber"]) or out["phonenumber"]] = out
        results.append(out)
    return _json({"data": {"contact": results}})


async def ledger(request: Request) -> Response:
    state: SimulatorState = request.app.state.sim
    entries = [e.as_json() for e in state.ledger.entries.values()]
    return _json({"count": len(entries), "messages": entries})


async def fired_callbacks(request: Request) -> Response:
    state: SimulatorState = request.app.state.sim
    attempts = [a.as_json() for a in state.ledger.callbacks]
    return _json({"count": len(attempts), "callbacks": attempts})


async def ledger_entry(request: Request) -> Response:
    state: SimulatorState = request.app.state.sim
    entry = state.ledger.entries.get(request.path_params["id_sms_api"])
    if entry is None:
        return _json({"error": "unknown id_sms_api"}, 404)
    return _json(entry.as_json())


async def stats(request: Request) -> Response:
    state: SimulatorState = request.app.state.sim
    out = state.ledger.stats()
    out["callbacks"] = dict(state.dispatcher.stats)
    out["callbacks_pending"] = state.dispatcher.pending
    out["stop_list_size"] = len(state.stop_list)
    out["contacts"] = len(state.contacts)
    return _json(out)


async def healthz(request: Request) -> Response:
    """Liveness, as every long-running command of the project answers it."""
    return _json({"status": "ok"})


async def reset(request: Request) -> Response:
    state: SimulatorState = request.app.state.sim
    await state.dispatcher.cancel_pending()
    state.dispatcher.stats.clear()
    state.reset_counters()
    return _json({"reset": True})


async def configure(request: Request) -> Response:
    state: SimulatorState = request.app.state.sim
    try:
        changes = orjson.loads(await request.body())
        if not isinstance(changes, dict):
            raise ValueError("body must be a JSON object")
        state.reconfigure(changes)
    except (ValueError, orjson.JSONDecodeError) as exc:
        return _json({"error": str(exc)}, 400)
    c = state.config
    return _json({name: getattr(c, name) for name in sorted(changes)})


async def stop_list(request: Request) -> Response:
    state: SimulatorState = request.app.state.sim
    if request.method == "POST":
        try:
            body = orjson.loads(await request.body())
            numbers = body.get("numbers") if isinstance(body, dict) else body
            if not isinstance(numbers, list) or not all(isinstance(n, str) for n in numbers):
                raise ValueError('give {"numbers": ["+33…", …]}')
        except (ValueError, orjson.JSONDecodeError) as exc:
            return _json({"error": str(exc)}, 400)
        bad = [n for n in numbers if normalize_number(n) is None]
        if bad:
            return _json({"error": "invalid phone numbers", "numbers": bad}, 400)
        state.stop_list.update(n for n in map(normalize_number, numbers) if n)
    return _json({"numbers": sorted(state.stop_list)})


def build_app(config: SimulatorConfig) -> Starlette:
    """The simulator app; its state is `app.state.sim` (a SimulatorState)."""
    state = SimulatorState(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await state.dispatcher.aclose()

    api = [
        ("/sendSms", send_sms),
        ("/sendSmsSolo", send_sms_solo),
        ("/contact", contact),
    ]
    routes = [
        Route(f"{prefix}{path}", fn, methods=["POST"])
        for prefix in ("/api", "")
        for path, fn in api
    ]
    routes += [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/_sim/ledger", ledger, methods=["GET"]),
        Route("/_sim/ledger/{id_sms_api:str}", ledger_entry, methods=["GET"]),
        Route("/_sim/callbacks", fired_callbacks, methods=["GET"]),
        Route("/_sim/stats", stats, methods=["GET"]),
        Route("/_sim/reset", reset, methods=["POST"]),
        Route("/_sim/config", configure, methods=["POST"]),
        Route("/_sim/stop-list", stop_list, methods=["GET", "POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.sim = state
    return app
