"""QR codes for 一户一码: content from the WeChat API, image rendered locally (segno, pure Python)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from handlers.codes import QRUnavailable

log = logging.getLogger(__name__)


def qr_source(services) -> Callable[[str], str] | None:
    """``bind_token → QR content`` through the official account's API, or None when not configured."""
    settings = services.settings
    if not (settings.wechat_appid and settings.wechat_secret):
        return None
    try:
        from bot.wechat.outbound import create_household_qr, make_client
    except ImportError:  # the WeChat edge is not installed in this build
        return None
    client_box: list = []

    def source(token: str) -> str:
        try:
            if not client_box:
                client_box.append(make_client(settings, services.ctx.kv))
            result = create_household_qr(client_box[0], token)
        except Exception as exc:  # any API or network failure: the sheet says so, nothing breaks
            log.warning("household QR failed: %s", type(exc).__name__)
            raise QRUnavailable(getattr(exc, "errmsg", None) or type(exc).__name__) from exc
        url = (result or {}).get("url")
        if not url:
            raise QRUnavailable("no url in the WeChat reply")
        return str(url)

    return source


def renderer_available() -> bool:
    try:
        import segno  # noqa: F401
    except ImportError:
        return False
    return True


def qr_svg_data_uri(content: str, *, scale: int = 4) -> str:
    """An inline SVG image of ``content`` (prints sharply; needs no network)."""
    import segno

    return segno.make(content, error="m").svg_data_uri(scale=scale, border=2)
