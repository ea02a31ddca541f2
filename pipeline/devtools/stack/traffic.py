"""A realistic, seeded mix of send requests for the demo and dev stacks (pure)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import datetime

from pipeline.records import SendRequest

__all__ = ["DEMO_ACCOUNTS", "demo_requests"]

# Sender logins of the demo and their (fake) access keys, shared by the simulator and workers.
DEMO_ACCOUNTS: dict[str, str] = {
    "shop@demo.ardary.test": "demo-key-shop",
    "bank@demo.ardary.test": "demo-key-bank",
    "clinic@demo.ardary.test": "demo-key-clinic",
}

_TEXTS = (
    "Your order {n} has shipped. Track it here: [Link]",
    "Reminder: your appointment is tomorrow at 10:00. Reply to confirm.",
    "Flash sale! -20% on everything today only: [Link]",
    "Votre code de vérification est {n}.",
    "Hi! Your parcel {n} is waiting at the pick-up point.",
)
_CAMPAIGNS = ("spring-sale", "reminders", "otp", "shipping")


def demo_requests(count: int, *, seed: int, clock: Callable[[], datetime]) -> Iterator[SendRequest]:
    """`count` requests: three logins, all priorities, ~40 % tracked links, ~2 % invalid numbers.

    Invalid numbers are published as they are (upstream apps make mistakes): the outbound agent
    rejects them with #007, which the demo's summary shows among the rejections.
    """
    rng = random.Random(seed)
    logins = sorted(DEMO_ACCOUNTS)
    for n in range(count):
        template = rng.choice(_TEXTS)
        message = template.format(n=100000 + n)
        # French mobiles +336[1-8]…, avoiding +33639 (not a mobile range per libphonenumber)
        phone = f"+3361{rng.randrange(10**7):07d}"
        if rng.random() < 0.02:
            phone = f"+336{rng.randrange(10**4):04d}"  # too short: invalid
        yield SendRequest(
            id_sms_api=f"demo-{seed}-{n:06d}",
            login=logins[n % len(logins)],
            phone_number=phone,
            message=message,
            requested_at=clock(),
            url=f"https://shop.example/o/{n}" if "[Link]" in message else None,
            priority=rng.choice((0, 1, 1, 1, 2)),
            routing="MOBILE" if rng.random() < 0.1 else "SERVER",
            metadata={"campaign": rng.choice(_CAMPAIGNS)},
        )
