"""Send time: a marketing request's `date_to_send` inside its recipient's sending window.

- **Marketing only.** A transactional request is never moved (and costs nothing here). A
  marketing request whose send time (now, or its own future `date_to_send`) falls outside the
  recipient's window (SENDING_WINDOWS, by the number's country and time zones, public holidays
  included: `pipeline.core.sending_windows`) is sent with `date_to_send` moved to the next
  opening, so Ardary holds it: the pipeline keeps no timer. Its SendResult carries that time as
  `scheduled_for`.
- **A window that never opens** (within `HORIZON_DAYS`: hours narrower than the gap between the
  number's zones) → REJECTED `NO_SENDING_WINDOW`, without calling Ardary.
- **Checked twice.** At intake (a refusal is answered at once, like the other checks) and again
  just before the call (`ArdaryCalls`): with a backlog a request may wait in the buffer past
  the window's closing. Both use the same pure `plan_send_time`, and a time it already moved
  is open, so the second check changes only what became late meanwhile.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from pipeline.core.sending import NO_SENDING_WINDOW, Prepared, Refusal
from pipeline.core.sending_windows import SendingSchedule, plan_send_time
from pipeline.settings import Settings

__all__ = ["SendTimes"]


class SendTimes:
    """Applies the sending windows to prepared requests (one schedule, its caches, per agent)."""

    def __init__(self, schedule: SendingSchedule) -> None:
        self.schedule = schedule

    @classmethod
    def from_settings(cls, settings: Settings) -> SendTimes:
        """SENDING_WINDOWS; numbers without a known zone count in ARDARY_TIMEZONE."""
        return cls(SendingSchedule(settings.sending_windows, default_zone=settings.timezone))

    def plan(self, prepared: Prepared, now: datetime) -> Prepared | Refusal:
        """`prepared` as it may go at `now`: unchanged, moved to the next opening, or refused."""
        request = prepared.request
        if not request.marketing:
            return prepared
        planned = plan_send_time(request, now=now, schedule=self.schedule)
        if planned.blocked:
            return Refusal("REJECTED", (NO_SENDING_WINDOW,), request.phone_number)
        if planned.date_to_send == request.date_to_send:
            return prepared
        # moved, or its own date_to_send passed while it waited (send now, as at intake)
        return Prepared(replace(request, date_to_send=planned.date_to_send), prepared.segments)
