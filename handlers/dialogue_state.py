"""The state of a villager's dialogue, and the filing of the case that starts its details flow.

Shared by the two flows of :mod:`handlers.dialogue` (:mod:`handlers.dialogue_register` and
:mod:`handlers.dialogue_details`): the state is kept in ``ctx.kv`` (a database table, or Redis
when configured) so any worker process continues it, and the words each step understands.
"""

from __future__ import annotations

import json
import time

from storage import session_scope
from storage.people import get_or_create_wechat_user

from . import chat_texts as T
from . import texts
from .chat_types import Chatter, Inbound, Reply
from .context import Context
from .report import ReportInput, submit

STATE_TTL = 30 * 60
#: A second 一键申报 within this many seconds continues the case just filed instead of a new one.
RECENT_SECONDS = 10 * 60

DONE_WORDS = {"好了", "好", "完了", "没了", "没有了", "就这些", "结束", "完成", "提交"}
BACK_WORDS = {"返回", "上一步"}
CANCEL_WORDS = {"取消", "退出", "不报了"}
YES_WORDS = {"同意", "同意授权", "我同意", "可以", "好的", "是", "行", "愿意"}
NO_WORDS = {"不同意", "不愿意", "不", "否", "拒绝"}
SKIP_WORDS = {"跳过", "没有", "无", "没"}


def state_key(openid: str) -> str:
    return f"wechat:dlg:{openid}"


def current(ctx: Context, who: Chatter) -> dict | None:
    raw = ctx.kv.get(state_key(who.openid))
    return json.loads(raw) if raw else None


def save(ctx: Context, who: Chatter, state: dict) -> None:
    ctx.kv.set(state_key(who.openid), json.dumps(state, ensure_ascii=False), ttl=STATE_TTL)


def clear(ctx: Context, who: Chatter) -> None:
    ctx.kv.delete(state_key(who.openid))


def known_reporter(who: Chatter) -> bool:
    return who.household_id is not None or (bool(who.name) and who.village_id is not None and who.consented)


def file_case(ctx: Context, msg: Inbound, who: Chatter, *, name: str = "", village_id: int | None = None,
              phone: str | None = None, description: str = "", risk_types: list[str] | None = None) -> Reply:
    """Create the case (idempotent on the message), start the details flow, and acknowledge."""
    if phone is None and who.household_id is None and who.has_phone:
        with session_scope(ctx.engine) as session:
            user = get_or_create_wechat_user(session, openid=who.openid)
            phone = ctx.cipher.decrypt(user.phone_enc)
    ack = submit(ctx, ReportInput(
        channel="wechat", inbound_key=msg.inbound_key, household_id=who.household_id, reporter_id=who.id,
        reporter_name=name or who.name, reporter_phone=phone, village_id=village_id or who.village_id,
        risk_types=list(risk_types or []), description=description, actor_name=name or who.name,
    ))
    stage = "risk" if not ack.risk_types else "describe"
    save(ctx, who, {"flow": "details", "stage": stage, "case_id": ack.case_id, "ref": ack.ref, "at": time.time()})
    if stage == "risk":
        follow = texts.ASK_RISK.format(menu=texts.risk_menu())
    elif not description:
        follow = texts.ASK_DESCRIPTION
    else:
        follow = T.DESCRIBE_SAVED.format(ref=ack.ref)
    return Reply(ack.message + "\n\n" + follow, case_id=ack.case_id)
