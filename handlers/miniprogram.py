"""Use cases of the mini-program: sessions, binding a household, reports, questions, topics.

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
from dataclasses import dataclass, field
from pathlib import Path

from storage import session_scope
from storage.api import (
    api_session,
    case_by_id,
    claim_idempotency,
    count_attachments,
    create_api_session,
    delete_pending_idempotency,
    finish_idempotency,
    household_by_id,
    households_in_villages,
    idempotency_record,
    revoke_api_session,
    set_unionid,
    villages_named,
    wechat_user,
)
from storage.audit import audit
from storage.cases import add_event, attachments_of, case_by_ref, events_of
from storage.crypto import mask_id_number, mask_phone
from storage.enums import HouseholdCategory, Outcome, ProcedureStep, RiskType
from storage.files import StoredFile
from storage.models import Attachment, Case, Household, utcnow
from storage.people import bind_household, get_or_create_wechat_user, household_by_token
from storage.regions import ancestors, get_region

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
from .report import ReportInput, progress, status_words, submit

log = logging.getLogger(__name__)

CST = dt.timezone(dt.timedelta(hours=8))
#: WeChat's image picker offers at most 9 photos at a time; a case keeps at most this many.
MAX_PHOTOS_PER_CASE = 9
IDEMPOTENCY_KEY_MAX = 128


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


# --- households ----------------------------------------------------------------------------


@dataclass
class HouseholdView:
    id: int
    head_name: str
    village_id: int
    village: str
    township: str
    county: str
    region: str
    group_name: str
    address: str
    category: str
    category_label: str
    members: int
    id_number_masked: str
    phone_masked: str


def _household_view(ctx: Context, session, hh: Household) -> HouseholdView:
    village = get_region(session, hh.village_id)
    chain = ancestors(session, village) if village else []
    by_level = {r.level: r.name for r in chain}
    try:
        category_label = HouseholdCategory.parse(hh.category).label
    except ValueError:
        category_label = ""
    return HouseholdView(
        id=hh.id, head_name=hh.head_name, village_id=hh.village_id, village=by_level.get("village", ""),
        township=by_level.get("township", ""), county=by_level.get("county", ""),
        region="".join(r.name for r in chain if r.level in {"county", "township", "village"}),
        group_name=hh.group_name, address=hh.address, category=hh.category, category_label=category_label,
        members=hh.members, id_number_masked=mask_id_number(ctx.cipher.decrypt(hh.id_number_enc)),
        phone_masked=mask_phone(ctx.cipher.decrypt(hh.phone_enc)),
    )


def my_household(ctx: Context, user_id: int) -> HouseholdView | None:
    with session_scope(ctx.engine) as session:
        user = wechat_user(session, user_id)
        if user is None or user.household_id is None:
            return None
        hh = household_by_id(session, user.household_id)
        return _household_view(ctx, session, hh) if hh else None


def bind_by_token(ctx: Context, *, user_id: int, token: str, ip: str = "") -> HouseholdView:
    """Bind by the token behind the household's QR code (一户一码)."""
    with session_scope(ctx.engine) as session:
        hh = household_by_token(session, token.strip())
        if hh is None:
            raise NotFound(T.BIND_TOKEN_NOT_FOUND, field="token", code="no_match")
        return _bind(ctx, session, user_id, hh, how="token", ip=ip)


def bind_by_identity(
    ctx: Context, *, user_id: int, name: str, id_last6: str, village_id: int | None = None,
    village: str | None = None, ip: str = "",
) -> HouseholdView:
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
            villages = villages_named(session, (village or "").strip())
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


def _bind(ctx: Context, session, user_id: int, hh: Household, *, how: str, ip: str) -> HouseholdView:
    user = wechat_user(session, user_id)
    if user is None:
        raise Unauthorized(T.TOKEN_INVALID, code="invalid_token")
    if user.household_id == hh.id:
        return _household_view(ctx, session, hh)
    if user.household_id is not None:
        # The same rule as the official account: a bound WeChat is not moved silently.
        current = household_by_id(session, user.household_id)
        village = get_region(session, current.village_id) if current else None
        raise Conflict(T.BIND_OTHER.format(village=village.name if village else "",
                                           head=current.head_name if current else ""), code="already_bound")
    bind_household(session, user, hh)
    audit(session, action="mp_bind", actor_name=f"wechatuser:{user.id}", target=f"household:{hh.id}",
          detail=f"by {how}", ip=ip)
    return _household_view(ctx, session, hh)


# --- reports -------------------------------------------------------------------------------


@dataclass
class ReportRequest:
    risk_types: list[str] = field(default_factory=list)
    description: str = ""
    reporter_name: str | None = None
    reporter_phone: str | None = None
    village_id: int | None = None
    consent: bool | None = None


@dataclass
class PhotoView:
    id: int
    content_type: str
    size: int
    created_at: dt.datetime


@dataclass
class Receipt:
    ref: str
    urgent: bool
    due_at: dt.datetime | None
    risk_types: list[str]
    missing: list[str]
    message: str
    photos: list[PhotoView]


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
            case = case_by_id(session, record.case_id)
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
            case = case_by_id(session, ack.case_id)
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


def _photo_view(a: Attachment) -> PhotoView:
    return PhotoView(id=a.id, content_type=a.content_type or "", size=a.size or 0, created_at=a.created_at)


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
) -> tuple[PhotoView, bool]:
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


@dataclass
class ReportItem:
    ref: str
    created_at: dt.datetime
    step: str
    step_label: str
    status: str
    due_at: dt.datetime | None
    overdue: bool
    outcome: str | None


def my_reports(ctx: Context, *, user_id: int, limit: int = 20, now: dt.datetime | None = None) -> list[ReportItem]:
    with session_scope(ctx.engine) as session:
        user = wechat_user(session, user_id)
        household_id = user.household_id if user else None
    items = progress(ctx, reporter_id=user_id, household_id=household_id, now=now, limit=limit)
    return [ReportItem(ref=i.ref, created_at=i.created_at, step=i.step, step_label=i.step_label, status=i.status,
                       due_at=i.due_at, overdue=i.overdue, outcome=i.outcome) for i in items]


@dataclass
class TimelineEntry:
    at: dt.datetime
    action: str
    step: str | None
    step_label: str | None


@dataclass
class ReportDetail:
    ref: str
    created_at: dt.datetime
    channel: str
    step: str
    step_label: str
    status: str
    due_at: dt.datetime | None
    overdue: bool
    outcome: str | None
    outcome_label: str | None
    urgent: bool
    risk_types: list[dict]
    description: str
    photos: list[PhotoView]
    timeline: list[TimelineEntry]


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


# --- questions -----------------------------------------------------------------------------


@dataclass
class Passage:
    doc: str
    title: str
    issuer: str
    date: str
    doc_no: str | None
    section: str
    #: The clause word for word: ``original[start:end]`` of the document file ``doc``.
    text: str
    start: int
    end: int
    score: float
    #: The document's region: ``{"province", "city", "county"}`` (a level may be None).
    region: dict
    #: The repaired reading text (a table row with its header), for display.
    display: str


@dataclass
class AnswerView:
    text: str
    answerable: bool
    region: str | None
    passages: list[Passage]
    next_offset: int | None


def _passage(hit) -> Passage:
    def s(name):
        value = getattr(hit, name, "")
        return "" if value is None else str(value)

    region = getattr(hit, "region", None)
    region = {str(k): (None if v is None else str(v)) for k, v in region.items()} if isinstance(region, dict) else {}
    doc_no = getattr(hit, "doc_no", None)
    return Passage(doc=s("doc"), title=s("title"), issuer=s("issuer"), date=s("date"),
                   doc_no=None if doc_no is None else str(doc_no), section=s("section"), text=s("text"),
                   start=int(getattr(hit, "start", 0) or 0), end=int(getattr(hit, "end", 0) or 0),
                   score=float(getattr(hit, "score", 0.0) or 0.0), region=region, display=s("display") or s("text"))


def user_region(ctx: Context, user_id: int | None) -> str | None:
    """The county of the user's household (the asker's own documents rank first), if bound."""
    if user_id is None:
        return None
    with session_scope(ctx.engine) as session:
        user = wechat_user(session, user_id)
        village = get_region(session, user.village_id) if user and user.village_id else None
        if village is None:
            return None
        chain = ancestors(session, village)
        county = next((r for r in chain if r.level == "county"), None)
        return county.name if county else None


def ask(ctx: Context, *, question: str, region: str | None = None, offset: int = 0,
        user_id: int | None = None) -> AnswerView:
    """A policy question answered from the documents, with the quoted passages and their offsets."""
    question = question.strip()
    if not question:
        raise ValidationError(T.QUESTION_EMPTY, field="question", code="required")
    region = (region or "").strip() or user_region(ctx, user_id)
    try:
        kb = ctx.kb()
    except Exception as exc:  # a missing or stale index: say so, don't crash
        log.warning("knowledge base unavailable: %s: %s", type(exc).__name__, str(exc)[:300])
        kb = None
    if kb is None:
        raise ServiceUnavailable(T.INDEX_UNAVAILABLE, code="index_unavailable")
    answer = kb.answer(question, region=region, offset=offset)
    return AnswerView(text=answer.text, answerable=bool(answer.answerable), region=region,
                      passages=[_passage(h) for h in answer.passages], next_offset=answer.next_offset)


# --- topics --------------------------------------------------------------------------------


@dataclass
class Topic:
    code: str
    title: str
    description: str
    examples: list[str]


def policy_topics() -> list[Topic]:
    return [Topic(code, title, desc, list(examples)) for code, title, desc, examples in T.POLICY_TOPICS]
