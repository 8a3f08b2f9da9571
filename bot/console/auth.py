"""Staff login for the console: server-side sessions, CSRF tokens, lockout, roles.

The signed Flask cookie (HttpOnly, SameSite, Secure unless ``HUINONG_COOKIE_SECURE=false``) holds
only a random session id and, before login, a CSRF token for the login form. The session itself
(staff id, CSRF token) lives in the shared store (``ctx.kv``, so every worker sees it) with the
configured lifetime; logging out deletes it, so a copied cookie is useless afterwards. A new
session id and CSRF token are issued at login (no session fixation).

Every POST under ``/console`` must carry the session's CSRF token (form field ``csrf_token`` or
header ``X-CSRF-Token``) and, when the browser sends one, an ``Origin`` of this host; otherwise it
is refused with a Chinese page and audited, and nothing runs.
"""

from __future__ import annotations

import functools
import hmac
import json
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, g, redirect, render_template, request, session, url_for

from handlers.staff import Actor, load_actor

SESSION_PREFIX = "console:session:"


def _services():
    return current_app.extensions["huinong"]


def client_ip() -> str:
    return (request.remote_addr or "")[:64]


def _ttl() -> int:
    return int(_services().settings.session_hours) * 3600


def _record(sid: str) -> dict[str, Any] | None:
    raw = _services().ctx.kv.get(SESSION_PREFIX + sid)
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def start_session(actor: Actor) -> None:
    """Issue a fresh session id and CSRF token for ``actor``."""
    end_session()
    sid = secrets.token_urlsafe(32)
    record = {"staff_id": actor.id, "csrf": secrets.token_urlsafe(32)}
    _services().ctx.kv.set(SESSION_PREFIX + sid, json.dumps(record), ttl=_ttl())
    session.clear()
    session["sid"] = sid
    session.permanent = True


def end_session() -> None:
    sid = session.get("sid")
    if sid:
        _services().ctx.kv.delete(SESSION_PREFIX + str(sid))
    session.clear()


def current_actor() -> Actor | None:
    """The logged-in staff member of this request (cached on ``g``)."""
    if "actor" in g:
        return g.actor
    actor = None
    sid = session.get("sid")
    record = _record(str(sid)) if sid else None
    if record and isinstance(record.get("staff_id"), int):
        actor = load_actor(_services().ctx, record["staff_id"])
        if actor is None:  # deactivated or deleted since login
            end_session()
    g.actor = actor
    g.csrf = record.get("csrf") if (record and actor) else None
    return actor


def csrf_token() -> str:
    """The token forms must post back: the session's, or a pre-login one for the login form."""
    current_actor()
    if g.get("csrf"):
        return g.csrf
    token = session.get("pre_csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        session["pre_csrf"] = token
    return token


def _same_origin() -> bool:
    origin = request.headers.get("Origin")
    if not origin:
        return True
    if origin == "null":
        return False
    return urlsplit(origin).netloc == request.host


def check_csrf() -> bool:
    """True when a POST carries the right token from this site."""
    if not _same_origin():
        return False
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    current_actor()
    expected = g.get("csrf") or session.get("pre_csrf") or ""
    return bool(sent and expected) and hmac.compare_digest(str(sent), str(expected))


def login_required(view: Callable) -> Callable:
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if current_actor() is None:
            if request.method == "GET":
                return redirect(url_for("console.login", next=request.full_path.rstrip("?")))
            return render_template("console/message.html", title="请先登录", message="登录已过期，请重新登录。"), 401
        return view(*args, **kwargs)

    return wrapped


def roles_required(*roles: str) -> Callable:
    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if g.actor.role not in roles:
                return render_template("console/message.html", title="没有权限",
                                       message="您的角色不能访问这个页面。"), 403
            return view(*args, **kwargs)

        return wrapped

    return decorator


def safe_next(target: str | None) -> str:
    """Only local console paths are followed after login (no open redirect)."""
    if target and target.startswith("/console/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("console.queue")
