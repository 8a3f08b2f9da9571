"""Use cases of the mini-program: sessions, reports with their photos, my reports.

The household (reading and binding it) is in :mod:`handlers.miniprogram_household`, questions and
topics in :mod:`handlers.miniprogram_ask`, the request and response models in
:mod:`handlers.miniprogram_models`.

The WeChat exchange (``code2session``) and HTTP happen in ``bot.miniprogram``; these functions get
what came out of it and share every rule with the official account: a report goes through
:func:`handlers.report.submit` (channel ``miniprogram``, inbound key ``mp:<user>:<Idempotency-Key>``),
progress through :func:`handlers.report.progress`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from storage import session_scope
from storage.api import (
    api_session,
    claim_idempotency,
    create_api_session,
    delete_pending_idempotency,
    finish_idempotency,
    idempotency_record,
    revoke_api_session,
)
from storage.cases import add_event, attachments_of, case_by_ref, count_attachments, events_of, get_case
from storage.enums import Outcome, ProcedureStep, RiskType
from storage.files import StoredFile
from storage.models import Attachment, Case, utcnow
from storage.people import get_or_create_wechat_user, set_unionid, wechat_user

from . import evidence, texts
from . import miniprogram_texts as T
from .context import Context

# Unauthorized … ServiceUnavailable are re-exported: the API refers to them as mp.<name>.
from .errors import (  # noqa: F401
    Conflict,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
    ValidationError,
)

# The one upload type of every channel: the API builds it as mp.Upload.
from .evidence import Upload  # noqa: F401
from .miniprogram_models import (
    MAX_PHOTOS_PER_CASE,
    Photo,
    Receipt,
    ReportDetail,
    ReportItem,
    ReportRequest,
    TimelineEntry,
)
from .report import ReportInput, progress, status_words, submit

log = logging.getLogger(__name__)

CST = dt.timezone(dt.timedelta(hours=8))


# --- sessions ------------------------------------------------------------------------------


@dataclass
class MpUser:
    id: int
    openid: str
    household_id: int | None
    village_id: int | None
    name: str


def _mp_user(user) -> MpUser:
    return MpUser(id=user.id, openid=user.openid, household_id=user.household_id,
                  village_id=user.village_id, name=user.name)


def start_session(
    ctx: Context, *, openid: str, unionid: str | None, session_key: str | None, token_hash: str,
    hours: int, now: dt.datetime | None = None,
) -> tuple[MpUser, dt.datetime]:
    """Upsert the mini-program user of ``openid`` and store a new session under ``token_hash``."""
    now = now or utcnow()
    expires = now + dt.timedelta(hours=hours)
    with session_scope(ctx.engine) as session:
        user = get_or_create_wechat_user(session, openid=openid, app="mp")
        set_unionid(session, user, unionid)
        create_api_session(
            session, token_hash=token_hash, user_id=user.id, expires_at=expires,
            session_key_enc=ctx.cipher.encrypt(session_key), now=now,
        )
        return _mp_user(user), expires


def authenticate(ctx: Context, token_hash: str, *, now: dt.datetime | None = None) -> MpUser:
    """The user of a live session; ``Unauthorized`` for an unknown, revoked or expired token."""
    now = now or utcnow()
    with session_scope(ctx.engine) as session:
        row = api_session(session, token_hash)
        if row is None or row.revoked:
            raise Unauthorized(T.TOKEN_INVALID, code="invalid_token")
        if row.expires_at <= now:
            raise Unauthorized(T.TOKEN_EXPIRED, code="token_expired")
        user = wechat_user(session, row.user_id)
        if user is None:
            raise Unauthorized(T.TOKEN_INVALID, code="invalid_token")
        return _mp_user(user)


def end_session(ctx: Context, token_hash: str) -> bool:
    with session_scope(ctx.engine) as session:
        return revoke_api_session(session, token_hash)


# --- reports -------------------------------------------------------------------------------


#: What a photo may be; the one sniffer also knows PDF, which is not a photo.
PHOTO_KINDS = (evidence.JPEG, evidence.PNG, evidence.WEBP)


def check_photos(
    photos: list[Upload], *, max_bytes: int, field: str = "photos"
) -> list[tuple[Upload, evidence.FileKind]]:
    """Size and type of every photo, before anything is written."""
    if len(photos) > MAX_PHOTOS_PER_CASE:
        raise ValidationError(T.TOO_MANY_PHOTOS.format(n=MAX_PHOTOS_PER_CASE), field=field, code="too_many")
    out = []
    for p in photos:
        if len(p.data) > max_bytes:
            raise PayloadTooLarge(T.PHOTO_TOO_LARGE.format(mb=_mb(max_bytes)), field=field)
        if not p.data:
            # An empty file is not an image: the documented 415, with its own message.
            raise UnsupportedMediaType(T.PHOTO_EMPTY, field=field, code="empty")
        kind = evidence.sniff(p.data)
        if kind not in PHOTO_KINDS:
            raise UnsupportedMediaType(T.PHOTO_NOT_IMAGE, field=field)
        out.append((p, kind))
    return out


def _mb(n: int) -> str:
    v = n / (1024 * 1024)
    return f"{v:.0f}" if v >= 1 else f"{v:.1f}"


def request_hash(req: ReportRequest, photos: list[Upload]) -> str:
    """A hash of what the request asks for: the same body (and photos) gives the same hash."""
    canon = {
        "risk_types": list(req.risk_types), "description": req.description, "reporter_name": req.reporter_name,
        "reporter_phone": req.reporter_phone, "village_id": req.village_id, "consent": req.consent,
        "photos": [hashlib.sha256(p.data).hexdigest() for p in photos],
    }
    return hashlib.sha256(json.dumps(canon, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def submit_report(
    ctx: Context, *, user_id: int, idempotency_key: str, report: ReportRequest, photos: list[Upload],
    upload_root: Path, max_photo_bytes: int, now: dt.datetime | None = None,
) -> tuple[Receipt, bool]:
    """Create the case of a mini-program report once per Idempotency-Key; ``(receipt, replayed)``.

    Same key and same body → the first receipt (``replayed`` True), even when the first request
    died half way; same key and another body → ``Conflict`` and nothing written. Bad input of any
    kind is refused before anything is written.
    """
    checked = check_photos(photos, max_bytes=max_photo_bytes)
    digest = request_hash(report, photos)
    with session_scope(ctx.engine) as session:
        user = wechat_user(session, user_id)
        if user is None:
            raise Unauthorized(T.TOKEN_INVALID, code="invalid_token")
        bound = user.household_id is not None
        if not bound:
            _check_unbound(report)
        record, inserted = _claim(session, user_id, idempotency_key, digest)
        if record.case_id is not None:
            case = get_case(session, record.case_id)
            return _receipt(session, case), True
        record_id = record.id

    try:
        ack = submit(ctx, ReportInput(
            channel="miniprogram",
            inbound_key=f"mp:{user_id}:{idempotency_key}",
            household_id=user.household_id,
            reporter_id=user_id,
            reporter_name=(report.reporter_name or "").strip() or user.name,
            reporter_phone=(report.reporter_phone or "").strip() or None,
            village_id=None if bound else report.village_id,
            risk_types=list(report.risk_types),
            description=report.description,
        ), now=now)
    except BaseException:
        if inserted:
            with session_scope(ctx.engine) as session:
                delete_pending_idempotency(session, record_id)
        raise

    store = evidence.store_for(upload_root)
    written: list[StoredFile] = []
    try:
        with session_scope(ctx.engine) as session:
            case = get_case(session, ack.case_id)
            finished = finish_idempotency(session, record_id, ack.case_id)
            if finished:
                # This request finished the key: it stores the photos and the consent.
                if not bound and report.consent:
                    user = wechat_user(session, user_id)
                    user.consented_at = user.consented_at or utcnow()
                    session.add(user)
                for upload, kind in checked:
                    evidence.attach(session, store, case, upload, kind, attachment_kind="image", written=written)
                if checked:
                    add_event(session, case, action="evidence_added", actor_kind="villager", actor_id=user_id,
                              actor_name=case.reporter_name, data={"photos": len(checked)})
            return _receipt(session, case), not finished
    except BaseException:
        evidence.discard(store, written)
        raise


def _check_unbound(report: ReportRequest) -> None:
    if not (report.reporter_name or "").strip():
        raise ValidationError(T.UNBOUND_NEEDS_NAME, field="reporter_name", code="required")
    if not (report.reporter_phone or "").strip():
        raise ValidationError(T.UNBOUND_NEEDS_PHONE, field="reporter_phone", code="required")
    if report.village_id is None:
        raise ValidationError(T.UNBOUND_NEEDS_VILLAGE, field="village_id", code="required")
    if report.consent is not True:
        raise ValidationError(T.UNBOUND_NEEDS_CONSENT, field="consent", code="consent_required")


def _claim(session, user_id: int, key: str, digest: str):
    record = idempotency_record(session, user_id=user_id, key=key)
    inserted = False
    if record is None:
        record, inserted = claim_idempotency(session, user_id=user_id, key=key, request_hash=digest, case_id=None)
    if not hmac.compare_digest(record.request_hash, digest):
        raise Conflict(T.IDEMPOTENCY_CONFLICT, field="Idempotency-Key", code="idempotency_conflict")
    return record, inserted


def _photo_view(a: Attachment) -> Photo:
    return Photo(id=a.id, content_type=a.content_type or "", size=a.size or 0, created_at=a.created_at)


def _receipt(session, case: Case) -> Receipt:
    if case.urgent:
        message = texts.ACK_REPORT_URGENT.format(ref=case.ref)
    else:
        due = case.due_at.astimezone(CST) if case.due_at else None
        message = texts.ACK_REPORT.format(ref=case.ref, due=texts.format_date(due) if due else "近期")
    missing = [name for name, value in (("risk_types", case.risk_types), ("description", case.description))
               if not value]
    photos = [_photo_view(a) for a in attachments_of(session, case.id) if a.kind == "image"]
    return Receipt(ref=case.ref, urgent=case.urgent, due_at=case.due_at, risk_types=list(case.risk_types),
                   missing=missing, message=message, photos=photos)


def add_photo(
    ctx: Context, *, user_id: int, ref: str, photo: Upload, upload_root: Path, max_photo_bytes: int,
) -> tuple[Photo, bool]:
    """Attach one more photo to one of my cases; ``(photo, created)`` (the same photo twice is one)."""
    store = evidence.store_for(upload_root)
    written: list[StoredFile] = []
    try:
        with session_scope(ctx.engine) as session:
            case = _my_case(session, user_id, ref)
            ((upload, kind),) = check_photos([photo], max_bytes=max_photo_bytes, field="photo")
            existing = evidence.attached(session, store, case, upload, kind)
            if existing is not None:
                return _photo_view(existing), False
            if count_attachments(session, case.id, kind="image") >= MAX_PHOTOS_PER_CASE:
                raise ValidationError(T.TOO_MANY_PHOTOS.format(n=MAX_PHOTOS_PER_CASE), field="photo",
                                      code="too_many")
            att = evidence.attach(session, store, case, upload, kind, attachment_kind="image", written=written)
            add_event(session, case, action="evidence_added", actor_kind="villager", actor_id=user_id,
                      actor_name=case.reporter_name, data={"photos": 1})
            return _photo_view(att), True
    except BaseException:
        evidence.discard(store, written)
        raise


def my_reports(ctx: Context, *, user_id: int, limit: int = 20, now: dt.datetime | None = None) -> list[ReportItem]:
    with session_scope(ctx.engine) as session:
        user = wechat_user(session, user_id)
        household_id = user.household_id if user else None
    items = progress(ctx, reporter_id=user_id, household_id=household_id, now=now, limit=limit)
    return [ReportItem(ref=i.ref, created_at=i.created_at, step=i.step, step_label=i.step_label, status=i.status,
                       due_at=i.due_at, overdue=i.overdue, outcome=i.outcome) for i in items]


def _my_case(session, user_id: int, ref: str) -> Case:
    """My case by reference; another household's case is 'not found', never 'forbidden'."""
    user = wechat_user(session, user_id)
    case = case_by_ref(session, ref) if ref else None
    mine = case is not None and user is not None and (
        case.reporter_id == user.id or (user.household_id is not None and case.household_id == user.household_id)
    )
    if not mine:
        raise NotFound(T.REPORT_NOT_FOUND, field="ref")
    return case


def _label(enum, code: str | None) -> str | None:
    if not code:
        return None
    try:
        return enum.parse(code).label
    except ValueError:
        return code


def report_detail(ctx: Context, *, user_id: int, ref: str, now: dt.datetime | None = None) -> ReportDetail:
    now = now or utcnow()
    with session_scope(ctx.engine) as session:
        case = _my_case(session, user_id, ref)
        events = events_of(session, case.id)
        photos = [_photo_view(a) for a in attachments_of(session, case.id) if a.kind == "image"]
        due = case.due_at if not case.closed_at else None
        return ReportDetail(
            ref=case.ref, created_at=case.created_at, channel=case.channel, step=case.step,
            step_label=_label(ProcedureStep, case.step) or "", status=status_words(case), due_at=due,
            overdue=bool(due and now > due), outcome=case.outcome, outcome_label=_label(Outcome, case.outcome),
            urgent=case.urgent,
            risk_types=[{"code": r, "label": _label(RiskType, r)} for r in case.risk_types],
            description=case.description, photos=photos,
            # Only what happened and at which step: staff notes and names stay in the console.
            timeline=[TimelineEntry(at=e.at, action=e.action, step=e.step, step_label=_label(ProcedureStep, e.step))
                      for e in events],
        )
