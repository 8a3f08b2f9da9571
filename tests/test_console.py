"""The console over HTTP (Flask's test client): login, sessions, CSRF, lockout, scoping, actions,
escaping, reveal, export, audit page, evidence files and 一户一码 against the loopback WeChat fake."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlmodel import Session, select

from bot.app import create_app
from bot.services import build_services
from storage.models import Attachment, AuditLog, CaseEvent, StaffUser
from tests.conftest import make_settings
from tests.console_support import FakeKB, get_case, report
from tests.fake_wechat_api import FakeWeChatAPI

TOKEN_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
VERSION_RE = re.compile(r'name="version" value="([^"]+)"')


class Staff:
    """Logs a staff member in through the real form and posts with the page's CSRF token (AuthActions)."""

    def __init__(self, app, passwords):
        self.app = app
        self.passwords = passwords
        self.client = app.test_client()

    def token(self, path="/console/login") -> str:
        return TOKEN_RE.search(self.client.get(path).get_data(as_text=True)).group(1)

    def login(self, username: str, password: str | None = None):
        tok = self.token()
        return self.client.post("/console/login", data={
            "username": username, "password": password if password is not None else self.passwords[username],
            "csrf_token": tok})

    def case_page(self, case_id: int):
        return self.client.get(f"/console/cases/{case_id}")

    def act(self, case_id: int, action: str, **fields):
        page = self.case_page(case_id).get_data(as_text=True)
        data = {"csrf_token": TOKEN_RE.search(page).group(1), "action": action}
        m = VERSION_RE.search(page)
        if m:
            data["version"] = m.group(1)
        data.update(fields)
        return self.client.post(f"/console/cases/{case_id}/act", data=data)


@pytest.fixture
def env(services, demo):
    services.set_knowledge(FakeKB())
    app = create_app(services=services)
    app.config["TESTING"] = True
    passwords = {a.username: a.password for a in demo.accounts}
    return app, services.ctx, passwords


@pytest.fixture
def staff(env):
    app, _ctx, passwords = env
    return lambda: Staff(app, passwords)


def _audit(ctx, action):
    with Session(ctx.engine) as s:
        return list(s.exec(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)))


def _events(ctx, case_id):
    with Session(ctx.engine) as s:
        return list(s.exec(select(CaseEvent).where(CaseEvent.case_id == case_id)))


# --- login, sessions, CSRF -------------------------------------------------------------------------


def test_pages_need_a_login(staff):
    s = staff()
    r = s.client.get("/console/")
    assert r.status_code == 302 and r.headers["Location"].startswith("/console/login")
    assert s.client.get("/console/cases/1").status_code == 302
    r = s.client.get("/console/login")
    assert r.status_code == 200 and "工作人员登录" in r.get_data(as_text=True)


def test_login_sets_a_hardened_cookie_and_audits(env, staff):
    _app, ctx, _pw = env
    s = staff()
    r = s.login("chengguan")
    assert r.status_code == 302 and r.headers["Location"] == "/console/"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "城关镇 周干事" in s.client.get("/console/").get_data(as_text=True)
    assert _audit(ctx, "login")[0].actor_name == "chengguan"


def test_cookie_is_secure_when_configured(tmp_path):
    svc = build_services(make_settings(tmp_path, cookie_secure=True))
    from handlers.demo import load_demo

    demo = load_demo(svc.ctx)
    app = create_app(services=svc)
    s = Staff(app, {a.username: a.password for a in demo.accounts})
    assert "Secure" in s.login("county").headers["Set-Cookie"]
    svc.engine.dispose()


def test_wrong_password_then_lockout_even_for_the_right_one(env, staff):
    _app, ctx, pw = env
    s = staff()
    r = s.login("chengguan", "wrong-password")
    assert r.status_code == 401 and "用户名或密码不正确" in r.get_data(as_text=True)
    for _ in range(4):
        r = s.login("chengguan", "wrong-password")
    assert r.status_code == 403 and "锁定" in r.get_data(as_text=True)
    r = s.login("chengguan", pw["chengguan"])
    assert r.status_code == 403 and "锁定" in r.get_data(as_text=True)
    assert s.client.get("/console/").status_code == 302  # not logged in
    assert len(_audit(ctx, "login_failed")) == 5 and len(_audit(ctx, "login_locked")) == 1
    with Session(ctx.engine) as db:
        staff_row = db.exec(select(StaffUser).where(StaffUser.username == "chengguan")).one()
        assert staff_row.locked_until is not None
    r = s.login("nobody", "whatever")
    assert r.status_code == 401 and "用户名或密码不正确" in r.get_data(as_text=True)


def test_login_without_csrf_is_refused(env, staff):
    _app, ctx, pw = env
    s = staff()
    s.client.get("/console/login")
    r = s.client.post("/console/login", data={"username": "county", "password": pw["county"]})
    assert r.status_code == 400 and "安全校验" in r.get_data(as_text=True)
    assert s.client.get("/console/").status_code == 302
    assert _audit(ctx, "csrf_refused") and not _audit(ctx, "login")


def test_open_redirect_after_login_is_ignored(env, staff):
    _app, _ctx, pw = env
    s = staff()
    tok = s.token()
    r = s.client.post("/console/login", data={"username": "county", "password": pw["county"], "csrf_token": tok,
                                              "next": "//evil.example/console/"})
    assert r.headers["Location"] == "/console/"


def test_logout_kills_the_session_even_for_a_copied_cookie(env, staff):
    s = staff()
    s.login("county")
    cookie = s.client.get_cookie("session").value
    tok = TOKEN_RE.search(s.client.get("/console/").get_data(as_text=True)).group(1)
    assert s.client.post("/console/logout", data={"csrf_token": tok}).status_code == 302
    thief = staff()
    thief.client.set_cookie("session", cookie)
    assert thief.client.get("/console/").status_code == 302


def test_session_token_from_another_session_is_refused(staff):
    a, b = staff(), staff()
    a.login("county")
    b.login("county")
    case_token = TOKEN_RE.search(a.client.get("/console/").get_data(as_text=True)).group(1)
    r = b.client.post("/console/export", data={"csrf_token": case_token})
    assert r.status_code == 400


def test_cross_origin_post_is_refused(env, staff):
    _app, ctx, _pw = env
    s = staff()
    s.login("county")
    tok = TOKEN_RE.search(s.client.get("/console/").get_data(as_text=True)).group(1)
    r = s.client.post("/console/export", data={"csrf_token": tok}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 400 and not _audit(ctx, "export")


def test_security_headers(staff):
    s = staff()
    r = s.client.get("/console/login")
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Frame-Options"] == "DENY" and r.headers["Cache-Control"] == "no-store"


# --- queue and case pages ---------------------------------------------------------------------------


def test_queue_lists_urgent_first_and_highlights_overdue(env, staff):
    _app, ctx, _pw = env
    late = report(ctx, head="张建国", now=dt.datetime.now(dt.UTC) - dt.timedelta(days=30))
    urgent = report(ctx, head="王大山", urgent=True)
    s = staff()
    s.login("chengguan")
    html = s.client.get("/console/").get_data(as_text=True)
    assert html.index(urgent.ref) < html.index(late.ref)
    assert "绿色通道" in html and "已超期" in html and "row-overdue" in html
    assert "139****0001" in html and "13912340001" not in html


def test_bad_filter_gets_a_chinese_message_not_a_500(staff):
    s = staff()
    s.login("county")
    r = s.client.get("/console/?step=drop+table")
    assert r.status_code == 400 and "筛选条件不正确" in r.get_data(as_text=True)
    r = s.client.get("/console/?after=%%%")
    assert r.status_code == 400 and "Traceback" not in r.get_data(as_text=True)


def test_township_clerk_cannot_open_another_townships_case(env, staff):
    _app, ctx, _pw = env
    theirs = report(ctx, head="赵兰芳")  # 宋家镇
    s = staff()
    s.login("chengguan")
    r = s.client.get(f"/console/cases/{theirs.id}")
    assert r.status_code == 404 and "不在您负责的区域内" in r.get_data(as_text=True)
    assert theirs.ref not in r.get_data(as_text=True)
    tok = TOKEN_RE.search(s.client.get("/console/").get_data(as_text=True)).group(1)
    r = s.client.post(f"/console/cases/{theirs.id}/act", data={"csrf_token": tok, "action": "note", "note": "x"})
    assert r.status_code == 404
    r = s.client.post(f"/console/cases/{theirs.id}/reveal", data={"csrf_token": tok})
    assert r.status_code == 404 and not _audit(ctx, "reveal")
    assert len(_events(ctx, theirs.id)) == 1
    other = staff()
    other.login("songjia")
    assert other.client.get(f"/console/cases/{theirs.id}").status_code == 200


def test_advance_a_step_and_see_it_on_the_timeline(env, staff):
    _app, ctx, _pw = env
    case = report(ctx, head="张建国")
    s = staff()
    s.login("longwan")
    page = s.case_page(case.id).get_data(as_text=True)
    assert "核实预警，安排入户" in page and "县级审定" not in page.split("可办理的操作")[1].split("相关政策条款")[0]
    r = s.act(case.id, "advance", step="warning", note="电话核实，情况属实")
    assert r.status_code == 302
    page = s.client.get(r.headers["Location"]).get_data(as_text=True)
    assert "已完成“风险预警”" in page and "电话核实，情况属实" in page and "完成“风险预警”" in page
    assert get_case(ctx, case.id).step == "visit"
    assert "先诊疗后付费" in page  # the clause for 因病


def test_replayed_form_and_out_of_order_step_change_nothing(env, staff):
    _app, ctx, _pw = env
    case = report(ctx, head="张建国")
    s = staff()
    s.login("longwan")
    page = s.case_page(case.id).get_data(as_text=True)
    form = {"csrf_token": TOKEN_RE.search(page).group(1), "version": VERSION_RE.search(page).group(1),
            "action": "advance", "step": "warning", "note": "第一次"}
    assert s.client.post(f"/console/cases/{case.id}/act", data=form).status_code == 302
    r = s.client.post(f"/console/cases/{case.id}/act", data=form)  # replay
    assert r.status_code == 409 and "风险预警" in r.get_data(as_text=True)
    r = s.act(case.id, "advance", step="township", note="跳步")
    assert r.status_code == 409 and "按顺序" in r.get_data(as_text=True)
    r = s.act(case.id, "note", note="旧表单", version="20200101000000000000")
    assert r.status_code == 409 and "刷新" in r.get_data(as_text=True)
    assert get_case(ctx, case.id).step == "visit" and len(_events(ctx, case.id)) == 2


def test_post_without_csrf_changes_nothing(env, staff):
    _app, ctx, _pw = env
    case = report(ctx, head="张建国")
    s = staff()
    s.login("longwan")
    page = s.case_page(case.id).get_data(as_text=True)
    r = s.client.post(f"/console/cases/{case.id}/act", data={
        "action": "advance", "step": "warning", "version": VERSION_RE.search(page).group(1)})
    assert r.status_code == 400
    r = s.client.post(f"/console/cases/{case.id}/act", data={
        "action": "advance", "step": "warning", "version": VERSION_RE.search(page).group(1), "csrf_token": "forged"})
    assert r.status_code == 400
    assert get_case(ctx, case.id).step == "warning" and len(_audit(ctx, "csrf_refused")) == 2


def test_role_not_allowed_gets_403_with_a_message(env, staff):
    _app, ctx, _pw = env
    case = report(ctx, head="张建国")
    s = staff()
    s.login("chengguan")
    r = s.act(case.id, "advance", step="warning", note="乡镇核实")  # allowed: township may verify a warning
    assert r.status_code == 302
    r = s.act(case.id, "advance", step="visit", note="乡镇代为入户")
    assert r.status_code == 403 and "应由村级办理" in r.get_data(as_text=True)
    assert get_case(ctx, case.id).step == "visit"


def test_overlong_note_is_refused(env, staff):
    _app, ctx, _pw = env
    case = report(ctx, head="张建国")
    s = staff()
    s.login("longwan")
    r = s.act(case.id, "advance", step="warning", note="长" * 1001)
    assert r.status_code == 400 and "最多 1000 字" in r.get_data(as_text=True)
    assert get_case(ctx, case.id).step == "warning"


def test_html_and_script_are_escaped_everywhere(env, staff):
    _app, ctx, _pw = env
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    case = report(ctx, head=None, village_name="龙湾村", name="<b>坏人</b>", description=evil)
    s = staff()
    s.login("longwan")
    assert s.act(case.id, "note", note=evil).status_code == 302
    assert s.act(case.id, "mark_urgent", reason=evil[:100]).status_code == 302
    for html in (s.case_page(case.id).get_data(as_text=True), s.client.get("/console/").get_data(as_text=True),
                 s.client.get("/console/?q=" + "<script>").get_data(as_text=True)):
        assert "<script>alert" not in html and "<img src=x" not in html and "<b>坏人</b>" not in html
    page = s.case_page(case.id).get_data(as_text=True)
    assert "&lt;script&gt;alert(" in page and "&lt;b&gt;坏人&lt;/b&gt;" in page


def test_reveal_shows_full_values_once_and_is_audited(env, staff):
    _app, ctx, _pw = env
    case = report(ctx, head="张建国")
    s = staff()
    s.login("longwan")
    page = s.case_page(case.id).get_data(as_text=True)
    assert "610929********0018" in page and "610929196805120018" not in page and ">显示<" in page
    tok = TOKEN_RE.search(page).group(1)
    r = s.client.post(f"/console/cases/{case.id}/reveal", data={"csrf_token": tok})
    assert r.status_code == 200 and "610929196805120018" in r.get_data(as_text=True)
    assert r.headers["Cache-Control"] == "no-store"
    assert "610929196805120018" not in s.case_page(case.id).get_data(as_text=True)  # masked again
    assert _audit(ctx, "reveal")[0].target == case.ref
    assert s.client.post(f"/console/cases/{case.id}/reveal").status_code == 400  # no CSRF: refused


def test_export_download_masked_and_audited(env, staff):
    _app, ctx, _pw = env
    report(ctx, head="张建国")
    s = staff()
    s.login("chengguan")
    page = s.client.get("/console/").get_data(as_text=True)
    tok = TOKEN_RE.search(page).group(1)
    assert "含完整身份证号" not in page
    r = s.client.post("/console/export", data={"csrf_token": tok, "risk": "illness"})
    assert r.status_code == 200 and r.mimetype == "text/csv" and "attachment" in r.headers["Content-Disposition"]
    body = r.get_data().decode("utf-8-sig")
    assert "610929********0018" in body and "610929196805120018" not in body
    r = s.client.post("/console/export", data={"csrf_token": tok, "unmasked": "1"})
    assert r.status_code == 403 and "不能导出" in r.get_data(as_text=True)
    county = staff()
    county.login("county")
    tok = TOKEN_RE.search(county.client.get("/console/").get_data(as_text=True)).group(1)
    r = county.client.post("/console/export", data={"csrf_token": tok, "unmasked": "1"})
    assert "610929196805120018" in r.get_data().decode("utf-8-sig")
    assert [a.actor_name for a in _audit(ctx, "export")] == ["chengguan", "county"]


def test_audit_page_is_for_admins(env, staff):
    _app, ctx, _pw = env
    case = report(ctx, head="张建国")
    s = staff()
    s.login("longwan")
    s.act(case.id, "advance", step="warning", note="ok")
    assert s.client.get("/console/audit").status_code == 403
    admin = staff()
    admin.login("admin")
    html = admin.client.get("/console/audit").get_data(as_text=True)
    assert "办理环节" in html and case.ref in html and "登录" in html
    html = admin.client.get("/console/audit?action=step").get_data(as_text=True)
    assert case.ref in html and "longwan" in html


def test_green_channel_first_aid_through_the_page(env, staff):
    _app, ctx, _pw = env
    case = report(ctx, head="张建国", urgent=True)
    s = staff()
    s.login("chengguan")
    r = s.act(case.id, "first_aid", kind="temporary", amount="1500", note="先行发放临时救助金")
    assert r.status_code == 302
    page = s.client.get(r.headers["Location"]).get_data(as_text=True)
    assert "已先行救助" in page and "1500 元" in page
    assert get_case(ctx, case.id).step == "warning"


def test_duplicate_flag_and_one_click_merge(env, staff):
    _app, ctx, _pw = env
    first = report(ctx, head="张建国")
    second = report(ctx, head="张建国")
    s = staff()
    s.login("chengguan")
    page = s.case_page(second.id).get_data(as_text=True)
    assert "疑似重复" in page and f"一键合并到 {first.ref}" in page
    assert "疑似重复" in s.client.get("/console/").get_data(as_text=True)
    r = s.act(second.id, "merge", into_id=str(first.id))
    assert r.status_code == 302
    assert get_case(ctx, second.id).merged_into_id == first.id
    assert second.ref in s.case_page(first.id).get_data(as_text=True)


def test_county_decision_through_the_page(env, staff):
    _app, ctx, _pw = env
    from tests.console_support import drive

    case = report(ctx, head="张建国")
    drive(ctx, case.id, "county")
    s = staff()
    s.login("county")
    r = s.act(case.id, "decide", outcome="rejected", reason="")
    assert r.status_code == 400 and "请填写不予纳入的原因" in r.get_data(as_text=True)
    r = s.act(case.id, "decide", outcome="monitored", monitoring_type="marginal", note="同意纳入")
    assert r.status_code == 302
    c = get_case(ctx, case.id)
    assert (c.outcome, c.monitoring_type, c.step) == ("monitored", "marginal", "assistance")


# --- evidence files ---------------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def test_evidence_upload_is_checked_stored_and_viewed_with_audit(env, staff):
    import io

    _app, ctx, _pw = env
    case = report(ctx, head="张建国")
    s = staff()
    s.login("longwan")
    r = s.act(case.id, "advance", step="warning", note="带证据",
              evidence_file=(io.BytesIO(b"#!/bin/sh\nrm -rf /"), "photo.png", "image/png"))
    assert r.status_code == 400 and "JPG、PNG" in r.get_data(as_text=True)
    assert get_case(ctx, case.id).step == "warning"
    r = s.act(case.id, "advance", step="warning", note="带证据", evidence="入户照片 1 张",
              evidence_file=(io.BytesIO(PNG), "photo.png", "image/png"))
    assert r.status_code == 302
    with Session(ctx.engine) as db:
        att = db.exec(select(Attachment).where(Attachment.case_id == case.id)).one()
    r = s.client.get(f"/console/attachments/{att.id}")
    assert r.status_code == 200 and r.get_data() == PNG
    assert _audit(ctx, "view_file")[0].target == case.ref
    other = staff()
    other.login("songjia")
    assert other.client.get(f"/console/attachments/{att.id}").status_code == 404


# --- 一户一码 ------------------------------------------------------------------------------------------


def _village_id(ctx, name):
    from storage.models import Region

    with Session(ctx.engine) as db:
        return db.exec(select(Region).where(Region.name == name)).one().id


def test_household_codes_without_wechat_configured_still_list_households(env, staff):
    _app, ctx, _pw = env
    s = staff()
    s.login("longwan")
    assert "龙湾村" in s.client.get("/console/villages").get_data(as_text=True)
    html = s.client.get(f"/console/villages/{_village_id(ctx, '龙湾村')}/codes").get_data(as_text=True)
    assert "张建国" in html and "李秀英" in html and "未配置公众号" in html
    assert s.client.get(f"/console/villages/{_village_id(ctx, '双喜村')}/codes").status_code == 404


def test_household_codes_from_the_wechat_api_rendered_locally(tmp_path):
    pytest.importorskip("segno", reason="segno (the QR renderer) is not installed: it belongs in pyproject's dependencies")
    from handlers.demo import load_demo

    with FakeWeChatAPI() as api:
        svc = build_services(make_settings(tmp_path, wechat_api_base=api.base_url, wechat_appid=api.appid,
                                           wechat_secret=api.secret))
        demo = load_demo(svc.ctx)
        app = create_app(services=svc)
        s = Staff(app, {a.username: a.password for a in demo.accounts})
        s.login("longwan")
        vid = _village_id(svc.ctx, "龙湾村")
        html = s.client.get(f"/console/villages/{vid}/codes").get_data(as_text=True)
        assert html.count('src="data:image/svg+xml') == 2  # 张建国, 李秀英
        scenes = [b["action_info"]["scene"]["scene_str"] for b in api.sent("cgi-bin/qrcode/create")]
        assert len(scenes) == 2 and all(sc.startswith("hh:") for sc in scenes)
        s.client.get(f"/console/villages/{vid}/codes")  # permanent codes are cached: no second API call
        assert len(api.sent("cgi-bin/qrcode/create")) == 2
        with Session(svc.ctx.engine) as db:
            assert len(db.exec(select(AuditLog).where(AuditLog.action == "print_codes")).all()) == 2
        api.fail_next("cgi-bin/qrcode/create", errcode=-1, count=5)
        dongba = _village_id(svc.ctx, "东坝村")
        county = Staff(app, {a.username: a.password for a in demo.accounts})
        county.login("county")
        r = county.client.get(f"/console/villages/{dongba}/codes")
        assert r.status_code == 200 and "王大山" in r.get_data(as_text=True)
        assert "暂时无法获取二维码" in r.get_data(as_text=True)
        svc.engine.dispose()


def test_no_traceback_in_any_error_page(staff):
    s = staff()
    s.login("county")
    for path in ("/console/cases/999999", "/console/attachments/999", "/console/villages/999/codes",
                 "/console/?village=abc", "/console/audit"):
        r = s.client.get(path)
        assert r.status_code in (400, 403, 404) and "Traceback" not in r.get_data(as_text=True)



def test_outcome_reaches_the_villager_through_the_outbox_worker(tmp_path):
    """County decision → outbox → the real worker → the loopback WeChat API; 45015 → template."""
    from bot.wechat.outbound import make_client
    from bot.wechat.worker import OutboxWorker
    from handlers import triage
    from handlers.demo import load_demo
    from tests.console_support import actor, bind_villager, drive, version

    with FakeWeChatAPI() as api:
        svc = build_services(make_settings(tmp_path, wechat_api_base=api.base_url, wechat_appid=api.appid,
                                           wechat_secret=api.secret, wechat_template_outcome="TPL-OUTCOME"))
        ctx = svc.ctx
        load_demo(ctx)
        uid = bind_villager(ctx, "o-zhang", "张建国")
        first = report(ctx, head="张建国", reporter_id=uid)
        drive(ctx, first.id, "county")
        triage.decide(ctx, actor(ctx, "county"), first.id, outcome="rejected", reason="人均收入高于监测标准",
                      version=version(ctx, first.id))
        worker = OutboxWorker(svc, client=make_client(svc.settings, ctx.kv, timeout=(0.5, 0.5)))
        worker.run_once()
        sent = api.sent("cgi-bin/message/custom/send")
        assert len(sent) == 1 and sent[0]["touser"] == "o-zhang"
        assert "人均收入高于监测标准" in sent[0]["text"]["content"]

        second = report(ctx, head="张建国", reporter_id=uid)
        drive(ctx, second.id, "county")
        api.fail_next("cgi-bin/message/custom/send", errcode=45015)
        triage.decide(ctx, actor(ctx, "county"), second.id, outcome="monitored", monitoring_type="marginal",
                      version=version(ctx, second.id))
        worker.run_once()
        tpl = api.sent("cgi-bin/message/template/send")
        assert len(tpl) == 1 and tpl[0]["template_id"] == "TPL-OUTCOME" and tpl[0]["touser"] == "o-zhang"
        assert tpl[0]["data"]["ref"]["value"] == second.ref and "纳入监测" in tpl[0]["data"]["status"]["value"]
        svc.engine.dispose()


def test_login_attempts_per_ip_are_throttled(env, staff):
    _app, ctx, pw = env
    s = staff()
    for i in range(30):
        assert s.login(f"nobody{i}", "x").status_code == 401
    r = s.login("county", pw["county"])  # even the right password: too many tries from this address
    assert r.status_code == 429 and "太频繁" in r.get_data(as_text=True)
    assert s.client.get("/console/").status_code == 302
