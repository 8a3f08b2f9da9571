"""The dispatch registry: every menu key, typed word and intent has a handler, the menu and the
README agree with it, and the routing of each message type and event is what DESIGN.md §5 says."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.wechat.menu import menu
from handlers.routing import KEYWORD_MENU, MENU_KEYS, Inbound, normalize_word, registry

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_every_menu_key_has_a_handler_and_a_button():
    reg = registry()
    assert set(reg.menu) == set(MENU_KEYS)
    keys = [b["key"] for top in menu()["button"] for b in [top, *top.get("sub_button", [])] if "key" in b]
    assert sorted(keys) == sorted(MENU_KEYS)
    assert set(KEYWORD_MENU.values()) <= set(MENU_KEYS)


def test_menu_fits_wechats_limits():
    buttons = menu()["button"]
    assert len(buttons) <= 3
    for top in buttons:
        assert len(top["name"].encode()) <= 16 and len(top.get("sub_button", [])) <= 5


def test_stable_keys_and_words_are_documented():
    for key in MENU_KEYS:
        assert f"`{key}`" in README
    for word in ("申报", "我要申报", "进度", "更多", "回电"):
        assert word in README


def test_every_intent_of_the_classifier_is_routed():
    from handlers.understanding import Intent

    assert {i.value for i in Intent} <= set(registry().intents)


@pytest.mark.parametrize("event", ["view", "location", "templatesendjobfinish"])
def test_events_without_answer(event):
    from handlers.routing import no_reply

    assert registry().events[event] is no_reply


def test_dedupe_keys_follow_design():
    msg = Inbound(openid="o1", account="gh", msg_type="text", create_time=5, msg_id=99)
    assert msg.dedupe_key == "msg:99" and msg.inbound_key == "wechat:o1:99"
    a = Inbound(openid="o1", account="gh", msg_type="event", create_time=5, event="click", event_key="ASK")
    b = Inbound(openid="o1", account="gh", msg_type="event", create_time=5, event="click", event_key="PROGRESS")
    assert a.dedupe_key != b.dedupe_key  # two keys in one second are two events
    long = Inbound(openid="o1", account="gh", msg_type="event", create_time=5, event="view", event_key="x" * 500)
    assert len(long.dedupe_key) <= 200 and len(long.inbound_key) <= 160


def test_typed_words_are_normalised():
    assert normalize_word(" 进度！") == "进度" and normalize_word("我要申报。") == "我要申报"
