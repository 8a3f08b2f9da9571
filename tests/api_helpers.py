"""Helpers for tests of the JSON API: the canonical error shape, and mini-program sessions."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_CJK = re.compile(r"[\u4e00-\u9fff]")


def assert_api_error(resp, status: int, code: str | None = None, field: str | None = None) -> dict:
    """The response is ``status`` with the one error shape; returns its ``error`` object.

    ``{"ok": false, "error": {"code": str, "message": Chinese str, "field": str | None}}``, JSON
    content type, no traceback. ``code`` and ``field`` are checked when given.
    """
    assert resp.status_code == status, f"expected {status}, got {resp.status_code}: {resp.get_data(as_text=True)[:500]}"
    assert resp.mimetype == "application/json", resp.mimetype
    body = resp.get_json()
    assert isinstance(body, dict) and set(body) == {"ok", "error"}, body
    assert body["ok"] is False
    err = body["error"]
    assert set(err) == {"code", "message", "field"}, err
    assert isinstance(err["code"], str) and err["code"], err
    assert isinstance(err["message"], str) and _CJK.search(err["message"]), f"message not Chinese: {err}"
    assert err["field"] is None or isinstance(err["field"], str), err
    text = resp.get_data(as_text=True)
    assert "Traceback" not in text and "File \"" not in text
    if code is not None:
        assert err["code"] == code, err
    if field is not None:
        assert err["field"] == field, err
    return err


def assert_ok(resp, status: int = 200) -> dict | list:
    """The response is ``status`` with ``{"ok": true, "data": …}``; returns ``data``."""
    assert resp.status_code == status, f"expected {status}, got {resp.status_code}: {resp.get_data(as_text=True)[:500]}"
    body = resp.get_json()
    assert body["ok"] is True and "data" in body, body
    return body["data"]


def mp_session(ctx, *, openid: str = "o-mp-test", hours: int = 12, now=None) -> tuple[str, int]:
    """A mini-program user and a live session made through the real functions: ``(token, user_id)``."""
    from bot.miniprogram.auth import new_token
    from handlers.miniprogram import start_session

    token, token_hash = new_token()
    user, _ = start_session(ctx, openid=openid, unionid=None, session_key="sk-test", token_hash=token_hash,
                            hours=hours, now=now)
    return token, user.id


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


# Smallest valid images of each accepted type (real headers; enough for magic-byte sniffing).
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    b"\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7\x35\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82"
)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 32 + b"\xff\xd9"
WEBP = b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00"


@dataclass
class _Hit:
    doc: str = "shaanxi_plan.txt"
    title: str = "陕西省巩固拓展脱贫攻坚成果规划"
    issuer: str = "陕西省人民政府"
    date: str = "2021-10-01"
    doc_no: str | None = None
    section: str = "第三章 第一节 （二）"
    text: str = "对脱贫不稳定户、边缘易致贫户……"
    start: int = 120
    end: int = 180
    score: float = 0.9
    region: dict = field(default_factory=lambda: {"province": "陕西省", "city": None, "county": None})
    display: str = ""


@dataclass
class _Answer:
    text: str
    answerable: bool
    passages: list
    next_offset: int | None


@dataclass
class _Search:
    answerable: bool
    passages: list


class FakeKB:
    """A stand-in with knowledge.KnowledgeBase's search()/answer() shapes; records what it was asked.

    Replace with the shared knowledge-base fixture once the knowledge package has landed.
    """

    def __init__(self):
        self.asked = []

    def search(self, question, region=None, k=5):
        return _Search(answerable=True, passages=[_Hit()])

    def answer(self, question, region=None, offset=0):
        self.asked.append((question, region, offset))
        return _Answer(text="《陕西省…规划》第三章：……", answerable=True, passages=[_Hit()], next_offset=offset + 1)
