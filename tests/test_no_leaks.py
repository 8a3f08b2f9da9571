"""No response (XML endpoint, mini-program API, console) carries a stack trace, an exception's name,
an SQL fragment, a machine path, or another user's data.

Villagers A (城关镇) and B (宋家镇) have each filed reports through WeChat and the mini-program
(:class:`tests.probes.TwoVillagers`). Everything A can do on WeChat and the API, and everything
城关镇's clerk can do in the console, is checked for B's name, ID number and phone (full and
masked), openids, reference numbers, private description and session token; and the other way
round. Then the database is dropped under a running service and every route in ``app.url_map`` is
called: the answers say "busy" or "error", never how.
"""

from __future__ import annotations

import re

import pytest
from sqlmodel import SQLModel

from storage.crypto import mask_id_number, mask_phone
from tests.api_helpers import PNG, bearer
from tests.fake_wechat_api import FakeWeChatAPI
from tests.leaks import assert_no_leak
from tests.probes import TwoVillagers, _bytes


@pytest.fixture
def api():
    with FakeWeChatAPI() as fake:
        yield fake


@pytest.fixture
def two(tmp_path, api, db_url):
    w = TwoVillagers(tmp_path, api, db_url)
    yield w
    w.services.engine.dispose()


def _body(resp) -> str:
    return resp.get_data(as_text=True)


@pytest.mark.parametrize("me, other", [("a", "b"), ("b", "a")])
def test_a_villager_never_sees_the_other_villagers_data(two, me, other):
    me, other = getattr(two, me), getattr(two, other)
    foreign = other.private()
    chat = two.wechat(me)
    for say in (lambda: chat.text("进度"), lambda: chat.click("PROGRESS"), lambda: chat.click("CONTACT"),
                lambda: chat.text("小额信贷最多贷多少"), lambda: chat.text("更多"), lambda: chat.voice("v-1"),
                lambda: chat.image("i-1"), lambda: chat.location(), lambda: chat.text("回电"),
                lambda: chat.click("REPORT"), lambda: chat.text("好了"), lambda: chat.text("帮助")):
        reply = say()
        assert reply.status == 200
        assert_no_leak(reply.body + (reply.text or ""), where="wechat", foreign=foreign)

    c = two.app.test_client()
    auth = bearer(me.mp_token)
    calls = [
        c.get("/api/v1/household", headers=auth),
        c.get("/api/v1/reports", headers=auth),
        c.get(f"/api/v1/reports/{me.refs[1]}", headers=auth),
        c.post("/api/v1/ask", json={"question": "看病能报销多少"}, headers=auth),
        c.get("/api/v1/policy/topics"),
        c.post("/api/v1/household/bind", json={"name": other.head, "id_last6": "000000", "village": other.village},
               headers=auth),
        c.post("/api/v1/reports", json={"description": "又下雨了"}, headers={**auth, "Idempotency-Key": "leak-1"}),
    ]
    for resp in calls:
        assert resp.status_code < 500
        assert_no_leak(_body(resp), where=resp.request.path, foreign=[f for f in foreign if f != other.head])
    for ref in other.refs:  # asking for the other's report by its number: 404, nothing about it
        for resp in (c.get(f"/api/v1/reports/{ref}", headers=auth),
                     c.post(f"/api/v1/reports/{ref}/photos", data={"photo": (_bytes(PNG), "p.png")},
                            headers=auth, content_type="multipart/form-data")):
            assert resp.status_code == 404, _body(resp)
            assert_no_leak(_body(resp), where=resp.request.path, foreign=[f for f in foreign if f != ref])


@pytest.mark.parametrize("clerk, mine, theirs", [("chengguan", "a", "b"), ("songjia", "b", "a"),
                                                 ("longwan", "a", "b"), ("shuangxi", "b", "a")])
def test_staff_never_see_another_regions_data(two, clerk, mine, theirs):
    me, other = getattr(two, mine), getattr(two, theirs)
    staff = two.staff(clerk)
    foreign = other.private()
    pages = [
        staff.client.get("/console/"),
        staff.client.get("/console/", query_string={"q": other.head}),
        staff.client.get("/console/", query_string={"q": other.phone}),
        staff.client.get("/console/", query_string={"q": other.refs[0][:10]}),
        staff.client.get("/console/", query_string={"village": str(other.village_id)}),
        staff.client.get("/console/villages"),
        staff.post("/console/export", {}),
        staff.client.get("/console/audit"),
    ]
    for case_id in me.case_ids:
        pages.append(staff.client.get(f"/console/cases/{case_id}"))
    for resp in pages:
        assert resp.status_code < 500, (resp.request.path, resp.status_code)
        text = _body(resp)
        # the search box shows what was typed: that is the clerk's own input, not B's data
        typed = resp.request.args.get("q", "")
        assert_no_leak(text, where=resp.request.full_path, foreign=[f for f in foreign if f not in typed])

    refused = [staff.client.get(f"/console/cases/{i}") for i in other.case_ids]
    refused += [staff.post(f"/console/cases/{i}/reveal") for i in other.case_ids]
    refused += [staff.post(f"/console/cases/{i}/act", {"action": "note", "note": "看一眼", "version": "1"})
                for i in other.case_ids]
    refused += [staff.client.get(f"/console/attachments/{other.attachment_id}"),
                staff.client.get(f"/console/villages/{other.village_id}/codes")]
    for resp in refused:
        assert resp.status_code == 404, (resp.request.path, resp.status_code)
        assert_no_leak(_body(resp), where=resp.request.path, foreign=foreign)


def test_lists_mask_and_only_an_audited_reveal_shows_full_values(two):
    a = two.a
    staff = two.staff("chengguan")
    queue = _body(staff.client.get("/console/"))
    page = _body(staff.client.get(f"/console/cases/{a.case_ids[0]}"))
    export = _body(staff.post("/console/export", {}))
    for text in (queue, page, export):
        assert a.id_number not in text and a.phone not in text
    assert mask_phone(a.phone) in page and mask_id_number(a.id_number) in page
    revealed = _body(staff.post(f"/console/cases/{a.case_ids[0]}/reveal"))
    assert a.id_number in revealed and a.phone in revealed  # the check above means something
    admin = two.staff("admin")
    assert admin.post(f"/console/cases/{a.case_ids[0]}/reveal").status_code == 403
    assert a.id_number not in _body(admin.client.get(f"/console/cases/{a.case_ids[0]}"))


def test_a_service_without_its_database_says_busy_never_how(two):
    """Every route of the application, with the tables gone under it (sessions included)."""
    app = two.app
    staff = two.staff("county")
    token = staff.token()
    a = two.a
    chat = two.wechat(a)
    SQLModel.metadata.drop_all(two.services.engine)
    api = app.test_client()
    values = {"case_id": a.case_ids[0], "attachment_id": a.attachment_id, "village_id": a.village_id,
              "ref": a.refs[0], "filename": "console.css"}
    seen = 0
    for rule in app.url_map.iter_rules():
        path = rule.rule
        for name in rule.arguments:
            path = re.sub(r"<(?:[^:<>]+:)?" + name + ">", str(values[name]), path)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            if path.startswith("/wechat") and method == "POST":
                reply = chat.text("进度")
                assert reply.status == 200 and "系统繁忙" in (reply.text or ""), reply.body
                responses = []
            elif path.startswith("/api/"):
                responses = [api.open(path, method=method, json={"question": "低保"}, headers={
                    **bearer(a.mp_token), "Idempotency-Key": "down-1"})]
            else:
                responses = [staff.client.open(path, method=method, data={"csrf_token": token, "action": "note",
                                                                          "note": "x"})]
            for resp in responses:
                assert_no_leak(_body(resp), where=f"{method} {path} ({resp.status_code})", foreign=[])
                assert resp.status_code in (200, 302, 400, 401, 403, 404, 405, 500, 503), (path, resp.status_code)
            seen += 1
    assert seen >= 25


def test_the_health_check_names_no_path_or_exception(client):
    """/healthz is reachable by anyone the load balancer lets through: status words only."""
    resp = client.get("/healthz")
    assert resp.status_code == 503 and resp.get_json()["index"]["ok"] is False
    assert_no_leak(_body(resp), where="/healthz without an index")


@pytest.mark.postgres
def test_a_service_whose_database_is_unreachable_says_busy_never_how(tmp_path, api, pg_url):
    """PostgreSQL refusing every connection (as when it is down) under a running service."""
    import psycopg

    from tests.conftest import PG_ADMIN_URL

    two = TwoVillagers(tmp_path, api, pg_url)
    staff = two.staff("county")
    token = staff.token()
    chat = two.wechat(two.a)
    name = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
    try:
        api_client = two.app.test_client()
        responses = [
            staff.client.get("/console/"), staff.client.get(f"/console/cases/{two.a.case_ids[0]}"),
            staff.client.post("/console/export", data={"csrf_token": token}),
            api_client.get("/api/v1/reports", headers=bearer(two.a.mp_token)),
            api_client.post("/api/v1/login", json={"code": "x"}),
            api_client.get("/healthz"),
        ]
        for resp in responses:
            assert resp.status_code in (302, 500, 503), (resp.request.path, resp.status_code)
            assert_no_leak(_body(resp), where=resp.request.path)
        reply = chat.text("进度")
        assert reply.status == 200 and "系统繁忙" in reply.text
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        two.services.engine.dispose()
