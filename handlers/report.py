"""The intake use case: one report of hardship, from any channel, lands once in the queue.

``submit`` validates everything before it writes, creates the case idempotently on the
channel's inbound key, commits, and only then returns the acknowledgement (reference number
and what to ask next). ``progress`` lists a reporter's cases with step and deadline.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from storage import Connection, IntegrityError, Session, session_on, session_scope
from storage.cases import CaseCreate, CaseFiled, cases_for_reporter, file_cases, filed_before
from storage.db import reading, writing
from storage.enums import Channel, ProcedureStep, RiskType
from storage.households import HouseholdPlace, households_by_id
from storage.models import Case, Region, utcnow
from storage.outbox import enqueue
from storage.people import staff_in_region
from storage.regions import Village, deadline_rules, nearest_rule, path_ids, regions_by_ids, villages_by_id

from . import texts
from .context import Context
from .deadlines import DEFAULT_STEP_DAYS, is_overdue
from .errors import HandlerError, NotFound, ValidationError
from .pii import find_pii, mask_pii
from .understanding import classify

PHONE_RE = re.compile(r"^1[3-9]\d{9}$")
MAX_NAME = 32


@dataclass
class ReportInput:
    """What a channel knows about a report. Either ``household_id`` or ``village_id`` must be set."""

    channel: str
    inbound_key: str | None = None
    household_id: int | None = None
    reporter_id: int | None = None
    reporter_name: str = ""
    reporter_phone: str | None = None
    reporter_id_number: str | None = None
    village_id: int | None = None
    risk_types: list[str] = field(default_factory=list)
    description: str = ""
    #: None → decided from the description by the understanding module.
    urgent: bool | None = None
    urgent_reasons: list[str] = field(default_factory=list)
    actor_name: str = ""


@dataclass
class Ack:
    ref: str
    case_id: int
    created: bool
    urgent: bool
    due_at: dt.datetime | None
    risk_types: list[str]
    next_questions: list[str]
    message: str


def _validate(ctx: Context, data: ReportInput) -> tuple[str, list[str], str]:
    try:
        channel = Channel.parse(data.channel).value
    except ValueError as exc:
        raise ValidationError("申报渠道不正确", field="channel") from exc
    if not isinstance(data.risk_types, list | tuple):
        raise ValidationError("困难类型格式不正确", field="risk_types")
    risks: list[str] = []
    for r in data.risk_types:
        try:
            code = RiskType.parse(str(r)).value
        except ValueError as exc:
            raise ValidationError(f"未知的困难类型：{str(r)[:20]}", field="risk_types") from exc
        if code not in risks:
            risks.append(code)
    description = (data.description or "").strip()
    if len(description) > ctx.max_description_chars:
        raise ValidationError(
            f"情况说明太长了（最多 {ctx.max_description_chars} 字），请分几次发送", field="description"
        )
    if len(data.reporter_name or "") > MAX_NAME:
        raise ValidationError("姓名太长了", field="reporter_name")
    if data.reporter_phone and not PHONE_RE.match(data.reporter_phone):
        raise ValidationError("手机号码格式不正确，请填写11位手机号", field="reporter_phone")
    if data.household_id is None and data.village_id is None:
        raise ValidationError("请先绑定户码，或告诉我们您是哪个村的", field="village_id")
    return channel, risks, description


def _understand(description: str):
    return classify(description)


@dataclass
class _Ready:
    """A validated report, understood, before the database is asked anything."""

    data: ReportInput
    channel: str
    risks: list[str]
    description: str
    urgent: bool
    reasons: list[str]
    phone: str | None
    id_number: str | None


def _prepare(ctx: Context, data: ReportInput) -> _Ready:
    channel, risks, description = _validate(ctx, data)
    urgent = data.urgent
    reasons = list(data.urgent_reasons)
    pii_id, pii_phone = None, None
    if description:
        found = find_pii(description)
        pii_id = found.id_numbers[0] if found.id_numbers else None
        pii_phone = found.phones[0] if found.phones else None
        understanding = _understand(description) if (urgent is None or not risks) else None
        description = mask_pii(description)
        if understanding is not None:
            if urgent is None:
                urgent = understanding.urgent
                reasons += list(understanding.reasons) if understanding.urgent else []
            if not risks:
                risks = [str(getattr(r, "value", r)) for r in understanding.risk_types]
    return _Ready(data, channel, risks, description, bool(urgent), reasons,
                  data.reporter_phone or pii_phone, data.reporter_id_number or pii_id)


#: What a channel may write with the reports, in their transaction: called with the connection
#: and each report's outcome (an :class:`Ack`, or the error that refused it).
Record = Callable[[Connection, list["Ack | HandlerError"]], None]


def file(ctx: Context, reports: Sequence[ReportInput], *, now: dt.datetime | None = None,
         record: Record | None = None, conn: Connection | None = None,
         households: dict[int, HouseholdPlace] | None = None) -> list[Ack | HandlerError]:
    """File ``reports`` in one transaction: the one write path of every channel.

    Each report is validated and understood first; one that is refused (bad input, an unknown
    household or village) gets its error in its place and writes nothing, the others are filed
    together (``storage.cases.file_cases``: possible duplicates and references decided inside the
    transaction; the channel's inbound key is unique, so a retry fails the transaction), urgent
    ones queue a notice to the township's staff, ``record`` writes the channel's own rows, and all of it is committed before
    this returns (``conn``: a write transaction of the caller's to work in instead, which the
    caller commits; ``households``: the reports' households with their villages, when the caller
    has just read them). Raises (``IntegrityError`` above all: a copy racing in another transaction)
    when the transaction as a whole cannot be committed: then nothing of it was written.
    """
    now = now or utcnow()
    out: list[Ack | HandlerError | None] = [None] * len(reports)
    ready: dict[int, _Ready] = {}
    for i, data in enumerate(reports):
        try:
            ready[i] = _prepare(ctx, data)
        except HandlerError as exc:
            out[i] = exc
    if conn is not None:
        creates, villages = _plan(ctx, conn, ready, out, now, households)
        _write(conn, creates, villages, out, now, record)
    else:
        # What only reads (the households and villages, the deadline rules) and the work in Python
        # are done before the write transaction: on SQLite every writer of every worker waits
        # while one holds the write lock.
        with reading(ctx.engine) as conn:
            creates, villages = _plan(ctx, conn, ready, out, now, households)
        with writing(ctx.engine) as conn:
            _write(conn, creates, villages, out, now, record)
    return out  # type: ignore[return-value]


def _plan(ctx: Context, conn: Connection, ready: dict[int, _Ready], out: list, now: dt.datetime,
          known: dict[int, HouseholdPlace] | None) -> tuple[list[tuple[int, CaseCreate]], dict[int, Village]]:
    """The cases to file (with their index in ``out``), and the villages they are in; a report
    whose household or village is unknown gets its error in ``out``."""
    wanted = [r.data.household_id for r in ready.values() if r.data.household_id]
    households = dict(known or {})
    households.update(households_by_id(conn, [h for h in wanted if h not in households]))
    villages = {h.village_id: Village(h.village_id, h.village_name, h.village_level, h.village_path)
                for h in households.values()}
    villages.update(villages_by_id(conn, [r.data.village_id for r in ready.values()
                                          if r.data.household_id is None and r.data.village_id is not None]))
    rules = deadline_rules(conn, "warning") if ready else {}
    creates: list[tuple[int, CaseCreate]] = []
    for i, r in ready.items():
        try:
            creates.append((i, _create(ctx, r, households, villages, rules, now)))
        except HandlerError as exc:
            out[i] = exc
    return creates, villages


def _write(conn: Connection, creates: list[tuple[int, CaseCreate]], villages: dict[int, Village], out: list,
           now: dt.datetime, record: Record | None) -> None:
    """The write transaction of :func:`file`."""
    filed = file_cases(conn, [c for _, c in creates], now=now)
    for (i, c), f in zip(creates, filed, strict=True):
        if f.created and f.urgent:
            with session_on(conn) as session:
                notify_urgent(session, case_id=f.id, ref=f.ref, reasons=f.urgent_reasons,
                              village=villages[c.village_id])
        out[i] = _ack(f)
    if record is not None:
        record(conn, out)


def _create(ctx: Context, r: _Ready, households: dict, villages: dict, rules: dict, now: dt.datetime) -> CaseCreate:
    data = r.data
    household = None
    if data.household_id is not None:
        household = households.get(data.household_id)
        if household is None:
            raise NotFound("没有找到这户的信息", field="household_id")
    village = villages.get(household.village_id if household else data.village_id)
    if village is None or village.level != "village":
        raise ValidationError("没有找到这个村，请核对村名", field="village_id")
    days = nearest_rule(rules, path_ids(village.path))
    reporter_name = (data.reporter_name or (household.head_name if household else ""))[:MAX_NAME]
    return CaseCreate(
        channel=r.channel, inbound_key=data.inbound_key, household_id=household.id if household else None,
        reporter_id=data.reporter_id, reporter_name=reporter_name,
        reporter_phone_enc=ctx.cipher.encrypt(r.phone), reporter_phone_idx=ctx.cipher.blind_index(r.phone),
        reporter_id_number_enc=ctx.cipher.encrypt(r.id_number), village_id=village.id, region_path=village.path,
        risk_types=r.risks, description=r.description, urgent=r.urgent, urgent_reasons="；".join(r.reasons)[:500],
        step="warning",
        due_at=_due(ctx.calendar, now, DEFAULT_STEP_DAYS["warning"] if days is None else days),
        actor_kind="staff" if r.channel == "staff" else "villager",
        actor_name=data.actor_name or reporter_name,
    )


@functools.lru_cache(maxsize=64)
def _due(calendar, now: dt.datetime, days: int) -> dt.datetime:
    """The deadline ``days`` working days after ``now`` (the reports of one batch share ``now``)."""
    return calendar.add_working_days(now, days)


def submit(ctx: Context, data: ReportInput, *, now: dt.datetime | None = None) -> Ack:
    """Create (or find, on a retry) the case for ``data`` and return its acknowledgement: a batch
    of one of :func:`file`. A retry or a copy racing in another transaction is refused by the
    unique key on the channel's inbound key; the case filed first is then acknowledged again
    (``created`` False)."""
    for attempt in range(3):
        try:
            [result] = file(ctx, [data], now=now)
            break
        except IntegrityError:
            if data.inbound_key is not None:
                with reading(ctx.engine) as conn:
                    earlier = filed_before(conn, data.inbound_key)
                if earlier is not None:
                    return _ack(earlier)
            if attempt == 2:
                raise
    if isinstance(result, HandlerError):
        raise result
    return result


def notify_urgent(session: Session, *, case_id: int, ref: str, reasons: str, village: Village | Region) -> None:
    """Queue a template message to the township staff responsible for the village (in the
    session's transaction)."""
    chain = regions_by_ids(session, path_ids(village.path))
    township = next((r for r in reversed(chain) if r.level == "township"), None)
    if township is None:
        return
    for staff in staff_in_region(session, region_path_prefix=township.path, roles=("township",)):
        if not staff.wechat_openid:
            continue
        enqueue(
            session,
            kind="template",
            recipient=staff.wechat_openid,
            payload={"template": "urgent_case", "data": {"ref": ref, "village": village.name, "reasons": reasons}},
            dedupe_key=f"urgent:{case_id}:{staff.id}",
            case_id=case_id,
        )
    session.flush()


def ack_message(ref: str, *, created: bool, urgent: bool, due_at: dt.datetime | None) -> str:
    """The acknowledgement a villager reads: the reference, and when to expect the cadre."""
    if not created:
        return texts.ACK_DUPLICATE.format(ref=ref)
    if urgent:
        return texts.ACK_REPORT_URGENT.format(ref=ref)
    due = due_at.astimezone(dt.timezone(dt.timedelta(hours=8))) if due_at else None
    return texts.ACK_REPORT.format(ref=ref, due=texts.format_date(due) if due else "近期")


def _ack(case: CaseFiled) -> Ack:
    questions = []
    if not case.risk_types:
        questions.append(texts.ASK_RISK.format(menu=texts.risk_menu()))
    if not case.description:
        questions.append(texts.ASK_DESCRIPTION)
    message = ack_message(case.ref, created=case.created, urgent=case.urgent, due_at=case.due_at)
    return Ack(
        ref=case.ref, case_id=case.id, created=case.created, urgent=case.urgent, due_at=case.due_at,
        risk_types=list(case.risk_types), next_questions=questions, message=message,
    )


@dataclass
class ProgressItem:
    ref: str
    created_at: dt.datetime
    step: str
    step_label: str
    status: str
    due_at: dt.datetime | None
    overdue: bool
    outcome: str | None


def status_words(case: Case) -> str:
    if case.outcome:
        words = texts.OUTCOME_STATUS.get(case.outcome, "")
        if case.outcome == "rejected" and case.outcome_reason:
            words += f"（原因：{case.outcome_reason}）"
        return words
    return texts.STEP_STATUS.get(case.step, "")


def progress(
    ctx: Context, *, reporter_id: int | None = None, household_id: int | None = None,
    now: dt.datetime | None = None, limit: int = 10,
) -> list[ProgressItem]:
    now = now or utcnow()
    with session_scope(ctx.engine) as session:
        cases = cases_for_reporter(session, reporter_id=reporter_id, household_id=household_id, limit=limit)
        return [
            ProgressItem(
                ref=c.ref,
                created_at=c.created_at,
                step=c.step,
                step_label=ProcedureStep.parse(c.step).label,
                status=status_words(c),
                due_at=c.due_at if not c.closed_at else None,
                overdue=not c.closed_at and is_overdue(c.due_at, now),
                outcome=c.outcome,
            )
            for c in cases
        ]


def progress_text(items: list[ProgressItem]) -> str:
    """The progress reply for chat."""
    if not items:
        return texts.NO_CASES
    cst = dt.timezone(dt.timedelta(hours=8))
    lines = [texts.PROGRESS_HEAD]
    for it in items:
        if it.overdue:
            due = texts.PROGRESS_OVERDUE
        elif it.due_at:
            due = texts.PROGRESS_DUE.format(due=texts.format_date(it.due_at.astimezone(cst)))
        else:
            due = ""
        lines.append(
            texts.PROGRESS_LINE.format(
                ref=it.ref, date=texts.format_date(it.created_at.astimezone(cst)), status=it.status, due=due
            )
        )
    return "\n".join(lines)
