"""``/wechat``: the URL set in the official account's 服务器配置.

GET answers WeChat's URL check (the echostr). POST: read at most ``HUINONG_MAX_BODY_BYTES`` →
verify / decrypt / parse (codec) → dedupe, dispatch within the time budget (inbox) → render /
encrypt the reply (codec). Refusals are short plain-text bodies (403 forged or replayed, 400
unreadable, 413 oversized); nothing here ever answers 500 or shows a traceback.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, request

from handlers.chat_texts import SYSTEM_BUSY

from .codec import SUCCESS, Refused

log = logging.getLogger(__name__)

bp = Blueprint("wechat", __name__, url_prefix="/wechat")

_REFUSAL_TEXT = {400: "bad request", 403: "forbidden", 413: "too large", 503: "not configured"}


def _state():
    return current_app.extensions["huinong"].extras["wechat"]


def _refuse(exc: Refused) -> Response:
    log.warning("refused a /wechat request (%s): %s", exc.status, exc.reason)
    return Response(_REFUSAL_TEXT.get(exc.status, "refused"), status=exc.status, mimetype="text/plain")


def _body(limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise Refused(413, f"Content-Length {request.content_length}")
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise Refused(413, "body larger than the limit")
    return data


@bp.get("", strict_slashes=False)
def verify():
    """WeChat's server-configuration check: echo ``echostr`` for a valid signature."""
    try:
        echostr = _state().codec.verify_url(request.args)
    except Refused as exc:
        return _refuse(exc)
    return Response(echostr, mimetype="text/plain")


@bp.post("", strict_slashes=False)
def receive():
    """One message or event from WeChat."""
    state = _state()
    try:
        opened = state.codec.open(request.args, _body(state.codec.max_body))
    except Refused as exc:
        return _refuse(exc)
    try:
        text = state.inbox.handle(opened.inbound)
        body, content_type = state.codec.seal(opened.inbound, text, encrypted=opened.encrypted)
    except Exception:
        # Storage down, or a bug: tell the villager to send again (a 5xx would only show
        # WeChat's "该公众号暂时无法提供服务"); the log has the trace.
        log.exception("processing a WeChat %s failed", opened.inbound.kind)
        try:
            body, content_type = state.codec.seal(opened.inbound, SYSTEM_BUSY, encrypted=opened.encrypted)
        except Exception:
            body, content_type = SUCCESS, "text/plain; charset=utf-8"
    return Response(body, status=200, content_type=content_type)
