"""一户一码: a printable sheet of a village's households, each with its WeChat QR code.

The QR content (WeChat's ``url`` for a permanent parametric code carrying the household's bind
token) comes from a ``source`` callable the edge supplies (the WeChat API client lives in
``bot``); it is cached in ``ctx.kv`` because a permanent code never changes. Rendering the image
is the edge's job and needs no network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from storage import session_scope
from storage.audit import audit
from storage.enums import HouseholdCategory
from storage.households import households_in_villages
from storage.regions import region_in_scope, region_label, villages_under

from . import triage_texts as T
from .context import Context
from .errors import NotFound, ValidationError
from .staff import Actor

CACHE_PREFIX = "qr:household:"


class QRUnavailable(Exception):
    """The WeChat API could not give a QR code (not configured, down, or an error code)."""


@dataclass
class HouseholdCode:
    id: int
    head_name: str
    address: str
    members: int
    category: str
    content: str | None = None
    error: str = ""


@dataclass
class CodeSheet:
    village_id: int
    village_label: str
    codes: list[HouseholdCode] = field(default_factory=list)
    error: str = ""


def villages_in_scope(ctx: Context, actor: Actor) -> list[tuple[int, str, int]]:
    """(id, full name, households) of every village the actor can print codes for."""
    with session_scope(ctx.engine) as session:
        return [(v.id, region_label(session, v), len(households_in_villages(session, [v.id])))
                for v in villages_under(session, actor.region_path)]


def household_codes(
    ctx: Context, actor: Actor, village_id: int, source: Callable[[str], str] | None, *, ip: str = ""
) -> CodeSheet:
    """The sheet for one village in the actor's scope; audited. ``source(bind_token)`` → QR content."""
    with session_scope(ctx.engine) as session:
        village = region_in_scope(session, village_id, actor.region_path)
        if village is None:
            raise NotFound(T.VILLAGE_NOT_FOUND)
        if village.level != "village":
            raise ValidationError(T.NOT_A_VILLAGE, field="village")
        sheet = CodeSheet(village_id=village.id, village_label=region_label(session, village))
        homes = households_in_villages(session, [village.id])
        audit(session, action="print_codes", actor_id=actor.id, actor_name=actor.username,
              target=sheet.village_label[:128], detail=T.AUDIT_CODES.format(n=len(homes)), ip=ip)
        tokens: dict[int, str] = {}
        for h in homes:
            try:
                category = HouseholdCategory.parse(h.category).label
            except ValueError:
                category = h.category
            sheet.codes.append(HouseholdCode(h.id, h.head_name, h.address or h.group_name, h.members, category))
            tokens[h.id] = h.bind_token or ""
    if source is None:
        sheet.error = T.QR_NOT_CONFIGURED
        return sheet
    failure = ""
    for code in sheet.codes:
        token = tokens[code.id]
        if not token:
            code.error = T.QR_NO_TOKEN
            continue
        cached = ctx.kv.get(CACHE_PREFIX + token)
        if cached:
            code.content = cached
            continue
        if failure:  # WeChat is failing: do not hammer it once per household
            code.error = failure
            continue
        try:
            code.content = source(token)
        except QRUnavailable as exc:
            failure = T.QR_UNAVAILABLE.format(reason=str(exc)[:100])
            code.error = failure
            continue
        ctx.kv.set(CACHE_PREFIX + token, code.content)
    sheet.error = failure
    return sheet
