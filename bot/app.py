"""The application factory: settings → services → surfaces → error handlers → CLI."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, jsonify
from flask.sessions import SecureCookieSessionInterface

from .errors import register_error_handlers
from .services import Services, build_services
from .settings import Settings

#: Each surface package exposes ``init_app(app, services)``.
SURFACES: tuple[str, ...] = (
    "bot.wechat",
    "bot.console",
    "bot.miniprogram",
)

#: Paths that never use the cookie session: WeChat's servers send no cookies and get none.
SESSIONLESS_PREFIXES: tuple[str, ...] = ("/wechat",)


class _CookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie session, not opened at all for :data:`SESSIONLESS_PREFIXES`.

    Opening it builds a signing serializer for every request: about 30 µs, a twentieth of the CPU
    of a one-click report under a flood. ``/wechat`` gets Flask's null session instead (writing
    to it is an error, which is what it should be there).
    """

    def open_session(self, app, request):
        if request.path.startswith(SESSIONLESS_PREFIXES):
            return None  # Flask falls back to make_null_session
        return super().open_session(app, request)


def create_app(overrides: Mapping[str, Any] | None = None, *, services: Services | None = None) -> Flask:
    """Build the service. ``overrides`` take precedence over ``HUINONG_*`` environment variables."""
    settings = services.settings if services else Settings.from_env(overrides=overrides).validate()
    _configure_logging(settings.log_level)
    services = services or build_services(settings)

    app = Flask("bot", instance_path=str(settings.instance_path))
    app.config.update(
        SECRET_KEY=services.secret_key,
        MAX_CONTENT_LENGTH=max(settings.max_upload_bytes, settings.max_body_bytes) + 64 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.cookie_secure,
        PERMANENT_SESSION_LIFETIME=dt.timedelta(hours=settings.session_hours),
        JSON_AS_ASCII=False,
    )
    app.json.ensure_ascii = False
    app.session_interface = _CookieSessions()
    app.extensions["huinong"] = services

    @app.get("/healthz")
    def healthz():
        from sqlalchemy import text

        status: dict[str, Any] = {"ok": True}
        try:
            with services.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            status["database"] = {"ok": True, "backend": services.engine.dialect.name}
        except Exception as exc:  # report, don't crash: this is the health check
            # Anyone the proxy lets through may read this: status words here, the details in the log.
            logging.getLogger(__name__).warning("health check: database unavailable: %s", exc)
            status["ok"] = False
            status["database"] = {"ok": False, "error": "unavailable (see the service log)"}
        try:
            status["index"] = {"ok": True, **services.knowledge().status()}
        except Exception as exc:
            logging.getLogger(__name__).warning("health check: search index unavailable: %s", exc)
            status["ok"] = False
            status["index"] = {"ok": False, "error": "unavailable: is it built (`huinong build-index`)? Details in the log"}
        return jsonify(status), 200 if status["ok"] else 503

    import importlib

    for name in SURFACES:
        importlib.import_module(name).init_app(app, services)

    register_error_handlers(app)

    from .cli import register_cli

    register_cli(app)
    return app


def _configure_logging(level: str) -> None:
    """Log at ``level`` and mask ID numbers and phones in every record, whoever logs it."""
    from handlers.pii import PiiMaskingFilter

    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO))
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, PiiMaskingFilter) for f in handler.filters):
            handler.addFilter(PiiMaskingFilter())


def services_of(app: Flask) -> Services:
    return app.extensions["huinong"]
