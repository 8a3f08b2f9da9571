"""/wechat refuses only what is forged, replayed, oversized or unreadable, answers everything else,
never 500s, and records every message and event once per WeChat's dedupe key."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlmodel import Session, func, select
from wechatpy.crypto import WeChatCrypto

from bot.wechat.codec import Codec, Refused
from storage.models import Case, InboundMessage
from tests.wechat_user import FakeKnowledge, WeChatApp, new_aes_key, sign

SAMPLE = json.loads((Path(__file__).parent / "fixtures" / "wechat" / "official_sample.json").read_text("utf-8"))


@pytest.fixture
def plain(tmp_path):
    w = WeChatApp(tmp_path, knowledge=FakeKnowledge(), max_body_bytes=4096)
    yield w
    w.close()


@pytest.fixture
def safe(tmp_path):
    w = WeChatApp(tmp_path, mode="safe", knowledge=FakeKnowledge())
    yield w
    w.close()


def _count(w, model=InboundMessage) -> int:
    with Session(w.services.engine) as s:
        return s.exec(select(func.count()).select_from(model)).one()


def _query(token: str, ts: int | None = None) -> dict:
    ts = str(ts or int(time.time()))
    return {"signature": sign(token, ts, "42"), "timestamp": ts, "nonce": "42"}


def _assert_clean(response, status: int):
    body = response.get_data(as_text=True)
    assert response.status_code == status, body
    assert "Traceback" not in body and len(body) < 200


# --- WeChat's published sample vector -------------------------------------------------------------


@pytest.mark.parametrize("mode", ["compatible", "safe"])
def test_official_safe_mode_sample_vector(mode):
    codec = Codec(token=SAMPLE["token"], mode=mode, appid=SAMPLE["appid"], aes_key=SAMPLE["encoding_aes_key"])
    args = {"timestamp": SAMPLE["timestamp"], "nonce": SAMPLE["nonce"], "msg_signature": SAMPLE["msg_signature"],
            "encrypt_type": "aes"}
    opened = codec.open(args, SAMPLE["body"].encode(), now=int(SAMPLE["timestamp"]) + 1)
    expected = SAMPLE["plaintext"]
    msg = opened.inbound
    assert opened.encrypted
    assert (msg.account, msg.openid, msg.create_time, msg.msg_type, msg.content, msg.msg_id) == (
        expected["ToUserName"], expected["FromUserName"], expected["CreateTime"], expected["MsgType"],
        expected["Content"], expected["MsgId"])
    # the same request today is a replay, and one flipped character of the signature is a forgery
    with pytest.raises(Refused) as info:
        codec.open(args, SAMPLE["body"].encode())
    assert info.value.status == 403
    forged = {**args, "msg_signature": "6" + SAMPLE["msg_signature"][1:]}
    with pytest.raises(Refused) as info:
        codec.open(forged, SAMPLE["body"].encode(), now=int(SAMPLE["timestamp"]))
    assert info.value.status == 403


def test_reply_encryption_round_trips_through_wechatpy():
    key = new_aes_key()
    codec = Codec(token="tok", mode="safe", appid="wx1", aes_key=key)
    from handlers.routing import Inbound

    msg = Inbound(openid="o1", account="gh_1", msg_type="text", create_time=1)
    body, ctype = codec.seal(msg, "您好", encrypted=True)
    assert ctype.startswith("application/xml")
    import xmltodict

    doc = xmltodict.parse(body)["xml"]
    plain = WeChatCrypto("tok", key, "wx1").decrypt_message(body, doc["MsgSignature"], doc["TimeStamp"], doc["Nonce"])
    assert "<Content><![CDATA[您好]]></Content>" in plain and "<ToUserName><![CDATA[o1]]>" in plain


def test_bad_aes_key_is_a_clear_configuration_error():
    with pytest.raises(ValueError, match="HUINONG_WECHAT_AES_KEY"):
        Codec(token="t", mode="safe", appid="wx1", aes_key="*" * 43)


# --- the URL check ----------------------------------------------------------------------------------


def test_url_verification(plain):
    token = plain.settings.wechat_token
    ok = plain.client.get("/wechat", query_string={**_query(token), "echostr": "8123987"})
    assert ok.status_code == 200 and ok.get_data(as_text=True) == "8123987"
    forged = plain.client.get("/wechat", query_string={**_query("wrong"), "echostr": "x"})
    _assert_clean(forged, 403)
    old = plain.client.get("/wechat", query_string={**_query(token, int(time.time()) - 3600), "echostr": "x"})
    _assert_clean(old, 403)


# --- refusals -------------------------------------------------------------------------------------------

XXE = b"""<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><ToUserName>gh</ToUserName><FromUserName>o-x</FromUserName><CreateTime>1</CreateTime>
<MsgType>text</MsgType><Content>&xxe;</Content><MsgId>1</MsgId></xml>"""
LAUGHS = b"""<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">
<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<xml><FromUserName>o-x</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>&lol4;</Content></xml>"""


@pytest.mark.parametrize(
    "name, body, status",
    [
        ("malformed", b"<xml><MsgType>text</MsgType>", 400),
        ("not xml at all", b"hello", 400),
        ("empty", b"", 400),
        ("other root", b"<foo><MsgType>text</MsgType></foo>", 400),
        ("no MsgType", b"<xml><FromUserName>o1</FromUserName><CreateTime>1</CreateTime></xml>", 400),
        ("no FromUserName", b"<xml><MsgType>text</MsgType><CreateTime>1</CreateTime></xml>", 400),
        ("XXE", XXE, 400),
        ("billion laughs", LAUGHS, 400),
        ("oversized", b"<xml>" + b"x" * 5000 + b"</xml>", 413),
    ],
)
def test_unreadable_or_oversized_bodies_are_refused(plain, name, body, status):
    started = time.monotonic()
    response = plain.client.post("/wechat", query_string=_query(plain.settings.wechat_token), data=body,
                                 content_type="text/xml")
    _assert_clean(response, status)
    assert "root:" not in response.get_data(as_text=True)
    assert time.monotonic() - started < 2
    assert _count(plain) == 0


def test_forged_and_replayed_requests_are_refused(plain):
    user = plain.user()
    xml = user.xml(user.fields("text", Content="你好", MsgId=1))
    query, body = user.request(xml)
    _assert_clean(user.post_raw({**query, "signature": "0" * 40}, body), 403)
    _assert_clean(user.post_raw({k: v for k, v in query.items() if k != "signature"}, body), 403)
    _assert_clean(user.post_raw(*user.request(xml, timestamp=int(time.time()) - 3600)), 403)
    _assert_clean(user.post_raw(*user.request(xml, timestamp=int(time.time()) + 3600)), 403)
    assert _count(plain) == 0
    assert user.post_raw(query, body).status_code == 200  # the genuine one still goes through


def test_safe_mode_refuses_plaintext_and_foreign_ciphertext(safe):
    user = safe.user()
    token = safe.settings.wechat_token
    xml = user.xml(user.fields("text", Content="申报", MsgId=7))
    _assert_clean(user.post_raw(_query(token), xml.encode()), 403)  # plaintext: its signature covers nothing
    query, body = user.request(xml)
    _assert_clean(user.post_raw({**query, "msg_signature": "0" * 40}, body), 403)
    # correctly signed, but encrypted for another official account
    other = WeChatCrypto(token, safe.aes_key, "wx-someone-else")
    ts, nonce = str(int(time.time())), "99"
    import xmltodict

    enc = xmltodict.parse(other.encrypt_message(xml, nonce, ts))["xml"]["Encrypt"]
    foreign = f"<xml><ToUserName>gh</ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt></xml>".encode()
    q = {"timestamp": ts, "nonce": nonce, "encrypt_type": "aes", "msg_signature": sign(token, ts, nonce, enc)}
    _assert_clean(user.post_raw(q, foreign), 403)
    garbage = "Zm9vYmFy" * 8
    q = {"timestamp": ts, "nonce": nonce, "encrypt_type": "aes", "msg_signature": sign(token, ts, nonce, garbage)}
    _assert_clean(user.post_raw(q, f"<xml><Encrypt>{garbage}</Encrypt></xml>".encode()), 400)
    assert _count(safe) == 0
    assert "编号" not in (user.text("你好").text or "")  # and genuine traffic works


def test_compatible_mode_reads_only_the_signed_ciphertext(tmp_path):
    w = WeChatApp(tmp_path, mode="compatible", knowledge=FakeKnowledge())
    try:
        user = w.user()
        honest = user.xml(user.fields("text", Content="帮助", MsgId=11))
        query, body = user.request(honest)
        tampered = body.replace("<Content><![CDATA[帮助]]></Content>".encode(), "<Content><![CDATA[申报]]></Content>".encode())
        assert tampered != body
        reply = user.read(user.post_raw(query, tampered))
        assert "您可以这样用" in reply.text  # the answer to the signed 帮助, not the unsigned 申报
        assert _count(w, Case) == 0
    finally:
        w.close()


def test_unconfigured_token_refuses_everything(tmp_path):
    w = WeChatApp(tmp_path, wechat_token="")
    try:
        r = w.client.post("/wechat", query_string=_query(""), data=b"<xml/>", content_type="text/xml")
        _assert_clean(r, 403)
    finally:
        w.close()


# --- answers, records and dedupe ------------------------------------------------------------------------


@pytest.mark.parametrize("msg_type", ["video", "shortvideo", "link", "file", "something_new"])
def test_unknown_message_types_get_short_help(plain, msg_type):
    user = plain.user()
    reply = user.send(user.fields(msg_type, MediaId="m", MsgId=5))
    assert reply.status == 200 and "您可以这样用" in reply.text


@pytest.mark.parametrize("event, key", [("VIEW", "https://example.org/page"), ("LOCATION", None),
                                        ("TEMPLATESENDJOBFINISH", None), ("unsubscribe", None),
                                        ("some_future_event", "k")])
def test_events_that_expect_no_answer_get_success_and_are_recorded(plain, event, key):
    user = plain.user()
    extra = {"Latitude": 32.8, "Longitude": 110.1, "Precision": 50} if event == "LOCATION" else {}
    if event == "TEMPLATESENDJOBFINISH":
        extra = {"MsgID": 200163836, "Status": "success"}
    reply = user.event(event, key, **extra)
    assert reply.is_success
    with Session(plain.services.engine) as s:
        row = s.exec(select(InboundMessage)).one()
    assert row.source == user.openid and row.msg_type == f"event:{event.lower()}"


def test_same_msgid_from_two_villagers_is_two_messages(plain):
    a, b = plain.user("o-a"), plain.user("o-b")
    assert a.text("进度", msg_id=777).status == 200
    assert b.text("进度", msg_id=777).status == 200
    assert _count(plain) == 2


def test_two_buttons_in_one_second_are_two_events_and_a_retry_is_one(plain):
    user = plain.user()
    user.clock = int(time.time())
    ask = user.click("ASK")
    progress = user.click("PROGRESS")
    assert ask.text != progress.text and _count(plain) == 2
    again = user.resend()
    assert again.text == progress.text and _count(plain) == 2


def test_nothing_ever_answers_500(plain):
    """Even with the inbound table gone the villager gets a Chinese answer, not an error page."""
    from sqlalchemy import text

    user = plain.user()
    with plain.services.engine.begin() as conn:
        conn.execute(text("DROP TABLE inboundmessage"))
    reply = user.text("你好")
    assert reply.status == 200 and "系统繁忙" in reply.text


def test_wechat_requests_open_no_cookie_session(plain):
    """WeChat sends no cookies: /wechat gets Flask's null session (nothing signed, nothing set),
    while the console keeps its signed session cookie."""
    from flask import session

    user = plain.user("o-cookie")
    plain.client.set_cookie("session", "forged-or-stale")
    response = user.post_raw(*user.request(user.xml(user.fields("text", Content="你好", MsgId=7))))
    assert response.status_code == 200 and "Set-Cookie" not in response.headers
    null = plain.app.session_interface.is_null_session
    with plain.app.test_request_context("/wechat", method="POST"):
        assert null(session)
    with plain.app.test_request_context("/console/login"):
        assert not null(session)


@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_a_cdata_end_in_a_message_leaves_the_reply_readable(tmp_path, mode):
    """Found by the fuzz run: ``]]>`` in ToUserName or FromUserName (a forged message, written
    with ``&gt;``) was copied into the reply's CDATA and broke its XML. The reply now parses and
    carries the values intact."""
    w = WeChatApp(tmp_path, mode=mode, knowledge=FakeKnowledge())
    try:
        user = w.user("o-a]]>b")
        xml = (f"<xml><ToUserName>gh_x]]&gt;&lt;evil/&gt;</ToUserName><FromUserName>o-a]]&gt;b</FromUserName>"
               f"<CreateTime>{int(time.time())}</CreateTime><MsgType>text</MsgType>"
               "<Content>你好</Content><MsgId>9</MsgId></xml>")
        reply = user.read(user.post_raw(*user.request(xml)))
        assert reply.status == 200 and reply.fields is not None  # WeChatUser.read parsed it
        assert reply.fields["ToUserName"] == "o-a]]>b" and reply.fields["FromUserName"] == "gh_x]]><evil/>"
        assert "evil" not in reply.fields
    finally:
        w.close()
