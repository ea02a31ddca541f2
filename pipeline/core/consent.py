"""Consent changes that records state: the one place an `OptOut` is built from a reply or a result.

Both the opt-out agent (which reads every send result) and the outbound agent (which learns of a
`#003` first, from Ardary's answer) publish the OptOut of a stop-listed number; building it here
keeps the two records identical, so a consumer de-duplicating by `event_id` sees one fact.
"""

from __future__ import annotations

from pipeline.ardary.codes import STOP_REQUESTED
from pipeline.ardary.keywords import classify_reply
from pipeline.records import IncomingSms, OptOut, SendResult

__all__ = ["OPTOUT_CODE", "optout_for", "optout_for_reply", "optout_for_result"]

OPTOUT_CODE = STOP_REQUESTED  # "#003": the number is on Ardary's stop list


def optout_for_reply(sms: IncomingSms) -> OptOut | None:
    """A STOP keyword reply opts the sender out, START opts it back in, anything else: None.

    `source="INCOMING_SMS"`, `keyword` = the normalised verdict, `event_id` = the reply's.
    """
    verdict = classify_reply(sms.body)
    if verdict is None:
        return None
    return OptOut(
        phone_number=sms.from_number,
        opted_out=verdict == "STOP",
        source="INCOMING_SMS",
        event_id=sms.event_id,
        at=sms.date or sms.received_at,
        login=sms.device_identification,
        keyword=verdict,
    )


def optout_for_result(result: SendResult) -> OptOut | None:
    """A send result carrying `#003` opts the recipient out; any other result: None.

    `source="SEND_RESULT"`, `keyword="#003"`, `event_id` = ``send-result:<id_sms_api>``: the
    same record however often, and by whichever agent, the result is seen.
    """
    if OPTOUT_CODE not in result.error_codes:
        return None
    return OptOut(
        phone_number=result.phone_number,
        opted_out=True,
        source="SEND_RESULT",
        event_id=f"send-result:{result.id_sms_api}",
        at=result.completed_at,
        login=result.login,
        keyword=OPTOUT_CODE,
    )


def optout_for(record: object) -> OptOut | None:
    """The consent change `record` states (a reply or a send result), or None."""
    if isinstance(record, IncomingSms):
        return optout_for_reply(record)
    if isinstance(record, SendResult):
        return optout_for_result(record)
    return None
