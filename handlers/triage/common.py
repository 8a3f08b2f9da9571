"""What the case page, the procedure and the staff queue share: who may do what, the words for a
code, personal data as a staff member sees it, and the version a form carries."""

from __future__ import annotations

import datetime as dt

from storage.crypto import DataKeyError
from storage.models import Case

from .. import triage_texts as T
from ..context import Context

#: Who may complete each step of the procedure (village cadres visit and post the notice, the
#: township checks data and reviews, the county decides).
STEP_ROLES: dict[str, frozenset[str]] = {
    "warning": frozenset({"village", "township"}),
    "visit": frozenset({"village"}),
    "consent": frozenset({"village"}),
    "data_check": frozenset({"township"}),
    "review": frozenset({"village"}),
    "notice": frozenset({"village"}),
    "township": frozenset({"township"}),
    "county": frozenset({"county"}),
}

#: Who may do the other actions.
ACTION_ROLES: dict[str, frozenset[str]] = {
    "decide": frozenset({"county"}),
    "merge": frozenset({"township", "county"}),
    "dismiss_duplicate": frozenset({"township", "county"}),
    "first_aid": frozenset({"township", "county"}),
    "assistance": frozenset({"village", "township", "county"}),
    "clear_risk": frozenset({"county"}),
    "mark_urgent": frozenset({"village", "township", "county"}),
    "link_household": frozenset({"village", "township"}),
    "assign": frozenset({"village", "township", "county"}),
    "note": frozenset({"village", "township", "county"}),
    "reveal": frozenset({"village", "township", "county"}),
    "export_unmasked": frozenset({"county"}),
}


def label(enum, value: str | None) -> str:
    """The Chinese label of a stored code, the code itself when the enum does not know it."""
    if not value:
        return ""
    try:
        return enum.parse(value).label
    except ValueError:
        return value


def version_of(case: Case) -> str:
    """What a form carries to prove it was built from the case as it is now."""
    return case.updated_at.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S%f")


def decrypt_shown(ctx: Context, token: str | None) -> str | None:
    """A stored value in clear, or a marker when it cannot be read (wrong data key): never a 500."""
    if not token:
        return None
    try:
        return ctx.cipher.decrypt(token)
    except DataKeyError:
        return T.UNREADABLE


def masked(mask, value: str | None) -> str:
    """``value`` masked with ``mask``; the unreadable marker stays as it is."""
    return value if value == T.UNREADABLE else mask(value)
