"""The outbound agent: `sms.send-requests` → Ardary, at the global rate, once, one SendResult each.

One module per job; each states the decisions it carries out:

- `agent`: `OutboundAgent` composes the parts below and `register` wires it to the app: the read
  loop (batches from the agent's queue, acked by completion), back-pressure, rebalances,
  the worker's share of the global rate, crash handling.
- `intake`: receiving a request — redelivery against its send state (never sent twice),
  duplicates in a row, validation (`check_request`), `date_to_send` passed to Ardary.
- `sendtime`: a marketing request's `date_to_send` moved into its recipient's sending window.
- `dispatch`: the `PriorityBatcher` and the `SendGate` (the global and per-login rates divided
  by partition share, paced by interval), batches in flight; `calls`: the Ardary call with its
  retries and per-login breaker.
- `completion`: DONE/PUBLISHED states, results and `#003` opt-outs produced and acknowledged,
  then the events acked in offset order (`AckOrder`).
- `states`: the changelog-backed send-state table (IN_FLIGHT acknowledged by the broker before
  Ardary is called) and its expiry — at-least-once plus this table, not faust's exactly_once.
- `optout_book`, `result_index`: what the agent reads without a consumer group (the whole
  `sms.optouts` topic; one `sms.send-results` partition after a crash).
- `progress`: the state the three share; `options`: the tuning knobs.

The send states themselves and the request checks are pure (`pipeline.core.sending`).
"""

from __future__ import annotations

from pipeline.agents.outbound.agent import OutboundAgent, register
from pipeline.agents.outbound.options import OutboundOptions
from pipeline.agents.outbound.optout_book import OptOutBook
from pipeline.agents.outbound.result_index import ResultIndex
from pipeline.agents.outbound.states import TABLE_NAME

__all__ = [
    "TABLE_NAME",
    "OptOutBook",
    "OutboundAgent",
    "OutboundOptions",
    "ResultIndex",
    "register",
]
