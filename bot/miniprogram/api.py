"""Blueprint ``/api/v1``: the mini-program's JSON API.

Every success is ``{"ok": true, "data": …}``; every error the one shape of ``bot.errors``
(``{"ok": false, "error": {"code", "message", "field"}}``). Bodies are validated strictly against
the request schemas of the OpenAPI document before any use case runs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import re

import requests
from flask import Blueprint, current_app, g, jsonify, request
from wechatpy.exceptions import WeChatClientException

from handlers import miniprogram as mp
from handlers import miniprogram_texts as T
from handlers.errors import ValidationError

from . import openapi, validate
from .auth import current_user, new_token

log = logging.getLogger(__name__)

bp = Blueprint("miniprogram", __name__, url_prefix=openapi.PREFIX)

#: Bind attempts allowed per window (name + ID last 6 is guessable by brute force otherwise).
BIND_WINDOW = 15 * 60
BIND_PER_USER = 5
BIND_PER_IP = 30
#: code2session answers meaning "this login code is not (or no longer) valid".
INVALID_CODE_ERRCODES = {40029, 40163}
_REF_RE = re.compile(openapi.REF_PATTERN)
_IDEM_RE = re.compile(openapi.IDEMPOTENCY_KEY_PATTERN)
_SPLIT = re.compile(r"[,，、\s]+")


def services():
    return current_app.extensions["huinong"]


def _limiter():
    return current_app.extensions["huinong_mp_limiter"]


def _ip() -> str:
    return request.remote_addr or "unknown"


# --- plumbing ------------------------------------------------------------------------------


def to_json(obj):
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dt.datetime):
        return obj.astimezone(dt.UTC).isoformat(timespec="seconds")
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_json(v) for v in obj]
    return obj


def ok(data, status: int = 200, headers: dict | None = None):
    return jsonify({"ok": True, "data": to_json(data)}), status, headers or {}


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def json_body(method: str, template: str) -> dict:
    """The request's JSON object, validated against the document's schema for this operation."""
    if request.mimetype != "application/json":
        raise mp.UnsupportedMediaType("请以 JSON 格式（application/json）提交", code="unsupported_media_type")
    return _parse_json(request.get_data(cache=True), openapi.REQUESTS[(method, template)])


def _parse_json(raw: bytes, schema: dict) -> dict:
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValidationError(T.BODY_NOT_JSON, code="bad_json") from exc
    return validate.check(data, schema)


def authed(*, required: bool = True) -> mp.MpUser | None:
    """The user of this request's session, counted against the per-user rate limit."""
    s = services()
    user = current_user(s.ctx, required=required)
    if user is not None and not g.get("mp_user_counted"):
        g.mp_user_counted = True
        _limiter().hit("user", str(user.id), limit=s.settings.rate_limit_per_minute, window=60,
                       message=T.RATE_LIMITED)
    return user


@bp.before_request
def _per_ip_limit_and_query():
    _limiter().hit("ip", _ip(), limit=services().settings.rate_limit_per_minute, window=60, message=T.RATE_LIMITED)
    rule = request.url_rule.rule if request.url_rule else None
    allowed = openapi.query_parameters().get((request.method, rule))
    if allowed is not None:
        for name in request.args:
            if name not in allowed:
                raise ValidationError(T.FIELD_UNKNOWN.format(field=name[:40]), field=name[:40],
                                      code="unknown_field")


@bp.errorhandler(mp.Unauthorized)
def _unauthorized(exc: mp.Unauthorized):
    from bot.errors import api_error

    return api_error(exc.status, exc.code, exc.message, exc.field,
                     {"WWW-Authenticate": f'Bearer error="{exc.code}"'})


# --- login ---------------------------------------------------------------------------------


@bp.post("/login")
def login():
    body = json_body("POST", "/login")
    s = services()
    from bot.wechat.outbound import WeChatNotConfigured, make_mini_client

    try:
        client = make_mini_client(s.settings, s.ctx.kv)
    except WeChatNotConfigured as exc:
        log.error("mini-program login refused: %s", exc)
        raise mp.ServiceUnavailable(T.WECHAT_NOT_CONFIGURED, code="wechat_not_configured") from exc
    try:
        result = client.wxa.code_to_session(body["code"])
    except WeChatClientException as exc:
        if exc.errcode in INVALID_CODE_ERRCODES:
            raise mp.Unauthorized(T.LOGIN_CODE_INVALID, field="code", code="invalid_code") from exc
        log.warning("code2session failed: errcode=%s errmsg=%s", exc.errcode, exc.errmsg)
        raise mp.ServiceUnavailable(T.WECHAT_UNAVAILABLE, code="wechat_unavailable") from exc
    except (requests.RequestException, ValueError) as exc:
        log.warning("code2session unreachable: %s", type(exc).__name__)
        raise mp.ServiceUnavailable(T.WECHAT_UNAVAILABLE, code="wechat_unavailable") from exc
    openid = (result or {}).get("openid")
    if not isinstance(openid, str) or not openid or len(openid) > 64:
        log.warning("code2session answered without a usable openid")
        raise mp.ServiceUnavailable(T.WECHAT_UNAVAILABLE, code="wechat_unavailable")
    unionid = result.get("unionid") if isinstance(result.get("unionid"), str) else None
    token, token_hash = new_token()
    user, expires = mp.start_session(
        s.ctx, openid=openid, unionid=(unionid or None) and unionid[:64], session_key=result.get("session_key"),
        token_hash=token_hash, hours=s.settings.session_hours,
    )
    household = mp.my_household(s.ctx, user.id)
    return ok({
        "token": token, "token_type": "Bearer", "expires_at": expires,
        "expires_in": s.settings.session_hours * 3600,
        "user": {"id": user.id, "bound": household is not None}, "household": household,
    })


@bp.post("/logout")
def logout():
    authed()
    return ok({"revoked": mp.end_session(services().ctx, g.mp_token_hash)})


# --- household -----------------------------------------------------------------------------


@bp.get("/household")
def household():
    user = authed()
    hh = mp.my_household(services().ctx, user.id)
    return ok({"bound": hh is not None, "household": hh})


@bp.post("/household/bind")
def bind():
    user = authed()
    body = json_body("POST", "/household/bind")
    limiter = _limiter()
    limiter.hit("bind-user", str(user.id), limit=BIND_PER_USER, window=BIND_WINDOW, message=T.BIND_RATE_LIMITED)
    limiter.hit("bind-ip", _ip(), limit=BIND_PER_IP, window=BIND_WINDOW, message=T.BIND_RATE_LIMITED)
    ctx = services().ctx
    if "token" in body:
        token = body["token"]
        token = token[3:] if token.startswith("hh:") else token
        hh = mp.bind_by_token(ctx, user_id=user.id, token=token, ip=_ip())
    else:
        hh = mp.bind_by_identity(ctx, user_id=user.id, name=body["name"], id_last6=body["id_last6"],
                                 village_id=body.get("village_id"), village=body.get("village"), ip=_ip())
    return ok({"bound": True, "household": hh})


# --- reports -------------------------------------------------------------------------------


def _idempotency_key() -> str:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        raise ValidationError(T.IDEMPOTENCY_KEY_MISSING, field="Idempotency-Key", code="required")
    key = key.strip()
    if not _IDEM_RE.match(key):
        raise ValidationError(T.IDEMPOTENCY_KEY_INVALID, field="Idempotency-Key", code="pattern")
    return key


def _read_upload(fs, *, field: str, max_bytes: int) -> mp.Upload:
    data = fs.stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise mp.PayloadTooLarge(T.PHOTO_TOO_LARGE.format(mb=mp._mb(max_bytes)), field=field)
    return mp.Upload(filename=(fs.filename or "")[:255], data=data)


def _multipart():
    """The parsed form and files; a body that is not multipart at all is refused, not taken as empty."""
    form, files = request.form, request.files
    if not form and not files:
        boundary = request.mimetype_params.get("boundary", "")
        closing = len(f"--{boundary}--") + 4
        if not boundary or (request.content_length or 0) > closing:
            raise ValidationError("上传内容格式不正确（multipart/form-data）", code="bad_multipart")
    return form, files


def _single(form, name: str) -> str:
    values = form.getlist(name)
    if len(values) > 1:
        raise ValidationError(T.FIELD_TYPE.format(field=name, expected=T.TYPE_NAMES["string"]), field=name,
                              code="type")
    return values[0]


def _multipart_report(max_bytes: int) -> tuple[dict, list[mp.Upload]]:
    """A multipart report (what wx.uploadFile sends: text fields in formData plus the photo)."""
    form, files = _multipart()
    allowed = set(openapi.REPORT_MULTIPART["properties"]) | {"photo"}
    for name in list(form.keys()) + list(files.keys()):
        if name not in allowed:
            raise ValidationError(T.FIELD_UNKNOWN.format(field=name[:40]), field=name[:40], code="unknown_field")
    data: dict = {}
    for name in ("photos", "photo"):
        if name in form:
            raise ValidationError(T.FIELD_TYPE.format(field=name, expected="图片文件"), field=name, code="type")
    if "risk_types" in form:
        data["risk_types"] = [p for v in form.getlist("risk_types") for p in _SPLIT.split(v) if p]
    for name in ("description", "reporter_name", "reporter_phone"):
        if name in form:
            data[name] = _single(form, name)
    if "village_id" in form:
        raw = _single(form, "village_id").strip()
        if not raw.isascii() or not raw.isdigit():
            raise ValidationError(T.FIELD_TYPE.format(field="village_id", expected=T.TYPE_NAMES["integer"]),
                                  field="village_id", code="type")
        data["village_id"] = int(raw)
    if "consent" in form:
        raw = _single(form, "consent").strip().lower()
        if raw not in {"true", "false", "1", "0"}:
            raise ValidationError(T.FIELD_TYPE.format(field="consent", expected=T.TYPE_NAMES["boolean"]),
                                  field="consent", code="type")
        data["consent"] = raw in {"true", "1"}
    data = validate.check(data, openapi.REPORT_REQUEST)
    uploads = [
        _read_upload(fs, field="photos", max_bytes=max_bytes)
        for name in ("photos", "photo") for fs in files.getlist(name)
    ]
    # An empty file part without a name is what a form sends when no file was chosen.
    uploads = [u for u in uploads if u.data or u.filename]
    return data, uploads


def _report_input() -> tuple[dict, list[mp.Upload]]:
    max_bytes = services().settings.max_upload_bytes
    if request.mimetype == "multipart/form-data":
        return _multipart_report(max_bytes)
    raw = request.get_data(cache=True)
    if request.mimetype == "application/json":
        return _parse_json(raw, openapi.REPORT_REQUEST), []
    if not raw and not request.mimetype:
        return {}, []  # 一键申报 with nothing typed: the household's data is enough
    raise mp.UnsupportedMediaType("请以 JSON 或 multipart/form-data 格式提交", code="unsupported_media_type")


@bp.post("/reports")
def submit_report():
    user = authed()
    key = _idempotency_key()
    data, uploads = _report_input()
    s = services()
    receipt, replayed = mp.submit_report(
        s.ctx, user_id=user.id, idempotency_key=key, report=mp.ReportRequest(**data), photos=uploads,
        upload_root=s.settings.instance_path, max_photo_bytes=s.settings.max_upload_bytes,
    )
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return ok(receipt, 201, headers)


@bp.get("/reports")
def list_reports():
    user = authed()
    raw = request.args.get("limit", "20")
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 50:
        raise ValidationError(T.FIELD_RANGE.format(field="limit"), field="limit", code="range")
    items = mp.my_reports(services().ctx, user_id=user.id, limit=int(raw))
    return ok({"items": items})


def _ref(ref: str) -> str:
    if not _REF_RE.match(ref):
        raise mp.NotFound(T.REPORT_NOT_FOUND, field="ref")
    return ref.upper()


@bp.get("/reports/<ref>")
def get_report(ref: str):
    user = authed()
    return ok(mp.report_detail(services().ctx, user_id=user.id, ref=_ref(ref)))


@bp.post("/reports/<ref>/photos")
def add_photo(ref: str):
    user = authed()
    ref = _ref(ref)
    if request.mimetype != "multipart/form-data":
        raise mp.UnsupportedMediaType("请以 multipart/form-data 格式上传照片", code="unsupported_media_type")
    s = services()
    form, files = _multipart()
    for name in list(form.keys()) + list(files.keys()):
        if name != "photo":
            raise ValidationError(T.FIELD_UNKNOWN.format(field=name[:40]), field=name[:40], code="unknown_field")
    photos = files.getlist("photo")
    if len(photos) != 1:
        code = "required" if not photos else "too_many"
        msg = T.FIELD_MISSING.format(field="photo") if not photos else T.FIELD_TOO_MANY.format(field="photo", n=1)
        raise ValidationError(msg, field="photo", code=code)
    upload = _read_upload(photos[0], field="photo", max_bytes=s.settings.max_upload_bytes)
    view, created = mp.add_photo(s.ctx, user_id=user.id, ref=ref, photo=upload,
                                 upload_root=s.settings.instance_path, max_photo_bytes=s.settings.max_upload_bytes)
    return ok(view, 201 if created else 200)


# --- questions -----------------------------------------------------------------------------


@bp.post("/ask")
def ask():
    user = authed(required=False)
    body = json_body("POST", "/ask")
    answer = mp.ask(services().ctx, question=body["question"], region=body.get("region"),
                    offset=body.get("offset", 0), user_id=user.id if user else None)
    return ok(answer)


@bp.get("/policy/topics")
def policy_topics():
    return ok({"topics": mp.policy_topics()})


@bp.get("/openapi.json")
def openapi_document():
    return jsonify(openapi.build())
