"""The simulator's callback sender: one GET, its status code, or why no answer came.

aiohttp rather than httpx: the simulator stands in for Ardary, and a stand-in that costs more
CPU than the system it loads sets the pace of every end-to-end run on a small box. Measured
here (16 in flight against a constant-200 aiohttp server, 3,000 GETs, twice each): httpx
2.6-3.0 ms of client CPU per request, aiohttp 0.15 ms. The URL goes out byte for byte as
built (`encoded=True`: no re-quoting), so a receiver's stored text can be matched with the
ledger's.

Transport failures raise `NotDelivered` whose `outcome` keeps the names the ledgers used
before (httpx's): `ConnectError` and `ConnectTimeout` mean the request never reached the
receiver, which the chaos reconciliation counts as "nothing sent"; any other failure may
have been received.
"""

from __future__ import annotations

import aiohttp
from yarl import URL

__all__ = ["CallbackSender", "NotDelivered", "outcome_of"]


class NotDelivered(Exception):
    """No HTTP answer; `outcome` names the failure as the ledger records it."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


def outcome_of(exc: BaseException) -> str:
    """The ledger's name for a transport failure (httpx's names for the two 'never sent')."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return "ConnectTimeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "ConnectError"
    if isinstance(exc, TimeoutError):
        return "ReadTimeout"
    return type(exc).__name__


class CallbackSender:
    """A pooled aiohttp session, made on first use (it needs the running loop)."""

    def __init__(self, max_connections: int, timeout_s: float = 5.0) -> None:
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def get(self, url: str) -> int:
        """GET `url` as built; the status code, else NotDelivered."""
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        try:
            async with self._session.get(URL(url, encoded=True), allow_redirects=False) as r:
                await r.read()
                return r.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise NotDelivered(outcome_of(exc)) from exc

    async def aclose(self) -> None:
        """Close the pooled connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None
