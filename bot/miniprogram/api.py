"""Blueprint ``/api/v1``: the mini-program's JSON API.

Every success is ``{"ok": true, "data": …}`` with a model of :mod:`handlers.miniprogram_models`;
every error the one shape of ``bot.errors`` (``{"ok": false, "error": {"code", "message",
"field"}}``). Bodies are validated strictly by the same models the OpenAPI document is generated
from (:mod:`.inputs`) before any use case runs.
"""

from __future__ import annotations

import logging
import re

import requests
from flask import Blueprint, current_app, g, jsonify, request
from pydantic import BaseModel
from wechatpy.exceptions import WeChatClientException

from handlers import miniprogram as mp
from handlers import miniprogram_ask as asking
from handlers import miniprogram_household as household_uc
from handlers import miniprogram_models as M
from handlers import miniprogram_texts as T
from handlers.errors import ValidationError

from . import inputs, openapi
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


def services():
    return current_app.extensions["huinong"]


def _limiter():
    return current_app.extensions["huinong_mp_limiter"]


def _ip() -> str:
    return request.remote_addr or "unknown"


# --- plumbing ------------------------------------------------------------------------------


def ok(data: BaseModel, status: int = 200, headers: dict | None = None):
    return jsonify({"ok": True, "data": data.model_dump(mode="json")}), status, headers or {}


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
    body = inputs.json_body(M.LoginRequest)
    s = services()
    from bot.wechat.outbound import WeChatNotConfigured, make_mini_client

    try:
        client = make_mini_client(s.settings, s.ctx.kv)
    except WeChatNotConfigured as exc:
        log.error("mini-program login refused: %s", exc)
        raise mp.ServiceUnavailable(T.WECHAT_NOT_CONFIGURED, code="wechat_not_configured") from exc
    try:
        result = client.wxa.code_to_session(body.code)
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
    household = household_uc.my_household(s.ctx, user.id)
    return ok(M.Login(
        token=token, token_type="Bearer", expires_at=expires, expires_in=s.settings.session_hours * 3600,
        user=M.LoginUser(id=user.id, bound=household is not None), household=household,
    ))


@bp.post("/logout")
def logout():
    authed()
    return ok(M.Logout(revoked=mp.end_session(services().ctx, g.mp_token_hash)))


# --- household -----------------------------------------------------------------------------


@bp.get("/household")
def household():
    user = authed()
    hh = household_uc.my_household(services().ctx, user.id)
    return ok(M.HouseholdState(bound=hh is not None, household=hh))


@bp.post("/household/bind")
def bind():
    user = authed()
    body = inputs.json_body(M.BindRequest)
    limiter = _limiter()
    limiter.hit("bind-user", str(user.id), limit=BIND_PER_USER, window=BIND_WINDOW, message=T.BIND_RATE_LIMITED)
    limiter.hit("bind-ip", _ip(), limit=BIND_PER_IP, window=BIND_WINDOW, message=T.BIND_RATE_LIMITED)
    ctx = services().ctx
    if body.token is not None:
        token = body.token.removeprefix("hh:")
        hh = household_uc.bind_by_token(ctx, user_id=user.id, token=token, ip=_ip())
    else:
        hh = household_uc.bind_by_identity(ctx, user_id=user.id, name=body.name, id_last6=body.id_last6,
                                           village_id=body.village_id, village=body.village, ip=_ip())
    return ok(M.HouseholdState(bound=True, household=hh))


# --- reports -------------------------------------------------------------------------------


@bp.post("/reports")
def submit_report():
    user = authed()
    key = inputs.idempotency_key()
    s = services()
    report, uploads = inputs.report_input(s.settings.max_upload_bytes)
    receipt, replayed = mp.submit_report(
        s.ctx, user_id=user.id, idempotency_key=key, report=report, photos=uploads,
        upload_root=s.settings.instance_path, max_photo_bytes=s.settings.max_upload_bytes,
    )
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return ok(receipt, 201, headers)


@bp.get("/reports")
def list_reports():
    user = authed()
    items = mp.my_reports(services().ctx, user_id=user.id, limit=inputs.list_limit())
    return ok(M.ReportList(items=items))


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
    s = services()
    upload = inputs.single_photo(s.settings.max_upload_bytes)
    view, created = mp.add_photo(s.ctx, user_id=user.id, ref=ref, photo=upload,
                                 upload_root=s.settings.instance_path, max_photo_bytes=s.settings.max_upload_bytes)
    return ok(view, 201 if created else 200)


# --- questions -----------------------------------------------------------------------------


@bp.post("/ask")
def ask():
    user = authed(required=False)
    body = inputs.json_body(M.AskRequest)
    answer = asking.ask(services().ctx, question=body.question, region=body.region, offset=body.offset,
                        user_id=user.id if user else None)
    return ok(answer)


@bp.get("/policy/topics")
def policy_topics():
    return ok(M.Topics(topics=asking.policy_topics()))


@bp.get("/openapi.json")
def openapi_document():
    return jsonify(openapi.build())
