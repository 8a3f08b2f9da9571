"""The official account's custom menu (自定义菜单) and its event keys.

WeChat allows three top-level buttons, so 我的申报 and 联系村干部 share the third. The keys are
``handlers.routing.MENU_KEYS``; a CLICK with one of them is routed to its handler.
"""

from __future__ import annotations

import json

from handlers import chat_texts as T
from handlers.routing import MENU_KEYS


def _click(name: str, key: str) -> dict:
    if key not in MENU_KEYS:
        raise ValueError(f"menu key {key!r} has no handler in handlers.routing")
    return {"type": "click", "name": name, "key": key}


def menu() -> dict:
    """The menu as WeChat's ``menu/create`` expects it."""
    return {
        "button": [
            _click(T.MENU_REPORT, "REPORT"),
            _click(T.MENU_ASK, "ASK"),
            {"name": T.MENU_MINE, "sub_button": [_click(T.MENU_PROGRESS, "PROGRESS"),
                                                  _click(T.MENU_CONTACT, "CONTACT")]},
        ]
    }


def menu_json() -> str:
    return json.dumps(menu(), ensure_ascii=False, indent=2)


def push_menu(client) -> dict:
    """Create the menu through the API (replaces the current one). Raises WeChat's error."""
    return client.menu.create(menu())
