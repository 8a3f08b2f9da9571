"""The WeChat official-account edge: the /wechat endpoint, the API client factory, the menu and
the outbox worker. ``init_app(app, services)`` wires it into the application factory."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .codec import Codec
from .inbox import Inbox

log = logging.getLogger(__name__)


@dataclass
class WeChatState:
    """The per-process objects of the edge, kept in ``services.extras["wechat"]``."""

    codec: Codec
    inbox: Inbox


def init_app(app, services) -> None:
    """Build the codec (with ``WeChatCrypto`` in compatible and safe modes) and the inbox, and
    register the blueprint at ``/wechat``."""
    from .endpoint import bp

    settings = services.settings
    codec = Codec.from_settings(settings)
    if not settings.wechat_token:
        log.warning("HUINONG_WECHAT_TOKEN is not set: /wechat refuses every request")
    services.extras["wechat"] = WeChatState(codec=codec, inbox=Inbox(services.ctx))
    app.register_blueprint(bp)
