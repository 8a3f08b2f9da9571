"""A service with two villagers in two townships, and logged-in probes of every surface: console
staff (through the real login form, with the page's CSRF token), mini-program users (real
sessions, bound through the real use case), WeChat villagers (signed XML). Used by the leak and
authorisation tests.

Villager A is 张建国's household in 龙湾村 (城关镇); villager B is 赵兰芳's in 双喜村 (宋家镇). Each has
filed one report through WeChat (with a photo attached by the mini-program) and one through the
mini-program, with a description only they know.
"""

from __future__ import annotations

import functools
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sqlmodel import Session, select

from storage.models import Attachment, Case, Household, Region

TOKEN_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
VERSION_RE = re.compile(r'name="version" value="([^"]+)"')
REF_RE = re.compile(r"SB\d{8}-\d{4,}")

#: (username, role, what they see) of the demo county's staff.
STAFF = ("longwan", "shuangxi", "chengguan", "songjia", "county", "admin")


@functools.cache
def hash_knowledge():
    """The real knowledge base over the shipped corpus with the hash embedder (built once per run)."""
    from knowledge import KnowledgeBase
    from knowledge.embedder import HashEmbedder

    root = Path(__file__).resolve().parent.parent
    folder = Path(tempfile.mkdtemp(prefix="huinong-kb-")) / "index"
    return KnowledgeBase.build(root / "knowledge" / "data" / "corpus", folder, HashEmbedder(), progress=False)


class ConsoleStaff:
    """One staff member's browser: logs in through the form, posts with the session's CSRF token."""

    _ips = iter(range(1, 60000))

    def __init__(self, app, username: str | None = None, password: str | None = None):
        self.client = app.test_client()
        n = next(ConsoleStaff._ips)  # each browser its own address (the login limit is per IP)
        self.client.environ_base["REMOTE_ADDR"] = f"10.9.{n // 250}.{n % 250 + 1}"
        self.username = username
        if username is not None:
            token = self.token("/console/login")
            resp = self.client.post("/console/login", data={"username": username, "password": password,
                                                             "csrf_token": token})
            assert resp.status_code == 302, (username, resp.status_code, resp.get_data(as_text=True)[:300])

    def token(self, path: str = "/console/") -> str:
        page = self.client.get(path).get_data(as_text=True)
        m = TOKEN_RE.search(page) or TOKEN_RE.search(self.client.get("/console/login").get_data(as_text=True))
        return m.group(1) if m else ""

    def post(self, path: str, data: dict | None = None, **kw):
        return self.client.post(path, data={"csrf_token": self.token(), **(data or {})}, **kw)

    def version(self, case_id: int) -> str:
        m = VERSION_RE.search(self.client.get(f"/console/cases/{case_id}").get_data(as_text=True))
        return m.group(1) if m else "0"


@dataclass
class Villager:
    head: str
    village: str
    township: str
    openid: str
    mp_openid: str
    secret: str
    household_id: int = 0
    id_number: str = ""
    phone: str = ""
    mp_token: str = ""
    mp_user_id: int = 0
    refs: list[str] = field(default_factory=list)
    case_ids: list[int] = field(default_factory=list)
    attachment_id: int = 0
    village_id: int = 0

    def private(self) -> list[str]:
        """What nobody else may see of this villager."""
        from storage.crypto import mask_id_number, mask_phone

        return [self.head, self.id_number, mask_id_number(self.id_number), self.phone, mask_phone(self.phone),
                self.openid, self.mp_openid, self.secret, self.mp_token, *self.refs]


class TwoVillagers:
    """The whole service (demo county, real knowledge base, loopback WeChat API) with villagers A and B."""

    def __init__(self, tmp_path, api, db_url: str | None = None, **overrides):
        from bot.app import create_app
        from bot.services import build_services
        from handlers.demo import load_demo
        from tests.conftest import make_settings
        from tests.wechat_user import WeChatApp, WeChatUser

        values = {"wechat_appid": WeChatApp.APPID, "wechat_secret": "oa-secret-test", "wechat_api_base": api.base_url,
                  "mini_appid": api.mini_appid, "mini_secret": api.mini_secret, "rate_limit_per_minute": 100000}
        values.update(overrides)
        self.api = api
        self.settings = make_settings(tmp_path, db_url, **values)
        self.services = build_services(self.settings, knowledge=hash_knowledge())
        self.ctx = self.services.ctx
        self.passwords = {a.username: a.password for a in load_demo(self.ctx).accounts}
        self.app = create_app(services=self.services)
        self.app.config["TESTING"] = True
        self._wechat_user = WeChatUser
        self.a = Villager("张建国", "龙湾村", "城关镇", "o-villager-a", "o-mp-a", "甲家的猪圈塌了")
        self.b = Villager("赵兰芳", "双喜村", "宋家镇", "o-villager-b", "o-mp-b", "乙家老伴住院押金三万")
        for v in (self.a, self.b):
            self._settle(v)

    # --- setting up a villager through the real surfaces ------------------------------------------

    def wechat(self, villager: Villager):
        return self._wechat_user(self.app.test_client(), token=self.settings.wechat_token, openid=villager.openid)

    def _settle(self, v: Villager) -> None:
        from handlers.demo import HOUSEHOLDS
        from tests.api_helpers import PNG, bearer, mp_session

        v.id_number, v.phone = next((h[2], h[3]) for h in HOUSEHOLDS if h[0] == v.head)
        with Session(self.services.engine) as s:
            hh = s.exec(select(Household).where(Household.head_name == v.head)).one()
            v.household_id, v.village_id, token = hh.id, hh.village_id, hh.bind_token
        chat = self.wechat(v)
        chat.scan("hh:" + token)
        v.refs.append(REF_RE.search(chat.click("REPORT").text).group(0))
        chat.text("1")
        chat.text(v.secret)
        chat.text("好了")
        v.mp_token, v.mp_user_id = mp_session(self.ctx, openid=v.mp_openid)
        api = self.app.test_client()
        bound = api.post("/api/v1/household/bind", json={"token": token}, headers=bearer(v.mp_token))
        assert bound.status_code == 200, bound.get_data(as_text=True)
        made = api.post("/api/v1/reports", json={"description": v.secret + "（小程序）"},
                        headers={**bearer(v.mp_token), "Idempotency-Key": f"probe-{v.mp_openid}-1"})
        assert made.status_code == 201, made.get_data(as_text=True)
        v.refs.append(made.get_json()["data"]["ref"])
        photo = api.post(f"/api/v1/reports/{v.refs[1]}/photos", data={"photo": (_bytes(PNG), "p.png")},
                         headers=bearer(v.mp_token), content_type="multipart/form-data")
        assert photo.status_code == 201, photo.get_data(as_text=True)
        with Session(self.services.engine) as s:
            cases = list(s.exec(select(Case).where(Case.ref.in_(v.refs)).order_by(Case.id)))
            v.case_ids = [c.id for c in cases]
            v.attachment_id = s.exec(select(Attachment.id).where(Attachment.case_id.in_(v.case_ids),
                                                                 Attachment.path.is_not(None))).first()
        assert v.attachment_id, "the photo was stored as a file"

    # --- probes ------------------------------------------------------------------------------------

    def staff(self, username: str | None) -> ConsoleStaff:
        return ConsoleStaff(self.app, username, self.passwords.get(username) if username else None)

    def region_id(self, name: str) -> int:
        with Session(self.services.engine) as s:
            return s.exec(select(Region.id).where(Region.name == name)).one()


def _bytes(data: bytes):
    import io

    return io.BytesIO(data)
