"""The mini-program's JSON API under ``/api/v1`` (login by code2session, one-call report, my
reports, policy questions), described by the OpenAPI document at ``/api/v1/openapi.json``.
``init_app(app, services)`` wires it into the application factory."""

from __future__ import annotations


def init_app(app, services) -> None:
    from .api import bp
    from .ratelimit import RateLimiter

    app.extensions["huinong_mp_limiter"] = RateLimiter.for_settings(services.settings, services.ctx.kv)
    app.register_blueprint(bp)
