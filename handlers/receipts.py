"""The inbound-message bookkeeping of the official account: record once, answer once.

Each message is recorded once per (FromUserName, MsgId) and each event once per
(FromUserName, CreateTime, Event, EventKey), a unique constraint; its reply is stored with it, so
a WeChat retry gets the same reply and creates nothing new. A reply that is not ready within the
edge's time budget is *deferred*: the edge answers "success" and, when the work finishes, the
reply goes to the outbox as a customer-service message. Every state change is a
compare-and-set in the database, so passive reply, outbox and a takeover after a crash never
deliver the same reply twice. :mod:`handlers.routing` re-exports these names for the edge.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from storage import session_scope
from storage.inbound import claim_inbound, inbound_state, replace_reply, reply_once
from storage.inbound import take_over as _take_over_row
from storage.models import utcnow
from storage.outbox import enqueue
from storage.people import get_or_create_wechat_user

from .chat_types import Chatter, Inbound, Reply
from .context import Context

#: Seconds a first copy may take before a retry may assume it died and process the message again.
LEASE_SECONDS = 10

DEFERRED = json.dumps({"state": "deferred"})


@dataclass
class Receipt:
    inbound_id: int
    created: bool
    #: The sender, read in the same transaction (one round trip less per message).
    who: Chatter | None = None


@dataclass
class Stored:
    """What is stored for a message: ``pending`` (being processed), ``deferred`` (the edge
    answered "success"; the outbox will deliver), or ``done`` with ``text`` and ``via``."""

    state: str
    text: str | None = None
    via: str = "passive"
    received_at: dt.datetime | None = None

    @property
    def passive_text(self) -> str | None:
        """What a retry may answer directly: the reply, unless the outbox delivers it."""
        return self.text if self.state == "done" and self.via == "passive" else None


def _decode(raw: str | None, received_at=None) -> Stored:
    if raw is None:
        return Stored("pending", received_at=received_at)
    try:
        data = json.loads(raw)
    except ValueError:
        return Stored("done", text=raw, received_at=received_at)
    if data.get("state") == "deferred":
        return Stored("deferred", received_at=received_at)
    return Stored("done", text=data.get("text"), via=data.get("via", "passive"), received_at=received_at)


def _encode(text: str | None, via: str) -> str:
    return json.dumps({"state": "done", "text": text, "via": via}, ensure_ascii=False)


def answered_record(text: str | None) -> str:
    """What is stored with a message answered passively (what a retry of it gets)."""
    return _encode(text, "passive")


def receive(ctx: Context, msg: Inbound) -> Receipt:
    """Record the message; ``created`` is False for a retry (or a replay) of one already seen."""
    with session_scope(ctx.engine) as session:
        row, created = claim_inbound(session, source=msg.openid, dedupe_key=msg.dedupe_key, msg_type=msg.kind)
        who = Chatter.of(get_or_create_wechat_user(session, openid=msg.openid, app="oa")) if created else None
        return Receipt(row.id, created, who)


def poll(ctx: Context, inbound_id: int) -> Stored:
    with session_scope(ctx.engine) as session:
        state = inbound_state(session, inbound_id)
    if state is None:
        return Stored("pending")
    return _decode(state[0], state[1])


def complete(ctx: Context, inbound_id: int, msg: Inbound, reply: Reply) -> bool:
    """Store the reply. True: the edge may answer it passively. False: the edge had already
    deferred, so the reply went to the outbox instead (or another copy finished first)."""
    with session_scope(ctx.engine) as session:
        if reply_once(session, inbound_id, _encode(reply.text, "passive"), case_id=reply.case_id):
            return True
        if replace_reply(session, inbound_id, expected=DEFERRED, reply=_encode(reply.text, "outbox"),
                         case_id=reply.case_id):
            if reply.text:
                enqueue(session, kind="text", recipient=msg.openid, payload={"content": fit(reply.text)},
                        dedupe_key=f"reply:{inbound_id}", case_id=reply.case_id)
        return False


def defer(ctx: Context, inbound_id: int) -> Stored:
    """Mark the message as answered with "success". Returns ``deferred``, or, when the work
    finished in the meantime, what was stored (answer it)."""
    with session_scope(ctx.engine) as session:
        if reply_once(session, inbound_id, DEFERRED):
            return Stored("deferred")
        state = inbound_state(session, inbound_id)
    return _decode(state[0] if state else None)


def stale(stored: Stored, now: dt.datetime | None = None) -> bool:
    """The first copy should have finished long ago (it died): a retry may take over."""
    if stored.state == "done" or stored.received_at is None:
        return False
    return (now or utcnow()) - stored.received_at > dt.timedelta(seconds=LEASE_SECONDS)


def take_over(ctx: Context, inbound_id: int, stored: Stored) -> bool:
    """Claim the processing of a message whose first copy died; True for exactly one caller."""
    with session_scope(ctx.engine) as session:
        return _take_over_row(session, inbound_id, seen_received_at=stored.received_at, unfinished=(DEFERRED,))


def fit(text: str, limit: int = 2000) -> str:
    """``text`` cut (at a line end when possible) to the size WeChat accepts for one text."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    cut = data[: limit - 3].decode("utf-8", "ignore")
    if "\n" in cut[len(cut) // 2:]:
        cut = cut[: cut.rindex("\n")]
    return cut + "…"
