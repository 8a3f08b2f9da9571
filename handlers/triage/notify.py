"""Who is told what when a case changes: the villager of an outcome, the township of an urgent case.

Messages go into the outbox in the caller's transaction, once per recipient and event (dedupe
keys), so a change and its notifications commit or roll back together.
"""

from __future__ import annotations

import datetime as dt

from storage.models import Case, Region
from storage.outbox import enqueue
from storage.people import staff_in_region, villager_openids
from storage.refs import CST
from storage.regions import ancestors

from .. import triage_texts as T


def notify_villager(session, case: Case, outcome: str, *, reason: str = "", monitoring_type: str | None = None,
                    other_ref: str = "", now: dt.datetime) -> int:
    """Tell the villager the outcome in plain words: a customer-service text, with a template fallback."""
    words = T.VILLAGER_OUTCOME[outcome].format(
        ref=case.ref, reason=reason, other=other_ref,
        type=T.PLAIN_MONITORING.get(monitoring_type or "", ""),
    )
    result = T.TEMPLATE_RESULT[outcome]
    data = {"ref": case.ref, "status": result, "reason": reason or T.TEMPLATE_NO_REASON,
            "date": now.astimezone(CST).strftime("%Y-%m-%d")}
    sent = 0
    for openid in villager_openids(session, case):
        row = enqueue(
            session, kind="text", recipient=openid,
            # Outside WeChat's 48-hour window the worker sends the template instead.
            payload={"content": words, "fallback_template": {"template": "outcome", "data": data}},
            dedupe_key=f"outcome:{case.id}:{outcome}:{openid}", case_id=case.id,
        )
        sent += row is not None
    return sent


def notify_township(session, case: Case) -> int:
    """Queue the urgent-case template to the township staff responsible for the case's village."""
    village = session.get(Region, case.village_id) if case.village_id else None
    if village is None:
        return 0
    township = next((r for r in reversed(ancestors(session, village)) if r.level == "township"), None)
    if township is None:
        return 0
    sent = 0
    for staff in staff_in_region(session, region_path_prefix=township.path, roles=("township",)):
        if not staff.wechat_openid:
            continue
        row = enqueue(
            session, kind="template", recipient=staff.wechat_openid,
            payload={"template": "urgent_case",
                     "data": {"ref": case.ref, "village": village.name, "reasons": case.urgent_reasons},
                     "fallback_text": T.STAFF_URGENT_TEXT.format(ref=case.ref, village=village.name,
                                                                 reasons=case.urgent_reasons)},
            dedupe_key=f"urgent:{case.id}:{staff.id}", case_id=case.id,
        )
        sent += row is not None
    return sent
