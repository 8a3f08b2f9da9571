"""Triage: the official procedure and everything staff do to a case, room by room.

- ``view``: the case page's read model (what one case shows one staff member, and the actions offered);
- ``procedure``: the state machine (completing steps, the county's decision, merging, 风险消除);
- ``actions``: the other changes (先行救助, 帮扶, green channel, linking, assigning, notes);
- ``forms``: checking posted fields; ``dispatch``: a posted form to its use case;
- ``notify``: who is told what (through the outbox, in the change's transaction);
- ``files``: evidence files posted on the console and opening stored ones;
- ``clauses``: policy clauses beside a case; ``guards``: the checks every change makes;
- ``common``: roles, labels and masking, shared with the staff queue (``handlers.queue``).

The console and the tests use the names re-exported here.
"""

from __future__ import annotations

from ..evidence import Upload
from .actions import (
    add_note,
    assign,
    dismiss_duplicate,
    first_aid,
    link_household,
    mark_urgent,
    record_assistance,
)
from .clauses import RISK_TERMS, Clause
from .common import ACTION_ROLES, STEP_ROLES, version_of
from .dispatch import act
from .files import EVIDENCE_KINDS, MAX_UPLOAD_BYTES, attachment_file
from .forms import MAX_AMOUNT, MAX_EVIDENCE, MAX_NOTE, MAX_REASON
from .guards import Result
from .notify import notify_township, notify_villager
from .procedure import CLEAR_CONDITION_KEYS, advance, clear_risk, decide, merge
from .view import ActionSpec, CaseView, PersonView, TimelineItem, allowed_actions, case_view

__all__ = [
    "ACTION_ROLES", "CLEAR_CONDITION_KEYS", "EVIDENCE_KINDS", "MAX_AMOUNT", "MAX_EVIDENCE", "MAX_NOTE",
    "MAX_REASON", "MAX_UPLOAD_BYTES", "RISK_TERMS", "STEP_ROLES", "ActionSpec", "CaseView", "Clause",
    "PersonView", "Result", "TimelineItem", "Upload", "act", "add_note", "advance", "allowed_actions", "assign",
    "attachment_file", "case_view", "clear_risk", "decide", "dismiss_duplicate", "first_aid", "link_household",
    "mark_urgent", "merge", "notify_township", "notify_villager", "record_assistance", "version_of",
]
