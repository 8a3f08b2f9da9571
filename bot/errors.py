"""One error shape per surface.

- ``/api/…``: the canonical JSON ``{"ok": false, "error": {"code", "message", "field"}}``;
- ``/wechat``: a short plain-text body (WeChat shows nothing to the villager for a 4xx anyway);
- everything else (the console): a small Chinese HTML page.

No response ever carries a traceback; unexpected errors are logged with their trace and answered 500.
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template_string, request
from werkzeug.exceptions import HTTPException

from handlers.errors import HandlerError, RateLimited

log = logging.getLogger(__name__)

_MESSAGES = {
    400: "请求格式不正确",
    401: "请先登录",
    403: "没有权限",
    404: "没有找到",
    405: "不支持的请求方式",
    409: "请求冲突",
    413: "内容太大",
    415: "不支持的内容类型",
    429: "请求太频繁，请稍后再试",
    500: "系统繁忙，请稍后再试",
}

_PAGE = """<!doctype html><html lang="zh-CN"><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{{ title }}</title>
<body style="font-family:sans-serif;max-width:40em;margin:3em auto;padding:0 1em">
<h1 style="font-size:1.4em">{{ title }}</h1><p>{{ message }}</p><p><a href="/console/">返回工作台</a></p></body></html>"""


def api_error(status: int, code: str, message: str, field: str | None = None, headers=None):
    body = jsonify({"ok": False, "error": {"code": code, "message": message, "field": field}})
    return body, status, headers or {}


def _respond(status: int, code: str, message: str, field: str | None = None, headers=None):
    path = request.path
    if path.startswith("/api/"):
        return api_error(status, code, message, field, headers)
    if path.startswith("/wechat"):
        return message, status, {"Content-Type": "text/plain; charset=utf-8", **(headers or {})}
    html = render_template_string(_PAGE, title=_MESSAGES.get(status, "出错了"), message=message)
    return html, status, headers or {}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(HandlerError)
    def _handler_error(exc: HandlerError):
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
        return _respond(exc.status, exc.code, exc.message, exc.field, headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        code = (exc.name or "error").lower().replace(" ", "_")
        return _respond(status, code, _MESSAGES.get(status, "请求有误"))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _respond(500, "internal", _MESSAGES[500])
