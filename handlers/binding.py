"""一户一码: scanning a household's QR code binds the sender's WeChat to that household.

The code is a permanent parametric QR code whose scene string is ``hh:<bind token>``
(``bot.wechat.outbound.create_household_qr``). WeChat reports a scan as a ``subscribe`` event
with ``EventKey`` ``qrscene_hh:<token>`` (first follow) or a ``SCAN`` event with ``hh:<token>``
(already following). A WeChat already bound to another household is not moved silently: the
village cadre does that.

:func:`bind_user` is the one use case both channels call (the mini-program binds by the same
token, or by name + ID number; ``handlers.miniprogram_household``); each channel words the outcome.
"""

from __future__ import annotations

from storage import session_scope
from storage.audit import audit
from storage.households import get_household, household_by_token
from storage.models import Household, WeChatUser
from storage.people import bind_household, get_or_create_wechat_user, set_subscribed
from storage.regions import get_region

from . import chat_texts as T
from .chat_types import Chatter, Inbound
from .context import Context

SCENE_PREFIX = "hh:"

#: Outcomes of :func:`bind_user`.
BOUND, ALREADY, OTHER = "bound", "already", "other"


def bind_user(session, user: WeChatUser, household: Household, *, action: str, actor_name: str, detail: str,
              ip: str = "") -> str:
    """Bind ``user`` to ``household`` and audit it: ``BOUND``; ``ALREADY`` when it is bound to it;
    ``OTHER`` when it is bound to another household, which is left as it is (the cadre moves it)."""
    if user.household_id == household.id:
        return ALREADY
    if user.household_id is not None:
        return OTHER
    bind_household(session, user, household)
    audit(session, action=action, actor_name=actor_name, target=f"household:{household.id}", detail=detail,
          ip=ip)
    return BOUND


def village_and_head(session, household_id: int | None) -> dict[str, str]:
    """``{"village", "head"}`` of a household, as the binding messages of both channels name it."""
    household = get_household(session, household_id)
    village = get_region(session, household.village_id) if household else None
    return {"village": village.name if village else "", "head": household.head_name if household else ""}


def bind_scene(ctx: Context, openid: str, scene: str) -> str | None:
    """Bind ``openid`` to the household of ``scene``; the reply, or None for a scene that is not
    a household code (e.g. a poster's code)."""
    if not scene.startswith(SCENE_PREFIX):
        return None
    token = scene[len(SCENE_PREFIX):]
    with session_scope(ctx.engine) as session:
        household = household_by_token(session, token)
        if household is None:
            return T.BAD_CODE
        names = village_and_head(session, household.id)
        user = get_or_create_wechat_user(session, openid=openid, app="oa")
        outcome = bind_user(session, user, household, action="wechat_bind", actor_name=T.AUDIT_ACTOR,
                            detail=T.AUDIT_BIND.format(user=user.id, head=household.head_name))
        if outcome == ALREADY:
            return T.ALREADY_BOUND.format(**names)
        if outcome == OTHER:
            return T.BOUND_OTHER.format(**village_and_head(session, user.household_id))
        if not user.subscribed:
            set_subscribed(session, user, True)
        return T.BOUND.format(**names)


def on_subscribe(ctx: Context, msg: Inbound, who: Chatter) -> str:
    """Follow: welcome, and bind when the follow came from a household code."""
    with session_scope(ctx.engine) as session:
        user = get_or_create_wechat_user(session, openid=msg.openid, app="oa")
        if not user.subscribed:
            set_subscribed(session, user, True)
    bound = bind_scene(ctx, msg.openid, msg.scene) if msg.scene else None
    if bound:
        return bound + "\n" + T.WELCOME
    if who.household_id and who.name:
        return T.WELCOME_BACK.format(name=who.name)
    return T.WELCOME


def on_scan(ctx: Context, msg: Inbound, who: Chatter) -> str:
    """A follower scanned a code."""
    return bind_scene(ctx, msg.openid, msg.scene) or T.HELP


def on_unsubscribe(ctx: Context, msg: Inbound, who: Chatter) -> None:
    """Unfollow: remember it (customer-service messages would fail) and answer nothing."""
    with session_scope(ctx.engine) as session:
        user = get_or_create_wechat_user(session, openid=msg.openid, app="oa")
        set_subscribed(session, user, False)
    return None
