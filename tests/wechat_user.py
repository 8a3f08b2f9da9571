"""``WeChatUser``: a villager's phone as WeChat's servers present it to ``/wechat``.

It builds the XML WeChat pushes, signs the query string exactly as WeChat does, encrypts the body
with wechatpy's ``WeChatCrypto`` in compatible and safe modes, posts it through the Flask test
client, and decrypts and parses the reply (the ``AuthActions`` idea of the Flask tutorial)::

    user = WeChatUser(client, token="t", openid="o-villager-1")
    reply = user.click("REPORT")
    assert "编号" in reply.text
    again = user.resend()          # WeChat's retry of the same message
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import time
from dataclasses import dataclass
from xml.sax.saxutils import escape

import xmltodict
from wechatpy.crypto import WeChatCrypto

_msgids = itertools.count(int(time.time()) * 1000)


def sign(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


@dataclass
class WeChatReply:
    status: int
    body: str
    #: The reply's fields (decrypted in encrypted modes), or None for "success" / a refusal.
    fields: dict | None

    @property
    def text(self) -> str | None:
        return self.fields.get("Content") if self.fields else None

    @property
    def is_success(self) -> bool:
        return self.status == 200 and self.body in ("success", "")


class WeChatUser:
    def __init__(self, client, *, token: str, openid: str = "o-villager-1", mode: str = "plain",
                 aes_key: str | None = None, appid: str | None = None, account: str = "gh_huinong_test",
                 path: str = "/wechat"):
        self.client = client
        self.token = token
        self.openid = openid
        self.mode = mode
        self.account = account
        self.path = path
        self.appid = appid
        self.crypto = WeChatCrypto(token, aes_key, appid) if mode != "plain" else None
        self.last: str | None = None  # the plaintext XML of the last message
        self.clock: int | None = None  # a fixed CreateTime, e.g. to press two buttons in one second

    # --- building what WeChat sends ----------------------------------------------------------

    def xml(self, fields: dict) -> str:
        parts = []
        for k, v in fields.items():
            parts.append(f"<{k}>{v}</{k}>" if isinstance(v, int | float) else f"<{k}><![CDATA[{v}]]></{k}>")
        return "<xml>" + "".join(parts) + "</xml>"

    def create_time(self) -> int:
        """Now, but strictly increasing per user: each press is its own event (WeChat's
        CreateTime has one-second resolution). ``clock`` pins it."""
        if self.clock is not None:
            return self.clock
        self._last_time = max(int(time.time()), getattr(self, "_last_time", 0) + 1)
        return self._last_time

    def fields(self, msg_type: str, **extra) -> dict:
        base = {"ToUserName": self.account, "FromUserName": self.openid,
                "CreateTime": self.create_time(), "MsgType": msg_type}
        base.update(extra)
        return base

    def request(self, plain_xml: str, *, timestamp: int | None = None) -> tuple[dict, bytes]:
        """(query, body) exactly as WeChat signs and (in encrypted modes) encrypts them."""
        ts = str(timestamp or int(time.time()))
        nonce = str(secrets.randbelow(10**10))
        query = {"signature": sign(self.token, ts, nonce), "timestamp": ts, "nonce": nonce, "openid": self.openid}
        if self.crypto is None:
            return query, plain_xml.encode("utf-8")
        sealed = xmltodict.parse(self.crypto.encrypt_message(plain_xml, nonce, ts))["xml"]
        encrypt = sealed["Encrypt"]
        query.update(encrypt_type="aes", msg_signature=sign(self.token, ts, nonce, encrypt))
        if self.mode == "compatible":  # the plaintext fields and the ciphertext side by side
            body = plain_xml.replace("</xml>", f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>")
        else:
            body = f"<xml><ToUserName><![CDATA[{escape(self.account)}]]></ToUserName>" \
                   f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        return query, body.encode("utf-8")

    # --- sending --------------------------------------------------------------------------------

    def post_raw(self, query: dict, body: bytes, **kw):
        return self.client.post(self.path, query_string=query, data=body, content_type="text/xml", **kw)

    def send(self, fields: dict) -> WeChatReply:
        self.last = self.xml(fields)
        return self.read(self.post_raw(*self.request(self.last)))

    def resend(self) -> WeChatReply:
        """WeChat's retry: the same message again (signed anew, as WeChat does)."""
        assert self.last is not None
        return self.read(self.post_raw(*self.request(self.last)))

    def read(self, response) -> WeChatReply:
        body = response.get_data(as_text=True)
        if response.status_code != 200 or body in ("success", ""):
            return WeChatReply(response.status_code, body, None)
        doc = xmltodict.parse(body)["xml"]
        if "Encrypt" in doc:
            assert self.crypto is not None, "an encrypted reply to a plaintext request"
            plain = self.crypto.decrypt_message(body, doc["MsgSignature"], doc["TimeStamp"], doc["Nonce"])
            doc = xmltodict.parse(plain)["xml"]
        else:
            assert self.crypto is None, "a plaintext reply in an encrypted mode"
        return WeChatReply(response.status_code, body, doc)

    # --- what a villager does -------------------------------------------------------------------

    def text(self, content: str, *, msg_id: int | None = None) -> WeChatReply:
        return self.send(self.fields("text", Content=content, MsgId=msg_id or next(_msgids)))

    def voice(self, media_id: str = "voice-media-1", recognition: str = "", *, msg_id: int | None = None):
        return self.send(self.fields("voice", MediaId=media_id, Format="amr", Recognition=recognition,
                                     MsgId=msg_id or next(_msgids)))

    def image(self, media_id: str = "image-media-1", pic_url: str = "http://mmbiz.example/pic.jpg",
              *, msg_id: int | None = None):
        return self.send(self.fields("image", PicUrl=pic_url, MediaId=media_id, MsgId=msg_id or next(_msgids)))

    def location(self, x: float = 32.81, y: float = 110.11, label: str = "白河县", *, msg_id: int | None = None):
        return self.send(self.fields("location", Location_X=x, Location_Y=y, Scale=15, Label=label,
                                     MsgId=msg_id or next(_msgids)))

    def event(self, event: str, key: str | None = None, **extra) -> WeChatReply:
        fields = self.fields("event", Event=event, **extra)
        if key is not None:
            fields["EventKey"] = key
        return self.send(fields)

    def subscribe(self, scene: str | None = None) -> WeChatReply:
        if scene is None:
            return self.event("subscribe")
        return self.event("subscribe", "qrscene_" + scene, Ticket="gQ-ticket")

    def scan(self, scene: str) -> WeChatReply:
        return self.event("SCAN", scene, Ticket="gQ-ticket")

    def click(self, key: str) -> WeChatReply:
        return self.event("CLICK", key)

    def unsubscribe(self) -> WeChatReply:
        return self.event("unsubscribe")


# --- the service under test -------------------------------------------------------------------


def new_aes_key() -> str:
    """A random EncodingAESKey (43 characters of base64 for 32 bytes), as the admin page makes."""
    import base64

    return base64.b64encode(secrets.token_bytes(32)).decode("ascii")[:43]


class WeChatApp:
    """The whole service (real settings, database, surfaces) configured for one WeChat mode."""

    APPID = "wx-oa-test"

    def __init__(self, tmp_path, db_url: str | None = None, *, mode: str = "plain", knowledge=None,
                 load_demo: bool = True, **overrides):
        from bot.app import create_app
        from bot.services import build_services
        from tests.conftest import make_settings

        self.mode = mode
        self.aes_key = new_aes_key() if mode != "plain" else ""
        values = {"wechat_mode": mode, "wechat_appid": self.APPID, "wechat_secret": "oa-secret-test"}
        if self.aes_key:
            values["wechat_aes_key"] = self.aes_key
        values.update(overrides)
        self.settings = make_settings(tmp_path, db_url, **values)
        self.services = build_services(self.settings, knowledge=knowledge)
        self.ctx = self.services.ctx
        self.demo = None
        if load_demo:
            from handlers.demo import load_demo as _load

            self.demo = _load(self.ctx)
        self.app = create_app(services=self.services)
        self.app.config["TESTING"] = True
        self.client = self.app.test_client()

    @property
    def inbox(self):
        return self.services.extras["wechat"].inbox

    def user(self, openid: str = "o-villager-1", **kw) -> WeChatUser:
        return WeChatUser(self.client, token=self.settings.wechat_token, openid=openid, mode=self.mode,
                          aes_key=self.aes_key or None, appid=self.APPID, **kw)

    def close(self) -> None:
        self.inbox.close()
        self.services.engine.dispose()


# --- a knowledge base with the real interface, for the ask step until the index fixture lands ------


@dataclass
class FakeHit:
    doc: str
    title: str
    issuer: str
    date: str
    doc_no: str
    section: str
    text: str
    start: int = 0
    end: int = 0
    score: float = 1.0
    region: str = "陕西省"


@dataclass
class FakeAnswer:
    text: str
    answerable: bool
    passages: list
    next_offset: int | None


class FakeKnowledge:
    """``answer()`` / ``search()`` / ``status()`` like ``knowledge.KnowledgeBase``, over two real
    clauses of the shipped Shaanxi plan; ``delay`` makes every answer slow."""

    HITS = [
        FakeHit("shaanxi-province-2021-linkage-plan.txt", "陕西省巩固拓展脱贫攻坚成果同乡村振兴有效衔接实施规划",
                "陕西省人民政府", "2021", "", "第四章 第二节 （三） 1.",
                "贷款额度原则上5万元（含）以下，在超出部分不贴息、不纳入风险补偿范围的前提下，"
                "对确有能力、有需求的可追加至10万元。"),
        FakeHit("shaanxi-province-2021-linkage-plan.txt", "陕西省巩固拓展脱贫攻坚成果同乡村振兴有效衔接实施规划",
                "陕西省人民政府", "2021", "", "第四章 第二节 （三） 1.",
                "坚持并进一步优化完善扶贫小额信贷政策，切实满足脱贫人口和边缘易致贫户有效信贷需求。"),
    ]

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.calls: list[tuple[str, str | None, int]] = []

    def _hits(self, question: str) -> list[FakeHit]:
        return list(self.HITS) if "贷" in question else []

    def search(self, question, region=None, k=5):
        hits = self._hits(question)[:k]
        return type("SearchResult", (), {"answerable": bool(hits), "passages": hits})()

    def answer(self, question, region=None, offset=0):
        if self.delay:
            time.sleep(self.delay)
        self.calls.append((question, region, offset))
        hits = self._hits(question)
        if offset >= len(hits):
            return FakeAnswer("抱歉，现有政策文件中没有找到能回答这个问题的内容。", False, [], None)
        h = hits[offset]
        text = f"“{h.text}”\n——《{h.title}》（{h.issuer}，{h.date}年）{h.section}"
        return FakeAnswer(text, True, [h], offset + 1 if offset + 1 < len(hits) else None)

    def status(self):
        return {"documents": 1, "passages": len(self.HITS)}
