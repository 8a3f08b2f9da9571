"""The mini-program user's household: reading it (masked) and binding it.

Binding is :func:`handlers.binding.bind_user`, the use case the official account's QR-code scan
calls too; this module finds the household (by the QR code's token, or by name + ID number) and
turns the outcome into the API's answer or error.
"""

from __future__ import annotations

import hmac

from storage import session_scope
from storage.crypto import mask_id_number, mask_phone
from storage.enums import HouseholdCategory
from storage.households import get_household, household_by_token, households_in_villages
from storage.models import Household
from storage.people import wechat_user
from storage.regions import ancestors, find_region, get_region

from . import miniprogram_models as M
from . import miniprogram_texts as T
from .binding import OTHER, bind_user, village_and_head
from .context import Context
from .errors import Conflict, NotFound, Unauthorized


def household_view(ctx: Context, session, hh: Household) -> M.Household:
    village = get_region(session, hh.village_id)
    chain = ancestors(session, village) if village else []
    by_level = {r.level: r.name for r in chain}
    try:
        category_label = HouseholdCategory.parse(hh.category).label
    except ValueError:
        category_label = ""
    return M.Household(
        id=hh.id, head_name=hh.head_name, village_id=hh.village_id, village=by_level.get("village", ""),
        township=by_level.get("township", ""), county=by_level.get("county", ""),
        region="".join(r.name for r in chain if r.level in {"county", "township", "village"}),
        group_name=hh.group_name, address=hh.address, category=hh.category, category_label=category_label,
        members=hh.members, id_number_masked=mask_id_number(ctx.cipher.decrypt(hh.id_number_enc)),
        phone_masked=mask_phone(ctx.cipher.decrypt(hh.phone_enc)),
    )


def my_household(ctx: Context, user_id: int) -> M.Household | None:
    with session_scope(ctx.engine) as session:
        user = wechat_user(session, user_id)
        if user is None or user.household_id is None:
            return None
        hh = get_household(session, user.household_id)
        return household_view(ctx, session, hh) if hh else None


def bind_by_token(ctx: Context, *, user_id: int, token: str, ip: str = "") -> M.Household:
    """Bind by the token behind the household's QR code (一户一码)."""
    with session_scope(ctx.engine) as session:
        hh = household_by_token(session, token.strip())
        if hh is None:
            raise NotFound(T.BIND_TOKEN_NOT_FOUND, field="token", code="no_match")
        return _bind(ctx, session, user_id, hh, how="token", ip=ip)


def bind_by_identity(
    ctx: Context, *, user_id: int, name: str, id_last6: str, village_id: int | None = None,
    village: str | None = None, ip: str = "",
) -> M.Household:
    """Bind by head-of-household name, the last 6 characters of the ID number and the village.

    Every household of the village is decrypted and compared in constant time (no early exit),
    so the response time does not tell whether the name alone matched.
    """
    want_name = "".join(name.split()).encode("utf-8")
    want_tail = id_last6.strip().upper().encode("ascii", "replace")
    with session_scope(ctx.engine) as session:
        if village_id is not None:
            v = get_region(session, village_id)
            villages = [v] if v is not None and v.level == "village" else []
        else:
            villages = find_region(session, (village or "").strip(), level="village")
        if not villages:
            raise NotFound(T.VILLAGE_NOT_FOUND, field="village_id" if village_id is not None else "village",
                           code="village_not_found")
        matches = []
        for hh in households_in_villages(session, [v.id for v in villages]):
            idn = (ctx.cipher.decrypt(hh.id_number_enc) or "").upper()
            tail = idn[-6:].encode("ascii", "replace") if len(idn) >= 6 else b"\x00" * 6
            same_name = hmac.compare_digest("".join(hh.head_name.split()).encode("utf-8"), want_name)
            same_tail = hmac.compare_digest(tail, want_tail)
            if same_name & same_tail:
                matches.append(hh)
        if not matches:
            raise NotFound(T.BIND_NO_MATCH, code="no_match")
        if len(matches) > 1:
            raise Conflict(T.BIND_AMBIGUOUS, code="ambiguous")
        return _bind(ctx, session, user_id, matches[0], how="identity", ip=ip)


def _bind(ctx: Context, session, user_id: int, hh: Household, *, how: str, ip: str) -> M.Household:
    user = wechat_user(session, user_id)
    if user is None:
        raise Unauthorized(T.TOKEN_INVALID, code="invalid_token")
    outcome = bind_user(session, user, hh, action="mp_bind", actor_name=f"wechatuser:{user.id}",
                        detail=f"by {how}", ip=ip)
    if outcome == OTHER:
        # The same rule as the official account: a bound WeChat is not moved silently.
        raise Conflict(T.BIND_OTHER.format(**village_and_head(session, user.household_id)), code="already_bound")
    return household_view(ctx, session, hh)
