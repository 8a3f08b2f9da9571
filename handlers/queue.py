"""The staff queue: what needs the viewer now, filtered, searched, paged and exported.

Filters arrive as plain strings (query-string values) and are validated here; anything
unknown is refused with a Chinese message naming the filter. Phones in the list are masked;
an export is masked too unless the exporter's role may see full values, and every export is
written to the audit log with its filter and row count.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import re
from dataclasses import dataclass, field, replace
from typing import Any

from storage import session_scope
from storage.audit import audit
from storage.crypto import mask_id_number, mask_phone
from storage.enums import DECISION_STEPS, Channel, Outcome, ProcedureStep, RiskType
from storage.households import households_by_ids
from storage.models import utcnow
from storage.people import staff_names
from storage.queue import Cursor, QueueFilter, queue_cases, queue_page, queue_stats
from storage.refs import CST
from storage.regions import villages_under

from . import triage_texts as T
from .context import Context
from .deadlines import is_overdue
from .errors import Forbidden, ValidationError
from .staff import Actor
from .triage.common import ACTION_ROLES, decrypt_shown, label, masked

PAGE_SIZE = 50
EXPORT_LIMIT = 50_000
PHONE_SEARCH_RE = re.compile(r"^1[3-9]\d{9}$")
STEP_CODES = [s.value for s in DECISION_STEPS] + ["assistance", "closed"]


@dataclass
class QueueRow:
    id: int
    ref: str
    urgent: bool
    urgent_reasons: str
    step: str
    step_label: str
    outcome_label: str
    risk_labels: list[str]
    village: str
    reporter_name: str
    phone: str
    due_at: dt.datetime | None
    overdue: bool
    days_left: int | None
    channel_label: str
    assigned_to: str
    mine: bool
    created_at: dt.datetime
    duplicate: bool
    first_aid: bool


@dataclass
class QueuePage:
    rows: list[QueueRow]
    next_cursor: str | None
    total: int
    counts: list[tuple[str, str, int]]
    urgent_count: int
    overdue_count: int
    villages: list[tuple[int, str]]
    filters: dict[str, str]
    first_page: bool
    choices: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


def _choice(value: str, allowed: list[str], name: str) -> str | None:
    value = (value or "").strip()
    if not value:
        return None
    if value not in allowed:
        raise ValidationError(T.BAD_FILTER.format(field=name), field=name)
    return value


def parse_filter(ctx: Context, actor: Actor, args: dict[str, Any]) -> tuple[QueueFilter, dict[str, str]]:
    """A validated ``QueueFilter`` scoped to the actor, and the normalised values (for links)."""
    get = lambda k: str(args.get(k) or "").strip()  # noqa: E731
    status = _choice(get("status"), ["open", "closed", "all"], "status") or "open"
    step = _choice(get("step"), STEP_CODES, "step")
    risk = _choice(get("risk"), [r.value for r in RiskType], "risk")
    channel = _choice(get("channel"), [c.value for c in Channel], "channel")
    village = get("village")
    if village and not village.isdigit():
        raise ValidationError(T.BAD_FILTER.format(field="village"), field="village")
    mine = get("mine") in ("1", "on", "true")
    urgent = get("urgent") in ("1", "on", "true")
    overdue = get("overdue") in ("1", "on", "true")
    q = get("q")
    if len(q) > 40:
        raise ValidationError(T.SEARCH_TOO_LONG, field="q")
    ref = name = phone_idx = None
    compact = q.replace(" ", "").replace("-", "")
    if q.upper().startswith("SB"):
        ref = q.upper()
    elif PHONE_SEARCH_RE.match(compact):
        phone_idx = ctx.cipher.blind_index(compact)
    elif q:
        name = q
    f = QueueFilter(
        region_path=actor.region_path, status=status, step=step, risk=risk,
        village_id=int(village) if village else None, channel=channel,
        assigned_to_id=actor.id if mine else None, urgent_only=urgent, overdue_only=overdue,
        ref=ref, name=name, phone_idx=phone_idx,
    )
    norm = {k: v for k, v in {
        "status": status if status != "open" else "", "step": step or "", "risk": risk or "", "channel": channel or "",
        "village": village, "mine": "1" if mine else "", "urgent": "1" if urgent else "",
        "overdue": "1" if overdue else "", "q": q,
    }.items() if v}
    return f, norm


def encode_cursor(c: Cursor) -> str:
    raw = f"{int(c.urgent)}|{c.due_at.astimezone(dt.UTC).isoformat() if c.due_at else ''}|{c.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(text: str) -> Cursor | None:
    if not text:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        u, due, ident = raw.split("|")
        if u not in ("0", "1") or not ident.isdigit():
            raise ValueError(raw)
        when = dt.datetime.fromisoformat(due) if due else None
        if when is not None and when.tzinfo is None:
            raise ValueError(raw)
        return Cursor(urgent=u == "1", due_at=when, id=int(ident))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError(T.BAD_CURSOR, field="after") from exc


def _row(ctx: Context, actor: Actor, case, village: str, assigned: dict[int, str], homes: dict, now: dt.datetime) -> QueueRow:
    hh = homes.get(case.household_id or 0)
    phone_enc = case.reporter_phone_enc or (hh.phone_enc if hh is not None else None)
    phone = decrypt_shown(ctx, phone_enc)
    open_ = case.closed_at is None
    return QueueRow(
        id=case.id, ref=case.ref, urgent=case.urgent, urgent_reasons=case.urgent_reasons, step=case.step,
        step_label=label(ProcedureStep, case.step), outcome_label=label(Outcome, case.outcome),
        risk_labels=[label(RiskType, r) for r in case.risk_types], village=village,
        reporter_name=case.reporter_name or (hh.head_name if hh is not None else ""), phone=masked(mask_phone, phone),
        due_at=case.due_at if open_ else None, overdue=open_ and is_overdue(case.due_at, now),
        days_left=ctx.calendar.working_days_left(case.due_at, now) if open_ and case.due_at else None,
        channel_label=label(Channel, case.channel), assigned_to=assigned.get(case.assigned_to_id or 0, ""),
        mine=case.assigned_to_id == actor.id, created_at=case.created_at,
        duplicate=bool(case.possible_duplicate_of_id) and open_, first_aid=case.first_aid_at is not None,
    )


def queue(ctx: Context, actor: Actor, args: dict[str, Any], *, now: dt.datetime | None = None,
          page_size: int = PAGE_SIZE) -> QueuePage:
    """One page of the viewer's queue: urgent first, then overdue, then by due date."""
    now = now or utcnow()
    f, norm = parse_filter(ctx, actor, args)
    after = decode_cursor(str(args.get("after") or ""))
    with session_scope(ctx.engine) as session:
        under = villages_under(session, actor.region_path)
        villages = [(v.id, v.name) for v in under]
        if f.village_id is not None:
            path = next((v.path for v in under if v.id == f.village_id), None)
            if path is None:
                raise ValidationError(T.BAD_FILTER.format(field="village"), field="village")
            f = replace(f, village_id=None, village_path=path)
        rows, nxt = queue_page(session, f, now=now, limit=page_size, after=after)
        assigned = staff_names(session, [c.assigned_to_id for c, _ in rows if c.assigned_to_id])
        homes = households_by_ids(session, [c.household_id for c, _ in rows if c.household_id])
        stats = queue_stats(session, f, now=now)
        out = [_row(ctx, actor, c, v, assigned, homes, now) for c, v in rows]
    counts = [(code, label(ProcedureStep, code), stats.per_step.get(code, 0)) for code in STEP_CODES]
    return QueuePage(
        rows=out, next_cursor=encode_cursor(nxt) if nxt else None, total=stats.total(f.step), counts=counts,
        urgent_count=stats.urgent, overdue_count=stats.overdue, villages=villages, filters=norm, first_page=after is None,
        choices={
            "step": [(c, lbl) for c, lbl, _ in counts],
            "risk": [(r.value, r.label) for r in RiskType],
            "channel": [(c.value, c.label) for c in Channel],
            "status": list(T.STATUS_LABELS.items()),
        },
    )


def _safe_cell(value: Any) -> str:
    """Spreadsheet programs run cells that start with = + - @ as formulas: neutralise them."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def export_csv(ctx: Context, actor: Actor, args: dict[str, Any], *, unmasked: bool = False, ip: str = "",
               now: dt.datetime | None = None) -> tuple[str, bytes, int]:
    """(file name, UTF-8 CSV with BOM, row count) of the filtered queue; audited."""
    now = now or utcnow()
    if unmasked and actor.role not in ACTION_ROLES["export_unmasked"]:
        raise Forbidden(T.EXPORT_NOT_ALLOWED)
    f, norm = parse_filter(ctx, actor, args)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(T.EXPORT_HEADERS)
    with session_scope(ctx.engine) as session:
        rows = queue_cases(session, f, now=now, limit=EXPORT_LIMIT)
        homes = households_by_ids(session, [c.household_id for c, _ in rows if c.household_id])
        for case, village in rows:
            phone = decrypt_shown(ctx, case.reporter_phone_enc)
            hh = homes.get(case.household_id or 0)
            idn = decrypt_shown(ctx, case.reporter_id_number_enc)
            if idn is None and hh is not None and hh.id_number_enc:
                idn = decrypt_shown(ctx, hh.id_number_enc)
            if phone is None and hh is not None and hh.phone_enc:
                phone = decrypt_shown(ctx, hh.phone_enc)
            open_ = case.closed_at is None
            writer.writerow([_safe_cell(v) for v in (
                case.ref, T.YES if case.urgent else T.NO, label(ProcedureStep, case.step),
                label(Outcome, case.outcome), "、".join(label(RiskType, r) for r in case.risk_types), village,
                case.reporter_name, phone if unmasked else masked(mask_phone, phone),
                idn if unmasked else masked(mask_id_number, idn), hh.head_name if hh else "", label(Channel, case.channel),
                case.created_at.astimezone(CST).strftime("%Y-%m-%d %H:%M"),
                case.due_at.astimezone(CST).strftime("%Y-%m-%d") if case.due_at and open_ else "",
                T.YES if open_ and is_overdue(case.due_at, now) else T.NO,
            )])
        audit(session, action="export", actor_id=actor.id, actor_name=actor.username, target="queue",
              detail=T.AUDIT_EXPORT.format(n=len(rows), mode=T.AUDIT_EXPORT_FULL if unmasked else T.AUDIT_EXPORT_MASKED,
                                           filters=_describe(norm)), ip=ip)
    name = f"queue-{now.astimezone(CST):%Y%m%d-%H%M}.csv"
    return name, ("\ufeff" + buf.getvalue()).encode("utf-8"), len(rows)


def _describe(norm: dict[str, str]) -> str:
    """The export's filter in words for the audit log."""
    labels = {"step": ProcedureStep, "risk": RiskType, "channel": Channel}
    parts = []
    for key, value in norm.items():
        if key in labels:
            shown = label(labels[key], value)
        elif key == "status":
            shown = T.STATUS_LABELS.get(value, value)
        else:
            shown = value
        parts.append(f"{T.FILTER_LABELS.get(key, key)}={shown}")
    return "；".join(parts) or T.AUDIT_NO_FILTER

