"""The staff triage console (server-rendered pages under ``/console``)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask, services) -> None:
    from .views import bp

    app.register_blueprint(bp)
