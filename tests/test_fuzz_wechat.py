"""Bad input at the XML endpoint: never a 5xx, never a traceback, nothing written by a refusal.

Property-based (hypothesis) over the whole ``/wechat`` path in plain and safe mode, on SQLite and
PostgreSQL (the real service, demo county, knowledge stub):

- random bytes, and valid messages of every type mutated byte by byte (flips, cuts, insertions,
  duplications, truncation), posted with a valid signature so they reach the parser; in safe
  mode also mutated *inside* the encryption (valid ciphertext of broken XML) and mutated
  ciphertext re-signed (valid signature, undecryptable);
- well-formed messages whose fields hold anything (any text, huge numbers, nested elements,
  unknown types and events, long keys);

and by hand: huge and deeply nested bodies, XXE, external DTDs, billion laughs, XInclude, wrong and
broken encodings, forged signatures, replayed timestamps, a replayed request, odd methods and
query strings. Every answer is checked with :func:`tests.leaks.assert_no_leak`.
"""

from __future__ import annotations

import base64
import os
import time

import pytest
import xmltodict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, func, select

from storage.models import Case, InboundMessage
from tests.leaks import assert_no_leak
from tests.wechat_user import FakeKnowledge, WeChatApp, sign

REFUSALS = {400: "bad request", 403: "forbidden", 413: "too large", 405: None}
#: Examples per property (``FUZZ_EXAMPLES=2000`` for a longer hunt).
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "120"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])


@pytest.fixture(params=["plain", "safe"])
def world(request, tmp_path, db_url):
    w = WeChatApp(tmp_path, db_url, mode=request.param, knowledge=FakeKnowledge())
    yield w
    w.close()


def _count(w, model) -> int:
    with Session(w.services.engine) as s:
        return s.exec(select(func.count()).select_from(model)).one()


def check(w, response, *, where: str = "", echo: str | None = None) -> int:
    """The response is a clean refusal or a WeChat reply (decryptable in safe mode), or for the URL
    check (``echo``) the echostr; returns its status."""
    body = response.get_data(as_text=True)
    status = response.status_code
    assert status < 500, f"{where}: {status} {body[:300]}"
    assert_no_leak(body, where=where)
    if status != 200:
        assert status in REFUSALS, (where, status, body[:200])
        assert REFUSALS[status] is None or body == REFUSALS[status], (where, body[:200])
        return status
    if echo is not None:
        assert body == echo, (where, body[:200])
        return status
    if body == "success":
        return status
    doc = xmltodict.parse(body)["xml"]
    if w.mode == "plain":
        assert doc["MsgType"] == "text" and doc["Content"], body[:300]
    else:
        assert set(doc) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}, body[:300]
        plain = w.user().crypto.decrypt_message(body, doc["MsgSignature"], doc["TimeStamp"], doc["Nonce"])
        inner = xmltodict.parse(plain)["xml"]
        assert_no_leak(inner.get("Content") or "", where=where)
    return status


def _query(w, ts: int | None = None, nonce: str = "7355608", encrypt: str | None = None) -> dict:
    ts_s = str(ts if ts is not None else int(time.time()))
    q = {"signature": sign(w.settings.wechat_token, ts_s, nonce), "timestamp": ts_s, "nonce": nonce,
         "openid": "o-fuzz"}
    if encrypt is not None:
        q.update(encrypt_type="aes", msg_signature=sign(w.settings.wechat_token, ts_s, nonce, encrypt))
    return q


def post_signed(w, body: bytes, *, content_type: str = "text/xml"):
    """``body`` as the request body with a valid signature (for safe mode: over its Encrypt, if any)."""
    encrypt = None
    if w.mode != "plain":
        try:
            encrypt = (xmltodict.parse(body).get("xml") or {}).get("Encrypt")
        except Exception:
            encrypt = None
        encrypt = encrypt if isinstance(encrypt, str) else ""
    return w.client.post("/wechat", query_string=_query(w, encrypt=encrypt), data=body, content_type=content_type)


def post_sealed(w, plain_xml: bytes | str):
    """``plain_xml`` (any bytes) encrypted with the account's key and signed: what only WeChat can send."""
    if w.mode == "plain":
        return post_signed(w, plain_xml if isinstance(plain_xml, bytes) else plain_xml.encode("utf-8"))
    text = plain_xml.decode("utf-8", "replace") if isinstance(plain_xml, bytes) else plain_xml
    user = w.user("o-fuzz")
    query, body = user.request(text)
    return user.post_raw(query, body)


# --- what WeChat sends, as seeds --------------------------------------------------------------------

SEEDS = [
    {"MsgType": "text", "Content": "小额信贷最多贷多少", "MsgId": 1},
    {"MsgType": "text", "Content": "申报", "MsgId": 2},
    {"MsgType": "voice", "MediaId": "m1", "Format": "amr", "Recognition": "", "MsgId": 3},
    {"MsgType": "image", "PicUrl": "http://mmbiz.example/p.jpg", "MediaId": "m2", "MsgId": 4},
    {"MsgType": "location", "Location_X": 32.8, "Location_Y": 110.1, "Scale": 15, "Label": "白河县", "MsgId": 5},
    {"MsgType": "link", "Title": "t", "Description": "d", "Url": "http://x.example/", "MsgId": 6},
    {"MsgType": "event", "Event": "CLICK", "EventKey": "REPORT"},
    {"MsgType": "event", "Event": "subscribe", "EventKey": "qrscene_hh:abc", "Ticket": "gQ"},
    {"MsgType": "event", "Event": "SCAN", "EventKey": "hh:abc", "Ticket": "gQ"},
    {"MsgType": "event", "Event": "LOCATION", "Latitude": 32.8, "Longitude": 110.1, "Precision": 30},
    {"MsgType": "event", "Event": "VIEW", "EventKey": "https://example.org/"},
    {"MsgType": "event", "Event": "TEMPLATESENDJOBFINISH", "Status": "success", "MsgID": 99},
]


def seed_xml(w, seed: dict, openid: str = "o-fuzz") -> str:
    user = w.user(openid)
    fields = user.fields(seed["MsgType"], **{k: v for k, v in seed.items() if k != "MsgType"})
    return user.xml(fields)


@st.composite
def mutated(draw, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        op = draw(st.sampled_from(["flip", "cut", "insert", "dup", "truncate", "swap"]))
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[i:i + draw(st.integers(1, 40))]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=40) | st.sampled_from(
                [b"<", b">", b"&", b"]]>", b"<![CDATA[", b"<x>", b"</xml>", b"\x00", "中".encode(), b"&amp;"]))
        elif op == "dup":
            j = draw(st.integers(i, min(len(data), i + 200)))
            data[i:i] = data[i:j]
        elif op == "truncate":
            del data[i:]
        else:
            j = draw(st.integers(0, len(data) - 1))
            data[i], data[j] = data[j], data[i]
    return bytes(data)


WEIRD_TEXT = st.text(max_size=300) | st.sampled_from(
    ["", " ", "0", "-1", "1e309", "NaN", "99999999999999999999999999999999", "申报", "进度", "更多", "好了", "同意",
     "\u202e", "\U0001f600" * 50, "<b>x</b>", "&lt;", "SB20260101-0001", "hh:" + "x" * 300, "qrscene_",
     "x" * 3000, "610929196805120018", "13912340001"])


@st.composite
def odd_message(draw) -> dict:
    msg_type = draw(st.sampled_from(["text", "voice", "image", "location", "event", "link", "video", "shortvideo",
                                     "file", "miniprogrampage", "TEXT", "Event"]) | st.text(max_size=80))
    fields: dict = {"MsgType": msg_type}
    names = ["Content", "MsgId", "MsgID", "Event", "EventKey", "MediaId", "Recognition", "PicUrl", "Location_X",
             "Location_Y", "Latitude", "Longitude", "Label", "Ticket", "Format", "ScanCodeInfo", "Status"]
    for name in draw(st.lists(st.sampled_from(names), max_size=6, unique=True)):
        fields[name] = draw(WEIRD_TEXT | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True))
    if msg_type.lower() == "event" and "Event" not in fields:
        fields["Event"] = draw(st.sampled_from(["CLICK", "subscribe", "unsubscribe", "SCAN", "VIEW", "LOCATION",
                                                 "scancode_push", "pic_weixin", "user_enter_tempsession"])
                               | st.text(max_size=60))
    return fields


def odd_xml(w, fields: dict, nested: bool) -> str:
    user = w.user("o-fuzz-" + str(abs(hash(str(fields))) % 97))
    base = user.fields(fields.pop("MsgType"))
    base.update(fields)
    parts = []
    for k, v in base.items():
        if isinstance(v, int | float):
            parts.append(f"<{k}>{v}</{k}>")
        else:
            text = str(v).replace("]]>", "]]]]><![CDATA[>")
            text = "".join(c for c in text if c in "\t\n\r" or (" " <= c and c not in "\ufffe\uffff" and not
                                                             "\ud800" <= c <= "\udfff"))
            parts.append(f"<{k}><![CDATA[{text}]]></{k}>")
    if nested:
        parts.append("<ScanCodeInfo><ScanType>qrcode</ScanType><ScanResult><x>1</x></ScanResult></ScanCodeInfo>")
    return "<xml>" + "".join(parts) + "</xml>"


# --- properties --------------------------------------------------------------------------------------


def test_random_bytes(world):
    @FUZZ
    @given(st.binary(max_size=3000) | st.text(max_size=2000).map(lambda t: t.encode("utf-8")))
    def run(body):
        check(world, post_signed(world, body), where=f"random {body[:60]!r}")

    run()


def test_valid_messages_mutated(world):
    seeds = [seed_xml(world, s).encode("utf-8") for s in SEEDS]

    @FUZZ
    @given(st.sampled_from(seeds).flatmap(mutated))
    def run(body):
        check(world, post_signed(world, body), where=f"mutated {body[:80]!r}")
        if world.mode != "plain":  # the same broken XML, properly encrypted and signed
            check(world, post_sealed(world, body), where=f"sealed mutated {body[:80]!r}")

    run()


def test_safe_mode_ciphertext_mutated_and_resigned(world):
    if world.mode == "plain":
        pytest.skip("no ciphertext in plain mode")
    user = world.user("o-fuzz-cipher")
    sealed = [user.request(seed_xml(world, s))[1] for s in SEEDS[:6]]

    @FUZZ
    @given(st.sampled_from(sealed), st.data())
    def run(body, data):
        encrypt = xmltodict.parse(body)["xml"]["Encrypt"]
        raw = base64.b64decode(encrypt)
        choice = data.draw(st.sampled_from(["b64", "bytes", "length", "appid"]))
        if choice == "b64":
            encrypt = data.draw(mutated(encrypt.encode("ascii"))).decode("latin-1")
        elif choice == "bytes":
            encrypt = base64.b64encode(data.draw(mutated(raw))).decode("ascii")
        elif choice == "length":
            encrypt = base64.b64encode(raw[: data.draw(st.integers(0, len(raw)))]).decode("ascii")
        else:
            encrypt = base64.b64encode(data.draw(st.binary(min_size=16, max_size=400))).decode("ascii")
        envelope = f"<xml><ToUserName><![CDATA[gh]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        response = world.client.post("/wechat", query_string=_query(world, encrypt=encrypt), data=envelope.encode(),
                                     content_type="text/xml")
        check(world, response, where=f"ciphertext {choice}")

    run()


def test_well_formed_messages_with_any_field_values(world):
    @FUZZ
    @given(odd_message(), st.booleans())
    def run(fields, nested):
        xml = odd_xml(world, dict(fields), nested)
        check(world, post_sealed(world, xml), where=f"fields {xml[:200]!r}")

    run()


# --- by hand ----------------------------------------------------------------------------------------

XXE = b"""<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><ToUserName>gh</ToUserName><FromUserName>o-x</FromUserName><CreateTime>1</CreateTime>
<MsgType>text</MsgType><Content>&xxe;</Content><MsgId>1</MsgId></xml>"""
EXTERNAL_DTD = b"""<?xml version="1.0"?><!DOCTYPE xml SYSTEM "http://127.0.0.1:9/evil.dtd">
<xml><FromUserName>o-x</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>x</Content></xml>"""
PARAMETER_ENTITY = b"""<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>
<xml><FromUserName>o-x</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>x</Content></xml>"""
LAUGHS = b"""<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">""" + b"".join(
    b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10)
) + b"""]><xml><FromUserName>o-x</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType>
<Content>&lol9;</Content></xml>"""
XINCLUDE = b"""<xml xmlns:xi="http://www.w3.org/2001/XInclude"><ToUserName>gh</ToUserName>
<FromUserName>o-xi</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType>
<Content><xi:include href="file:///etc/passwd" parse="text"/></Content><MsgId>77</MsgId></xml>"""


def _msg(w, content: str = "你好", openid: str = "o-hand", msg_id: int = 4242) -> str:
    return seed_xml(w, {"MsgType": "text", "Content": content, "MsgId": msg_id}, openid)


@pytest.mark.parametrize("name, body", [
    ("XXE", XXE), ("external DTD", EXTERNAL_DTD), ("parameter entity", PARAMETER_ENTITY),
    ("billion laughs", LAUGHS), ("XInclude", XINCLUDE),
])
def test_entity_tricks_are_refused_or_inert(world, name, body):
    started = time.monotonic()
    for response in (post_signed(world, body), post_sealed(world, body)):
        status = check(world, response, where=name)
        text = response.get_data(as_text=True)
        assert "root:" not in text and "/bin/" not in text
        if name != "XInclude":
            assert status in (400, 403), (name, status)
    assert time.monotonic() - started < 3, "entity expansion took too long"
    assert _count(world, Case) == 0


def test_huge_and_deeply_nested_bodies(world):
    limit = world.settings.max_body_bytes
    big = ("<xml>" + "<a>x</a>" * (limit // 8 + 10) + "</xml>").encode()
    assert check(world, post_signed(world, big), where="over the limit") == 413
    huge = b"<xml>" + b"x" * (10 * 1024 * 1024) + b"</xml>"
    assert check(world, post_signed(world, huge), where="10 MB") == 413
    deep = ("<xml><FromUserName>o</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType>"
            + "<a>" * 5000 + "</a>" * 5000 + "</xml>")
    assert check(world, post_signed(world, deep.encode()), where="deep") in (400, 403)
    assert check(world, post_sealed(world, deep), where="deep, sealed") in (400, 403)
    wide = _msg(world).replace("</xml>", "<k>v</k>" * 3000 + "</xml>")
    assert check(world, post_sealed(world, wide), where="wide") == 200
    long_text = _msg(world, content="说" * 15000, msg_id=4343)  # 45 KB of UTF-8, within the limit
    assert check(world, post_sealed(world, long_text), where="long text") == 200
    assert _count(world, Case) == 0


@pytest.mark.parametrize("name, encode", [
    ("utf-8 BOM", lambda x: b"\xef\xbb\xbf" + x.encode("utf-8")),
    ("utf-16", lambda x: ('<?xml version="1.0" encoding="UTF-16"?>' + x).encode("utf-16")),
    ("gbk declared", lambda x: ('<?xml version="1.0" encoding="GBK"?>' + x).encode("gbk")),
    ("latin-1 declared", lambda x: ('<?xml version="1.0" encoding="ISO-8859-1"?>' + x).encode("utf-8")),
    ("unknown encoding", lambda x: ('<?xml version="1.0" encoding="x-klingon"?>' + x).encode("utf-8")),
    ("broken utf-8", lambda x: x.encode("utf-8").replace("你".encode(), b"\xe4\xbd")),
    ("nul byte", lambda x: x.encode("utf-8").replace(b"<MsgType>", b"<MsgType>\x00")),
])
def test_wrong_encodings(world, name, encode):
    body = encode(_msg(world, msg_id=5000 + len(name)))
    check(world, post_signed(world, body), where=name)
    check(world, post_sealed(world, body), where=f"{name}, sealed")


def test_forged_signatures_and_replayed_timestamps(world):
    user = world.user("o-forger")
    xml = _msg(world, content="申报", openid="o-forger", msg_id=6001)
    query, body = user.request(xml)
    key = "signature" if world.mode == "plain" else "msg_signature"
    forged = [
        {**query, key: "0" * 40},
        {**query, key: query[key].upper()},
        {**query, key: query[key][:-1]},
        {**query, key: "签名" * 20},
        {k: v for k, v in query.items() if k != key},
        {**query, "nonce": query["nonce"] + "1"},
        {**query, "timestamp": str(int(query["timestamp"]) + 1)},
        {**query, "timestamp": "-1"},
        {**query, "timestamp": "1e10"},
        {**query, "timestamp": "9" * 40},
        {**query, "timestamp": ""},
        {},
    ]
    for q in forged:
        assert check(world, user.post_raw(q, body), where=f"forged {q}") == 403
    for skew in (-world.settings.timestamp_window - 5, world.settings.timestamp_window + 5, -86400 * 365):
        stale = user.request(xml, timestamp=int(time.time()) + skew)
        assert check(world, user.post_raw(*stale), where=f"timestamp {skew:+d}s") == 403
    assert _count(world, InboundMessage) == 0 and _count(world, Case) == 0


def test_a_replayed_request_is_answered_the_same_and_creates_nothing(world):
    user = world.user("o-replay")
    user.scan("hh:" + _bind_token(world))
    query, body = user.request(user.xml(user.fields("event", Event="CLICK", EventKey="REPORT")))
    first = user.read(user.post_raw(query, body))
    assert "SB" in (first.text or "")
    for _ in range(4):  # the very same bytes and query, within the window
        again = user.read(user.post_raw(query, body))
        assert again.text == first.text
    assert _count(world, Case) == 1


def _bind_token(w) -> str:
    from storage.models import Household

    with Session(w.services.engine) as s:
        return s.exec(select(Household.bind_token).where(Household.head_name == "张建国")).one()


def test_odd_methods_query_strings_and_content_types(world):
    c = world.client
    good = _query(world)
    for method in ("put", "delete", "patch"):
        check(world, getattr(c, method)("/wechat", query_string=good, data=b"<xml/>"), where=method)
    assert check(world, c.get("/wechat", query_string={**good, "echostr": "x" * 10000}), where="long echostr",
                 echo="x" * 10000) == 200
    check(world, c.get("/wechat", query_string="signature=a&signature=b&timestamp=1&timestamp=2&nonce="),
          where="repeated parameters")
    check(world, c.get("/wechat", query_string={"timestamp": "\u00b2\u00b3", "nonce": "x", "signature": "y"}),
          where="unicode digits")
    check(world, c.post("/wechat/", query_string=good, data=_msg(world, msg_id=7001).encode()), where="slash")
    for ctype in ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json", ""):
        check(world, post_signed(world, _msg(world, msg_id=7002).encode(), content_type=ctype), where=ctype)


@pytest.mark.parametrize("event", ["user_authorization_cancellation", "subscribe_msg_popup_event",
                                   "user_info_modified", "x" * 200])
def test_long_event_names_are_recorded_and_answered_success(world, event):
    """WeChat has events whose ``event:<name>`` is longer than the record's column (PostgreSQL refused them)."""
    user = world.user("o-long-event")
    reply = user.event(event, "k")
    assert reply.is_success, reply.body[:300]
    assert _count(world, InboundMessage) == 1
    assert user.resend().is_success and _count(world, InboundMessage) == 1


def test_overlong_ids_and_types_are_answered_not_refused_by_the_database(world):
    """A MsgId, MsgType or Event longer than the record's key column (forged or not) is still recorded once."""
    user = world.user("o-long-fields")
    for fields in ({"MsgType": "text", "Content": "你好", "MsgId": int("9" * 250)},
                   {"MsgType": "y" * 300, "Content": "你好"}):
        msg_type = fields.pop("MsgType")
        reply = user.send(user.fields(msg_type, **fields))
        assert reply.status == 200 and "系统繁忙" not in (reply.text or ""), reply.text
        again = user.resend()
        assert again.status == 200 and again.text == reply.text
    assert _count(world, InboundMessage) == 2
