"""A posted case-page form (plain strings) turned into the call of its use case."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from .. import triage_texts as T
from ..context import Context
from ..errors import ValidationError
from ..evidence import Upload
from ..staff import Actor
from .actions import (
    add_note,
    assign,
    dismiss_duplicate,
    first_aid,
    link_household,
    mark_urgent,
    record_assistance,
)
from .files import MAX_UPLOAD_BYTES
from .forms import field, listed
from .guards import Result
from .procedure import advance, clear_risk, decide, merge


def act(
    ctx: Context, actor: Actor, case_id: int, action: str, form: dict[str, Any], *, upload: Upload | None = None,
    upload_root: Path | None = None, max_upload_bytes: int = MAX_UPLOAD_BYTES, ip: str = "",
    now: dt.datetime | None = None,
) -> Result:
    """Dispatch a posted case-page form to its use case; ``upload_root`` is where evidence files go."""
    common = {"version": field(form, "version"), "ip": ip, "now": now}
    note = field(form, "note")
    if action == "advance":
        return advance(ctx, actor, case_id, step=field(form, "step"), note=note, evidence=field(form, "evidence"),
                       upload=upload, upload_root=upload_root, max_upload_bytes=max_upload_bytes, **common)
    if action == "decide":
        return decide(ctx, actor, case_id, outcome=field(form, "outcome"),
                      monitoring_type=field(form, "monitoring_type"), reason=field(form, "reason"),
                      merge_into=field(form, "merge_into"), note=note, **common)
    if action == "merge":
        into = field(form, "into_id")
        return merge(ctx, actor, case_id, into_ref=field(form, "merge_into"),
                     into_id=int(into) if into.isdigit() else None, note=note, **common)
    if action == "dismiss_duplicate":
        return dismiss_duplicate(ctx, actor, case_id, note=note, **common)
    if action == "first_aid":
        return first_aid(ctx, actor, case_id, kind=field(form, "kind"), amount=field(form, "amount"), note=note,
                         **common)
    if action == "assistance":
        return record_assistance(ctx, actor, case_id, kind=field(form, "kind"), amount=field(form, "amount"),
                                 note=note, **common)
    if action == "clear_risk":
        return clear_risk(ctx, actor, case_id, conditions=listed(form, "conditions"), note=note, **common)
    if action == "mark_urgent":
        return mark_urgent(ctx, actor, case_id, reason=field(form, "reason"), **common)
    if action == "link_household":
        return link_household(ctx, actor, case_id, household_id=field(form, "household_id"), **common)
    if action == "assign":
        return assign(ctx, actor, case_id, staff_id=field(form, "staff_id"), **common)
    if action == "note":
        return add_note(ctx, actor, case_id, note=note, **common)
    raise ValidationError(T.BAD_ACTION, field="action")
