"""The Flask service and its edges (WeChat, mini-program API, staff console)."""

from .app import create_app

__all__ = ["create_app"]
