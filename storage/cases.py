"""Cases, their timeline and evidence. (The inbound-message dedupe table: ``storage.inbound``.)"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import Integer, bindparam, literal, union_all, update
from sqlalchemy.engine import Connection
from sqlmodel import Session, SQLModel, select

from .db import insert_rows, one_of
from .models import Attachment, Case, CaseEvent, Household, WeChatUser, utcnow
from .refs import take_refs

OPEN = Case.closed_at.is_(None)  # type: ignore[union-attr]


class CaseCreate(SQLModel):
    """A case to file: every field of the row a channel decides, and who filed it (the actor of its
    ``created`` event). ``inbound_key`` is the channel's idempotency key."""

    channel: str
    inbound_key: str | None = None
    household_id: int | None = None
    reporter_id: int | None = None
    reporter_name: str = ""
    reporter_phone_enc: str | None = None
    reporter_phone_idx: str | None = None
    reporter_id_number_enc: str | None = None
    village_id: int
    region_path: str
    risk_types: list[str] = []
    description: str = ""
    urgent: bool = False
    urgent_reasons: str = ""
    step: str = "warning"
    due_at: dt.datetime | None = None
    actor_kind: str = "villager"
    actor_id: int | None = None
    actor_name: str = ""


class CaseFiled(NamedTuple):
    """A filed case as its channel acknowledges it: new (``created``), or found by
    :func:`filed_before` (``created`` False)."""

    id: int
    ref: str
    created: bool
    urgent: bool
    due_at: dt.datetime | None
    risk_types: list[str]
    description: str
    village_id: int | None
    urgent_reasons: str
    possible_duplicate_of_id: int | None


_case = Case.__table__
_FILED = (_case.c.id, _case.c.ref, _case.c.urgent, _case.c.due_at, _case.c.risk_types, _case.c.description,
          _case.c.village_id, _case.c.urgent_reasons, _case.c.possible_duplicate_of_id, _case.c.inbound_key)
_CREATE_FIELDS = frozenset(CaseCreate.model_fields) - {"actor_kind", "actor_id", "actor_name"}

# The statements of :func:`file_cases`, built once per database: building a statement costs more
# CPU than running it (SQLAlchemy caches the compiled form by the statement's shape).
_SET_DUPLICATE = update(_case).where(_case.c.id == bindparam("b_id")).values(possible_duplicate_of_id=bindparam("b_dup"))


class _Statements(NamedTuple):
    filed_before: Any
    lock: dict[str, Any]
    owned: dict[tuple[bool, bool], Any]


@functools.cache
def _statements(dialect: str) -> _Statements:
    def owned(kind: str, owner, param: str):
        return select(literal(kind).label("kind"), owner.label("owner"), _case.c.created_at, _case.c.id,
                      _case.c.closed_at).where(one_of(owner, param, dialect, Integer()))

    h, r = owned("h", _case.c.household_id, "hs"), owned("r", _case.c.reporter_id, "rs")
    return _Statements(
        filed_before=select(*_FILED).where(_case.c.inbound_key == bindparam("key")),
        lock={t.name: select(t.c.id).where(one_of(t.c.id, "ids", dialect, Integer())).order_by(t.c.id)
              .with_for_update() for t in (Household.__table__, WeChatUser.__table__)},
        owned={(True, False): h, (False, True): r, (True, True): union_all(h, r)},
    )


def file_cases(conn: Connection, cases: Sequence[CaseCreate], *, now: dt.datetime | None = None) -> list[CaseFiled]:
    """File ``cases`` in ``conn``'s transaction, with their ``created`` events; one statement per
    table for the whole batch. The caller commits.

    A case whose ``inbound_key`` was filed before (a retry, a copy racing in another transaction,
    the same key twice in the batch) is refused by the unique constraint: ``IntegrityError``, the
    whole transaction rolls back, and :func:`filed_before` finds the earlier case.

    Decided here, inside the transaction, so that two taps a second apart (or two workers) cannot
    both miss what the other wrote:

    - a case of a household or reporter with an open case is flagged as its possible duplicate
      (``possible_duplicate_of_id``: the newest open one, an earlier case of this batch included).
      On PostgreSQL the owners' rows are locked first (the household, or the reporter who has
      none), so concurrent batches take turns per owner; SQLite's transactions take turns anyway.

    References are consecutive and gap-free (:func:`storage.refs.take_refs`).
    """
    now = now or utcnow()
    if not cases:
        return []
    dups = _possible_duplicates(conn, cases)
    refs = take_refs(conn, now, len(cases))
    rows = [_row(c, ref, dup, now) for c, ref, dup in zip(cases, refs, dups, strict=True)]
    by_ref = insert_rows(conn, _case, rows, key="ref", returning=("id",))
    ids = [by_ref[ref][0] for ref in refs]
    insert_rows(conn, CaseEvent.__table__, [
        {"case_id": case_id, "at": now, "actor_kind": c.actor_kind, "actor_id": c.actor_id,
         "actor_name": c.actor_name, "action": "created", "step": c.step, "note": "",
         "data": {"channel": c.channel, "urgent": c.urgent}}
        for case_id, c in zip(ids, cases, strict=True)
    ])
    dups = _within_batch(conn, cases, ids, dups)
    return [CaseFiled(case_id, ref, True, c.urgent, c.due_at, list(c.risk_types), c.description, c.village_id,
                      c.urgent_reasons, dup) for c, case_id, ref, dup in zip(cases, ids, refs, dups, strict=True)]


def filed_before(conn: Connection, inbound_key: str) -> CaseFiled | None:
    """The case filed under ``inbound_key``, if any (``created`` False)."""
    r = conn.execute(_statements(conn.dialect.name).filed_before, {"key": inbound_key}).first()
    if r is None:
        return None
    return CaseFiled(r.id, r.ref, False, r.urgent, r.due_at, list(r.risk_types), r.description, r.village_id,
                     r.urgent_reasons, r.possible_duplicate_of_id)


def _possible_duplicates(conn: Connection, cases: Sequence[CaseCreate]) -> list[int | None]:
    """The newest open case of each case's household or reporter, as :func:`open_case_for` finds it."""
    households = sorted({c.household_id for c in cases if c.household_id is not None})
    reporters = sorted({c.reporter_id for c in cases if c.reporter_id is not None})
    if conn.dialect.name != "sqlite":  # take turns per owner (SQLite's transactions take turns anyway)
        alone = sorted({c.reporter_id for c in cases if c.household_id is None and c.reporter_id is not None})
        for table, ids in (("household", households), ("wechatuser", alone)):
            if ids:
                conn.execute(_statements(conn.dialect.name).lock[table], {"ids": ids})
    newest: dict[tuple[str, int], tuple[dt.datetime, int]] = {}
    if households or reporters:
        stmt = _statements(conn.dialect.name).owned[bool(households), bool(reporters)]
        for kind, owner, at, case_id, closed_at in conn.execute(stmt, {"hs": households, "rs": reporters}):
            key = (kind, owner)
            if closed_at is not None:
                continue
            if key not in newest or (at, case_id) > newest[key]:
                newest[key] = (at, case_id)
    found = []
    for c in cases:
        mine = [newest[k] for k in (("h", c.household_id), ("r", c.reporter_id)) if k in newest]
        found.append(max(mine)[1] if mine else None)
    return found


def open_cases_of(households: Sequence[int], reporters: Sequence[int]):
    """The cases of ``households`` and ``reporters``: ``(kind "h" or "r", owner id, created_at, id,
    closed_at)``, each owner column through its own index. Open or closed: with ``closed_at IS
    NULL`` in the statement SQLite walks every open case instead (the open-queue index), where a
    household or reporter has only a few cases to look at. (The statement :func:`file_cases` runs,
    with its values, in SQLite's words.)"""
    stmt = _statements("sqlite").owned[bool(households), bool(reporters)]
    return stmt.params(hs=list(households), rs=list(reporters))


def _within_batch(conn: Connection, cases: Sequence[CaseCreate], ids: Sequence[int],
                  dups: list[int | None]) -> list[int | None]:
    """A second case of one household or reporter in the same batch is a possible duplicate of the
    first (newer than any open case found before the batch)."""
    last: dict[tuple[str, int], int] = {}
    changed = []
    dups = list(dups)
    for k, (c, case_id) in enumerate(zip(cases, ids, strict=True)):
        owners = [o for o in (("h", c.household_id), ("r", c.reporter_id)) if o[1] is not None]
        before = [last[o] for o in owners if o in last]
        if before:
            dups[k] = max(before)
            changed.append({"b_id": case_id, "b_dup": dups[k]})
        for o in owners:
            last[o] = case_id
    if changed:
        conn.execute(_SET_DUPLICATE, changed)
    return dups


def _row(c: CaseCreate, ref: str, dup: int | None, now: dt.datetime) -> dict[str, Any]:
    row = {k: getattr(c, k) for k in _CREATE_FIELDS}
    row.update(ref=ref, risk_types=list(c.risk_types), risk_codes=_codes(c.risk_types), possible_duplicate_of_id=dup,
               created_at=now, updated_at=now, step_started_at=now)
    return row


def _codes(risk_types: Sequence[str]) -> str:
    return "," + "".join(f"{c}," for c in risk_types)


def set_risk_types(session: Session, case: Case, risk_types: Sequence[str]) -> None:
    case.risk_types = list(risk_types)
    case.risk_codes = _codes(risk_types)
    case.updated_at = utcnow()
    session.add(case)


def get_case(session: Session, case_id: int | None) -> Case | None:
    return session.get(Case, case_id) if case_id is not None else None


def case_by_ref(session: Session, ref: str) -> Case | None:
    return session.exec(select(Case).where(Case.ref == ref.strip().upper())).first()


def cases_for_reporter(
    session: Session, *, reporter_id: int | None = None, household_id: int | None = None, limit: int = 10
) -> list[Case]:
    found: dict[int, Case] = {}
    for cond in _owner_conditions(household_id, reporter_id):
        stmt = select(Case).where(cond).order_by(Case.created_at.desc(), Case.id.desc()).limit(limit)
        found.update((c.id, c) for c in session.exec(stmt))
    return sorted(found.values(), key=_newest_first)[:limit]


def _owner_conditions(household_id: int | None, reporter_id: int | None) -> list:
    """One condition per owner column, each queried on its own: with ``household_id = ? OR
    reporter_id = ?`` SQLite walks the whole open-queue index instead (a scan of every open case
    per report, measured growing with the table), while each half alone is an index lookup."""
    conds = []
    if household_id is not None:
        conds.append(Case.household_id == household_id)
    if reporter_id is not None:
        conds.append(Case.reporter_id == reporter_id)
    return conds


def _newest_first(case: Case) -> tuple:
    return (-case.created_at.timestamp(), -(case.id or 0))


def open_case_for(
    session: Session, *, household_id: int | None = None, reporter_id: int | None = None,
    exclude_id: int | None = None,
) -> Case | None:
    """The newest open case of a household (or reporter), e.g. to attach evidence or flag a duplicate."""
    found = []
    for cond in _owner_conditions(household_id, reporter_id):
        stmt = select(Case).where(cond, OPEN)
        if exclude_id is not None:
            stmt = stmt.where(Case.id != exclude_id)
        case = session.exec(stmt.order_by(Case.created_at.desc(), Case.id.desc()).limit(1)).first()
        if case is not None:
            found.append(case)
    return min(found, key=_newest_first, default=None)


def add_event(
    session: Session,
    case: Case,
    *,
    action: str,
    actor_kind: str,
    actor_id: int | None = None,
    actor_name: str = "",
    step: str | None = None,
    note: str = "",
    data: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
) -> CaseEvent:
    event = CaseEvent(
        case_id=case.id,
        at=now or utcnow(),
        actor_kind=actor_kind,
        actor_id=actor_id,
        actor_name=actor_name,
        action=action,
        step=step,
        note=note,
        data=data or {},
    )
    session.add(event)
    case.updated_at = event.at
    session.add(case)
    session.flush()
    return event


def events_of(session: Session, case_id: int) -> list[CaseEvent]:
    return list(session.exec(select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.at, CaseEvent.id)))


def add_attachment(session: Session, case: Case, **fields: Any) -> Attachment:
    att = Attachment(case_id=case.id, **fields)
    session.add(att)
    session.flush()
    return att


def attachments_of(session: Session, case_id: int) -> list[Attachment]:
    return list(session.exec(select(Attachment).where(Attachment.case_id == case_id).order_by(Attachment.id)))


def attachment_by_path(session: Session, *, case_id: int, path: str) -> Attachment | None:
    stmt = select(Attachment).where(Attachment.case_id == case_id, Attachment.path == path)
    return session.exec(stmt).first()


def count_attachments(session: Session, case_id: int, *, kind: str | None = None) -> int:
    stmt = select(Attachment.id).where(Attachment.case_id == case_id)
    if kind:
        stmt = stmt.where(Attachment.kind == kind)
    return len(session.exec(stmt).all())


def case_in_scope(session: Session, case_id: int, region_path: str, *, for_update: bool = False) -> Case | None:
    """The case if it lies below ``region_path``; None otherwise (whether it exists or not)."""
    stmt = select(Case).where(Case.id == case_id, Case.region_path.like(region_path + "%"))
    if for_update and session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return session.exec(stmt).first()


def case_by_ref_in_scope(session: Session, ref: str, region_path: str) -> Case | None:
    stmt = select(Case).where(Case.ref == ref.strip().upper(), Case.region_path.like(region_path + "%"))
    return session.exec(stmt).first()


def update_case(session: Session, case: Case, *, now: dt.datetime | None = None, **fields: Any) -> Case:
    for key, value in fields.items():
        if not hasattr(case, key):
            raise AttributeError(key)
        setattr(case, key, value)
    case.updated_at = now or utcnow()
    session.add(case)
    session.flush()
    return case


def events_with_action(session: Session, case_id: int, action: str) -> list[CaseEvent]:
    stmt = select(CaseEvent).where(CaseEvent.case_id == case_id, CaseEvent.action == action).order_by(CaseEvent.id)
    return list(session.exec(stmt))


def open_cases_of_household(session: Session, household_id: int, *, exclude_id: int | None = None) -> list[Case]:
    stmt = select(Case).where(Case.household_id == household_id, Case.closed_at.is_(None))
    if exclude_id is not None:
        stmt = stmt.where(Case.id != exclude_id)
    return list(session.exec(stmt.order_by(Case.id)))


def cases_merged_into(session: Session, case_id: int) -> list[Case]:
    return list(session.exec(select(Case).where(Case.merged_into_id == case_id).order_by(Case.id)))


def append_description(session: Session, case: Case, text: str, *, max_chars: int) -> Case:
    """Add one chat turn to the case's description (kept within ``max_chars``)."""
    text = text.strip()
    if not text:
        return case
    joined = f"{case.description}\n{text}" if case.description else text
    case.description = joined[:max_chars]
    case.updated_at = utcnow()
    session.add(case)
    session.flush()
    return case


def set_reporter_phone(session: Session, case: Case, *, phone_enc: str | None, phone_idx: str | None) -> None:
    case.reporter_phone_enc = phone_enc
    case.reporter_phone_idx = phone_idx
    session.add(case)
    session.flush()


def mark_urgent(session: Session, case: Case, reasons: str) -> Case:
    """Move a case to the green channel (绿色通道) after its description showed sudden hardship."""
    case.urgent = True
    case.urgent_reasons = "；".join(x for x in (case.urgent_reasons, reasons) if x)[:500]
    case.updated_at = utcnow()
    session.add(case)
    session.flush()
    return case
