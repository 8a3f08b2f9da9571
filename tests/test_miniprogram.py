"""The mini-program API end to end through the real application: sessions, binding, one-call
reports with Idempotency-Key (both databases, also concurrent), photos, my reports, questions,
topics, rate limits, and the one error shape for every kind of bad input (with nothing written)."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from dataclasses import dataclass

import pytest
from sqlmodel import Session, func, select

from storage.models import ApiSession, Attachment, Case, Household, IdempotencyRecord, Region, WeChatUser
from tests.api_helpers import JPEG, PNG, WEBP, FakeKB, assert_api_error, assert_ok, bearer, mp_session
from tests.conftest import make_settings


@dataclass
class Env:
    services: object
    app: object
    client: object

    @property
    def ctx(self):
        return self.services.ctx

    @property
    def engine(self):
        return self.services.engine

    def count(self, model) -> int:
        with Session(self.engine) as s:
            return s.exec(select(func.count()).select_from(model)).one()

    def household(self, head="张建国") -> Household:
        with Session(self.engine) as s:
            return s.exec(select(Household).where(Household.head_name == head)).one()

    def village(self, name="龙湾村") -> Region:
        with Session(self.engine) as s:
            return s.exec(select(Region).where(Region.name == name)).one()

    def user(self, user_id: int) -> WeChatUser:
        with Session(self.engine) as s:
            return s.get(WeChatUser, user_id)

    def bound_session(self, head="张建国", openid="o-mp-bound") -> tuple[str, int]:
        token, uid = mp_session(self.ctx, openid=openid)
        r = self.client.post("/api/v1/household/bind", json={"token": self.household(head).bind_token},
                             headers=bearer(token))
        assert_ok(r)
        return token, uid


def _env(tmp_path, db_url=None, **overrides) -> Env:
    from bot.app import create_app
    from bot.services import build_services
    from handlers.demo import load_demo

    settings = make_settings(tmp_path, db_url, **overrides)
    services = build_services(settings)
    services.ctx.knowledge = None  # no index in these tests unless one is set
    load_demo(services.ctx)
    app = create_app(services=services)
    app.config["TESTING"] = True
    return Env(services, app, app.test_client())


@pytest.fixture
def env(tmp_path):
    e = _env(tmp_path)
    yield e
    e.engine.dispose()


@pytest.fixture
def dbenv(tmp_path, db_url):
    e = _env(tmp_path, db_url)
    yield e
    e.engine.dispose()


def _report(env: Env, token: str, key: str | None, body=None, **kw):
    headers = bearer(token)
    if key is not None:
        headers["Idempotency-Key"] = key
    return env.client.post("/api/v1/reports", json=body if body is not None else {}, headers=headers, **kw)


# --- the error shape on unknown paths and methods --------------------------------------------


def test_unknown_path_and_method_get_the_one_error_shape(env):
    assert_api_error(env.client.get("/api/v1/nothing-here"), 404)
    assert_api_error(env.client.delete("/api/v1/reports"), 405)
    assert_api_error(env.client.get("/api/v1/login"), 405)


# --- sessions --------------------------------------------------------------------------------


def test_no_token_forged_token_and_malformed_header_are_401(env):
    r = env.client.get("/api/v1/household")
    assert_api_error(r, 401, "login_required")
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    forged = "hnmp_" + "A" * 43
    assert_api_error(env.client.get("/api/v1/household", headers=bearer(forged)), 401, "invalid_token")
    assert_api_error(env.client.get("/api/v1/household", headers={"Authorization": "Basic abc"}), 401,
                     "invalid_token")
    assert_api_error(env.client.get("/api/v1/household", headers=bearer("short")), 401, "invalid_token")


def test_only_the_token_hash_is_stored_and_the_session_key_is_sealed(env):
    token, uid = mp_session(env.ctx)
    with Session(env.engine) as s:
        row = s.exec(select(ApiSession).where(ApiSession.user_id == uid)).one()
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in row.token_hash
    assert row.session_key_enc and "sk-test" not in row.session_key_enc
    assert env.ctx.cipher.decrypt(row.session_key_enc) == "sk-test"
    body = env.client.get("/api/v1/household", headers=bearer(token)).get_data(as_text=True)
    assert "sk-test" not in body and "session_key" not in body


def test_expired_token_is_refused(env):
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=13)
    token, _ = mp_session(env.ctx, hours=12, now=past)
    assert_api_error(env.client.get("/api/v1/reports", headers=bearer(token)), 401, "token_expired")


def test_logout_revokes_the_token(env):
    token, _ = mp_session(env.ctx)
    assert assert_ok(env.client.post("/api/v1/logout", headers=bearer(token))) == {"revoked": True}
    assert_api_error(env.client.get("/api/v1/household", headers=bearer(token)), 401, "invalid_token")
    assert_api_error(env.client.post("/api/v1/logout", headers=bearer(token)), 401, "invalid_token")


# --- household -------------------------------------------------------------------------------


def test_bind_by_qr_token_and_read_my_household_masked(env):
    token, uid = mp_session(env.ctx)
    assert assert_ok(env.client.get("/api/v1/household", headers=bearer(token))) == {"bound": False,
                                                                                     "household": None}
    hh = env.household()
    data = assert_ok(env.client.post("/api/v1/household/bind", json={"token": "hh:" + hh.bind_token},
                                     headers=bearer(token)))
    assert data["bound"] is True and data["household"]["head_name"] == "张建国"
    got = assert_ok(env.client.get("/api/v1/household", headers=bearer(token)))["household"]
    assert got["village"] == "龙湾村" and got["township"] == "城关镇" and got["county"] == "白河县"
    assert got["id_number_masked"] == "610929********0018" and got["phone_masked"] == "139****0001"
    assert "610929196805120018" not in env.client.get("/api/v1/household", headers=bearer(token)).get_data(
        as_text=True)
    assert env.user(uid).household_id == hh.id


def test_binding_again_is_idempotent_but_a_bound_wechat_is_not_moved(env):
    token, uid = env.bound_session()
    hh = env.household()
    again = env.client.post("/api/v1/household/bind", json={"token": hh.bind_token}, headers=bearer(token))
    assert assert_ok(again)["household"]["id"] == hh.id
    other = env.household("赵兰芳")
    r = env.client.post("/api/v1/household/bind", json={"token": other.bind_token}, headers=bearer(token))
    err = assert_api_error(r, 409, "already_bound")
    assert "村干部" in err["message"]
    assert env.user(uid).household_id == hh.id


def test_bind_by_name_id_last6_and_village(env):
    token, uid = mp_session(env.ctx)
    body = {"name": "王大山", "id_last6": "08003x", "village": "东坝村"}
    data = assert_ok(env.client.post("/api/v1/household/bind", json=body, headers=bearer(token)))
    assert data["household"]["head_name"] == "王大山"
    token2, _ = mp_session(env.ctx, openid="o-2")
    body = {"name": "李秀英", "id_last6": "150027", "village_id": env.village("龙湾村").id}
    assert assert_ok(env.client.post("/api/v1/household/bind", json=body, headers=bearer(token2)))["household"][
        "head_name"] == "李秀英"


@pytest.mark.parametrize("body, status, code, fieldname", [
    ({"name": "王大山", "id_last6": "080031", "village": "东坝村"}, 404, "no_match", None),  # wrong last 6
    ({"name": "王大山", "id_last6": "08003X", "village": "龙湾村"}, 404, "no_match", None),  # wrong village
    ({"name": "王小山", "id_last6": "08003X", "village": "东坝村"}, 404, "no_match", None),  # wrong name
    ({"name": "王大山", "id_last6": "08003X", "village": "不存在村"}, 404, "village_not_found", "village"),
    ({"token": "no-such-token"}, 404, "no_match", "token"),
    ({"name": "王大山", "id_last6": "08003X"}, 400, "required", "village_id"),
    ({"name": "王大山", "id_last6": "7000", "village": "东坝村"}, 400, "pattern", "id_last6"),
    ({"token": 12345}, 400, "type", "token"),
    ({}, 400, "required", "token"),
    ({"token": "x", "extra": 1}, 400, "unknown_field", "extra"),
])
def test_bind_refuses_bad_or_unmatched_input_and_binds_nothing(env, body, status, code, fieldname):
    token, uid = mp_session(env.ctx)
    r = env.client.post("/api/v1/household/bind", json=body, headers=bearer(token))
    assert_api_error(r, status, code, fieldname)
    assert env.user(uid).household_id is None


def test_bind_is_rate_limited_per_user_with_retry_after(env):
    token, uid = mp_session(env.ctx)
    wrong = {"name": "王大山", "id_last6": "000000", "village": "东坝村"}
    for _ in range(5):
        assert_api_error(env.client.post("/api/v1/household/bind", json=wrong, headers=bearer(token)), 404)
    right = {"name": "王大山", "id_last6": "08003X", "village": "东坝村"}
    r = env.client.post("/api/v1/household/bind", json=right, headers=bearer(token))
    assert_api_error(r, 429, "rate_limited")
    assert 1 <= int(r.headers["Retry-After"]) <= 15 * 60
    assert env.user(uid).household_id is None


# --- reports ---------------------------------------------------------------------------------


def test_one_call_report_lands_once_per_idempotency_key(dbenv):
    token, uid = dbenv.bound_session()
    body = {"risk_types": ["illness"], "description": "老伴住院了，押金交不起"}
    r1 = _report(dbenv, token, "key-0001", body)
    first = assert_ok(r1, 201)
    assert "Idempotent-Replayed" not in r1.headers
    assert first["ref"].startswith("SB") and first["risk_types"] == ["illness"] and first["due_at"]
    assert first["ref"] in first["message"]
    r2 = _report(dbenv, token, "key-0001", body)
    assert assert_ok(r2, 201) == first
    assert r2.headers["Idempotent-Replayed"] == "true"
    assert dbenv.count(Case) == 1
    with Session(dbenv.engine) as s:
        case = s.exec(select(Case)).one()
    assert case.channel == "miniprogram" and case.inbound_key == f"mp:{uid}:key-0001"
    assert case.reporter_id == uid and case.household_id == dbenv.household().id


def test_same_key_with_another_body_is_409_and_changes_nothing(dbenv):
    token, _ = dbenv.bound_session()
    first = assert_ok(_report(dbenv, token, "key-2", {"description": "房子漏雨"}), 201)
    r = _report(dbenv, token, "key-2", {"description": "别的事情"})
    assert_api_error(r, 409, "idempotency_conflict", "Idempotency-Key")
    assert dbenv.count(Case) == 1
    with Session(dbenv.engine) as s:
        assert s.exec(select(Case)).one().description == "房子漏雨"
    # the key is per user: another user may use the same key
    token2, _ = dbenv.bound_session("赵兰芳", openid="o-other")
    assert assert_ok(_report(dbenv, token2, "key-2", {"description": "别的事情"}), 201)["ref"] != first["ref"]


def test_concurrent_retries_of_one_report_make_one_case(dbenv):
    token, _ = dbenv.bound_session()
    body = {"risk_types": ["housing"], "description": "房子裂缝了"}
    results, errors = [], []
    barrier = threading.Barrier(6)

    def go():
        try:
            client = dbenv.app.test_client()
            barrier.wait()
            r = client.post("/api/v1/reports", json=body, headers={**bearer(token), "Idempotency-Key": "race-1"})
            results.append((r.status_code, r.get_json()))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert {status for status, _ in results} == {201}, results
    assert len({body["data"]["ref"] for _, body in results}) == 1
    assert dbenv.count(Case) == 1 and dbenv.count(IdempotencyRecord) == 1


def test_a_refused_first_attempt_does_not_burn_the_key(dbenv):
    token, uid = mp_session(dbenv.ctx)  # unbound
    body = {"reporter_name": "孙大姐", "reporter_phone": "13912345678", "village_id": 999999, "consent": True}
    assert_api_error(_report(dbenv, token, "k-fix", body), 400, field="village_id")
    assert dbenv.count(Case) == 0 and dbenv.count(IdempotencyRecord) == 0
    body["village_id"] = dbenv.village("迎春村").id
    data = assert_ok(_report(dbenv, token, "k-fix", body), 201)
    with Session(dbenv.engine) as s:
        case = s.exec(select(Case).where(Case.ref == data["ref"])).one()
    assert case.village_id == body["village_id"] and case.household_id is None
    assert dbenv.ctx.cipher.decrypt(case.reporter_phone_enc) == "13912345678"
    assert dbenv.user(uid).consented_at is not None


def test_one_click_report_with_no_body_at_all(env):
    token, _ = env.bound_session()
    r = env.client.post("/api/v1/reports", headers={**bearer(token), "Idempotency-Key": "bare-1"})
    data = assert_ok(r, 201)
    assert data["missing"] == ["risk_types", "description"]


@pytest.mark.parametrize("body, fieldname, code", [
    ({"risk_types": "illness"}, "risk_types", "type"),
    ({"risk_types": ["sunburn"]}, "risk_types[0]", "choice"),
    ({"risk_types": [1]}, "risk_types[0]", "type"),
    ({"description": 42}, "description", "type"),
    ({"description": "x" * 2001}, "description", "too_long"),
    ({"description": "a\x00b"}, "description", "pattern"),
    ({"descripton": "typo"}, "descripton", "unknown_field"),
    ({"consent": "yes"}, "consent", "type"),
    ({"village_id": "5"}, "village_id", "type"),
    ({"reporter_phone": "12345"}, "reporter_phone", "pattern"),
    ([], None, "not_object"),
])
def test_report_with_wrong_json_types_is_400_naming_the_field_and_writes_nothing(env, body, fieldname, code):
    token, _ = env.bound_session()
    assert_api_error(_report(env, token, "bad-1", body), 400, code, fieldname)
    assert env.count(Case) == 0 and env.count(IdempotencyRecord) == 0


def test_report_bad_transport_input(env):
    token, _ = env.bound_session()
    assert_api_error(_report(env, token, None, {}), 400, "required", "Idempotency-Key")
    assert_api_error(_report(env, token, "has space", {}), 400, "pattern", "Idempotency-Key")
    assert_api_error(_report(env, token, "x" * 129, {}), 400, "pattern", "Idempotency-Key")
    headers = {**bearer(token), "Idempotency-Key": "k"}
    assert_api_error(env.client.post("/api/v1/reports", data="{not json", content_type="application/json",
                                     headers=headers), 400, "bad_json")
    assert_api_error(env.client.post("/api/v1/reports", data='{"description": NaN}',
                                     content_type="application/json", headers=headers), 400, "bad_json")
    assert_api_error(env.client.post("/api/v1/reports", data="hello", content_type="text/plain",
                                     headers=headers), 415)
    assert env.count(Case) == 0


@pytest.mark.parametrize("body, fieldname", [
    ({}, "reporter_name"),
    ({"reporter_name": "孙大姐"}, "reporter_phone"),
    ({"reporter_name": "孙大姐", "reporter_phone": "13912345678"}, "village_id"),
    ({"reporter_name": "孙大姐", "reporter_phone": "13912345678", "village_id": 1}, "consent"),
    ({"reporter_name": "孙大姐", "reporter_phone": "13912345678", "village_id": 1, "consent": False}, "consent"),
])
def test_unbound_report_needs_name_phone_village_and_consent(env, body, fieldname):
    token, _ = mp_session(env.ctx)
    assert_api_error(_report(env, token, "u-1", body), 400, field=fieldname)
    assert env.count(Case) == 0 and env.count(IdempotencyRecord) == 0


# --- photos ----------------------------------------------------------------------------------


def _multipart(env, token, key, fields, files, url="/api/v1/reports"):
    import io

    data = dict(fields)
    for name, items in files.items():
        data[name] = [(io.BytesIO(content), fname) for content, fname in items]
    headers = bearer(token)
    if key:
        headers["Idempotency-Key"] = key
    return env.client.post(url, data=data, headers=headers, content_type="multipart/form-data")


def test_report_with_photos_in_one_call(env):
    token, _ = env.bound_session()
    r = _multipart(env, token, "ph-1", {"risk_types": "disaster,housing", "description": "山洪冲了房子"},
                   {"photos": [(PNG, "a.png"), (JPEG, "b.jpg")]})
    data = assert_ok(r, 201)
    assert data["risk_types"] == ["disaster", "housing"]
    assert sorted(p["content_type"] for p in data["photos"]) == ["image/jpeg", "image/png"]
    with Session(env.engine) as s:
        rows = list(s.exec(select(Attachment)))
    assert len(rows) == 2
    root = env.services.settings.instance_path
    for row in rows:
        assert row.kind == "image" and (root / row.path).read_bytes() in (PNG, JPEG)
    # the replay stores nothing new
    r = _multipart(env, token, "ph-1", {"risk_types": "disaster,housing", "description": "山洪冲了房子"},
                   {"photos": [(PNG, "a.png"), (JPEG, "b.jpg")]})
    assert assert_ok(r, 201) == data and env.count(Attachment) == 2


def test_oversized_or_non_image_photo_is_refused_and_nothing_is_written(tmp_path):
    env = _env(tmp_path, max_upload_bytes=1024)
    token, _ = env.bound_session()
    big = PNG + b"\x00" * 2000
    assert_api_error(_multipart(env, token, "ph-2", {"description": "照片"}, {"photos": [(big, "big.png")]}),
                     413, "too_large", "photos")
    html = b"<html><script>alert(1)</script></html>"
    assert_api_error(_multipart(env, token, "ph-2", {"description": "照片"}, {"photo": [(html, "x.jpg")]}),
                     415, "unsupported_media_type", "photos")
    assert_api_error(_multipart(env, token, "ph-2", {"village_id": "abc"}, {}), 400, "type", "village_id")
    assert_api_error(_multipart(env, token, "ph-2", {"other": "x"}, {}), 400, "unknown_field", "other")
    assert env.count(Case) == 0 and env.count(Attachment) == 0 and env.count(IdempotencyRecord) == 0
    assert not (env.services.settings.instance_path / "uploads").exists()
    env.engine.dispose()


def test_a_request_over_the_body_limit_is_413_in_the_one_shape(tmp_path):
    env = _env(tmp_path, max_upload_bytes=1000, max_body_bytes=1000)
    token, _ = env.bound_session()
    body = '{"description": "' + "x" * 200_000 + '"}'
    r = env.client.post("/api/v1/reports", data=body, content_type="application/json",
                        headers={**bearer(token), "Idempotency-Key": "big-1"})
    assert_api_error(r, 413)
    assert env.count(Case) == 0
    env.engine.dispose()


def test_add_photos_to_my_report_one_by_one(env):
    token, _ = env.bound_session()
    ref = assert_ok(_report(env, token, "p-1", {"description": "家里缺劳力"}), 201)["ref"]
    url = f"/api/v1/reports/{ref}/photos"
    first = assert_ok(_multipart(env, token, None, {}, {"photo": [(WEBP, "a.webp")]}, url), 201)
    assert first["content_type"] == "image/webp"
    again = assert_ok(_multipart(env, token, None, {}, {"photo": [(WEBP, "again.webp")]}, url), 200)
    assert again["id"] == first["id"] and env.count(Attachment) == 1
    assert_api_error(_multipart(env, token, None, {}, {"photo": [(b"GIF89a....", "x.gif")]}, url), 415)
    assert_api_error(_multipart(env, token, None, {}, {}, url), 400, "required", "photo")
    assert_api_error(env.client.post(url, json={}, headers=bearer(token)), 415)
    detail = assert_ok(env.client.get(f"/api/v1/reports/{ref}", headers=bearer(token)))
    assert len(detail["photos"]) == 1
    assert "evidence_added" in [e["action"] for e in detail["timeline"]]
    # someone else cannot add to it
    other, _ = env.bound_session("陈有福", openid="o-else")
    assert_api_error(_multipart(env, other, None, {}, {"photo": [(PNG, "p.png")]}, url), 404, "not_found")
    assert env.count(Attachment) == 1


# --- my reports ------------------------------------------------------------------------------


def test_list_and_read_only_my_own_reports(env):
    token, _ = env.bound_session()
    mine = assert_ok(_report(env, token, "m-1", {"risk_types": ["education"], "description": "孩子上学"}), 201)
    other, _ = env.bound_session("赵兰芳", openid="o-zhao")
    theirs = assert_ok(_report(env, other, "m-1", {"description": "没活干"}), 201)

    items = assert_ok(env.client.get("/api/v1/reports", headers=bearer(token)))["items"]
    assert [i["ref"] for i in items] == [mine["ref"]]
    item = items[0]
    assert item["step"] == "warning" and item["step_label"] == "风险预警"
    assert item["status"] == "已收到您的申报，村干部将尽快上门了解情况"
    assert item["due_at"] and item["overdue"] is False

    detail = assert_ok(env.client.get(f"/api/v1/reports/{mine['ref']}", headers=bearer(token)))
    assert detail["risk_types"] == [{"code": "education", "label": "因学"}]
    assert detail["channel"] == "miniprogram" and detail["timeline"][0]["action"] == "created"
    assert_api_error(env.client.get(f"/api/v1/reports/{theirs['ref']}", headers=bearer(token)), 404, "not_found")
    assert_api_error(env.client.get("/api/v1/reports/SB20990101-0001", headers=bearer(token)), 404)
    assert_api_error(env.client.get("/api/v1/reports/not-a-ref", headers=bearer(token)), 404)
    assert_api_error(env.client.get("/api/v1/reports?limit=0", headers=bearer(token)), 400, field="limit")
    assert_api_error(env.client.get("/api/v1/reports?limit=abc", headers=bearer(token)), 400, field="limit")


def test_a_family_member_sees_the_household_reports(env):
    token, _ = env.bound_session(openid="o-dad")
    ref = assert_ok(_report(env, token, "f-1", {"description": "生病"}), 201)["ref"]
    son, _ = env.bound_session(openid="o-son")
    assert [i["ref"] for i in assert_ok(env.client.get("/api/v1/reports", headers=bearer(son)))["items"]] == [ref]


# --- questions and topics --------------------------------------------------------------------


def test_ask_returns_the_answer_with_cited_passages_and_offsets(env):
    kb = FakeKB()
    env.services.set_knowledge(kb)
    data = assert_ok(env.client.post("/api/v1/ask", json={"question": "看病能报销多少？", "region": "陕西省"}))
    assert data["answerable"] is True and data["next_offset"] == 1 and data["region"] == "陕西省"
    p = data["passages"][0]
    assert (p["doc"], p["section"], p["start"], p["end"]) == ("shaanxi_plan.txt", "第三章 第一节 （二）", 120, 180)
    assert p["issuer"] == "陕西省人民政府" and p["region"]["province"] == "陕西省"
    # a bound villager's own county is preferred when no region is given
    token, _ = env.bound_session()
    assert_ok(env.client.post("/api/v1/ask", json={"question": "上学有补助吗", "offset": 1}, headers=bearer(token)))
    assert kb.asked[-1] == ("上学有补助吗", "白河县", 1)


def test_ask_bad_input_and_missing_index(env):
    assert_api_error(env.client.post("/api/v1/ask", json={}), 400, "required", "question")
    assert_api_error(env.client.post("/api/v1/ask", json={"question": "   "}), 400, "required", "question")
    assert_api_error(env.client.post("/api/v1/ask", json={"question": 1}), 400, "type", "question")
    assert_api_error(env.client.post("/api/v1/ask", json={"question": "x", "offset": -1}), 400, "range", "offset")
    assert_api_error(env.client.post("/api/v1/ask", json={"question": "x"}, headers=bearer("hnmp_" + "B" * 43)),
                     401)
    assert_api_error(env.client.post("/api/v1/ask", json={"question": "低保怎么申请"}), 503, "index_unavailable")

    def broken_loader():
        raise FileNotFoundError("no index has been built yet")

    env.ctx.knowledge = broken_loader
    assert_api_error(env.client.post("/api/v1/ask", json={"question": "低保怎么申请"}), 503, "index_unavailable")


def test_policy_topics_for_the_home_screen(env):
    topics = assert_ok(env.client.get("/api/v1/policy/topics"))["topics"]
    codes = [t["code"] for t in topics]
    assert codes == ["medical", "education", "microcredit", "housing", "employment", "relocation", "assistance",
                     "monitoring"]
    assert all(len(t["examples"]) >= 2 and t["title"] for t in topics)


# --- rate limits -----------------------------------------------------------------------------


def test_rate_limit_per_ip_and_per_user(tmp_path):
    env = _env(tmp_path, rate_limit_per_minute=3)
    for _ in range(3):
        assert_ok(env.client.get("/api/v1/policy/topics"))
    r = env.client.get("/api/v1/policy/topics")
    assert_api_error(r, 429, "rate_limited")
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    # another IP is not limited, but the same user from three more IPs is
    token, _ = mp_session(env.ctx)
    for i in range(3):
        assert_ok(env.client.get("/api/v1/household", headers=bearer(token),
                                 environ_base={"REMOTE_ADDR": f"10.0.0.{i + 1}"}))
    r = env.client.get("/api/v1/household", headers=bearer(token), environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert_api_error(r, 429, "rate_limited")
    assert int(r.headers["Retry-After"]) >= 1
    env.engine.dispose()


def test_rate_limiter_counts_in_redis_when_configured():
    """The same limiter over the real Redis that .ci/run starts (skipped when none is running)."""
    import uuid

    from bot.miniprogram.ratelimit import RateLimiter
    from handlers.errors import RateLimited
    from storage.kv import RedisKV

    kv = RedisKV("redis://127.0.0.1:6379/0", prefix=f"huinong-test-{uuid.uuid4().hex[:8]}:")
    try:
        kv.client.ping()
    except Exception as exc:  # noqa: BLE001 - any connection problem means "no Redis here"
        pytest.skip(f"no Redis on 127.0.0.1:6379 ({type(exc).__name__})")
    clock = [1000.5]
    limiter = RateLimiter(kv, clock=lambda: clock[0])
    for _ in range(2):
        limiter.hit("ip", "1.2.3.4", limit=2, window=60, message="请 {seconds} 秒后再试")
    with pytest.raises(RateLimited) as err:
        limiter.hit("ip", "1.2.3.4", limit=2, window=60, message="请 {seconds} 秒后再试")
    assert err.value.retry_after == 20  # the window 960–1020 ends in 19.5 s
    clock[0] = 1021.0  # next window
    limiter.hit("ip", "1.2.3.4", limit=2, window=60, message="x")
    for key in kv.client.scan_iter(kv.prefix + "*"):
        kv.client.delete(key)


def test_ask_with_the_real_knowledge_base_quotes_clauses_at_their_offsets(env, tmp_path):
    """The shipped corpus indexed with the hash embedder: each passage's text is the original's slice."""
    pytest.importorskip("knowledge.base", reason="the knowledge package has not landed yet")
    from pathlib import Path

    from knowledge import KnowledgeBase
    from knowledge.embedder import HashEmbedder

    corpus = Path(__file__).resolve().parent.parent / "knowledge" / "data" / "corpus"
    kb = KnowledgeBase.build(corpus, tmp_path / "index", HashEmbedder(), progress=False)
    env.services.set_knowledge(kb)
    token, _ = env.bound_session()
    data = assert_ok(env.client.post("/api/v1/ask", json={"question": "脱贫人口小额信贷能贷多少"},
                                     headers=bearer(token)))
    assert data["region"] == "白河县" and data["passages"] and isinstance(data["answerable"], bool)
    for p in data["passages"]:
        assert kb.source(p["doc"])[p["start"]:p["end"]] == p["text"]
        assert p["title"] and p["issuer"] and p["section"]
    assert data["passages"][0]["title"] in data["text"]  # the answer cites the document
