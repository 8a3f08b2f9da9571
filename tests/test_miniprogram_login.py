"""POST /api/v1/login against the loopback fake WeChat API: code2session through the real client
factory, our own session token, WeChat's failures as clear errors with nothing written."""

from __future__ import annotations

import pytest
from sqlmodel import Session, func, select

from storage.models import ApiSession, WeChatUser
from tests.api_helpers import assert_api_error, assert_ok, bearer
from tests.conftest import make_settings
from tests.fake_wechat_api import FakeWeChatAPI


@pytest.fixture
def api():
    with FakeWeChatAPI() as fake:
        yield fake


def _app(tmp_path, api, db_url=None, **extra):
    from bot.app import create_app
    from bot.services import build_services
    from handlers.demo import load_demo

    values = dict(wechat_api_base=api.base_url, mini_appid=api.mini_appid, mini_secret=api.mini_secret)
    services = build_services(make_settings(tmp_path, db_url, **{**values, **extra}))
    services.ctx.knowledge = None
    load_demo(services.ctx)
    app = create_app(services=services)
    return app, services


def _count(services, model) -> int:
    with Session(services.engine) as s:
        return s.exec(select(func.count()).select_from(model)).one()


def test_login_exchanges_the_code_and_returns_our_own_token(tmp_path, api, db_url):
    app, services = _app(tmp_path, api, db_url)
    client = app.test_client()
    code = api.issue_code(openid="o-mp-villager-1", unionid="u-villager-1")
    r = client.post("/api/v1/login", json={"code": code})
    data = assert_ok(r)
    assert data["token_type"] == "Bearer" and data["token"].startswith("hnmp_")
    assert data["expires_in"] == 12 * 3600 and data["user"]["bound"] is False and data["household"] is None
    text = r.get_data(as_text=True)
    session_key = api.calls("sns/jscode2session")[0]
    assert "session_key" not in text and "o-mp-villager-1" not in text
    # code2session went to the fake, with the mini-program's appid and secret and the code
    query = session_key.query
    assert (query["appid"], query["secret"], query["js_code"]) == (api.mini_appid, api.mini_secret, code)
    assert query["grant_type"] == "authorization_code"
    with Session(services.engine) as s:
        user = s.exec(select(WeChatUser).where(WeChatUser.openid == "o-mp-villager-1")).one()
        row = s.exec(select(ApiSession).where(ApiSession.user_id == user.id)).one()
    assert user.app == "mp" and user.unionid == "u-villager-1"
    assert data["token"] not in row.token_hash and row.session_key_enc.startswith("v1:")
    # the token works, and a second login of the same WeChat user is the same user
    assert assert_ok(client.get("/api/v1/household", headers=bearer(data["token"])))["bound"] is False
    again = assert_ok(client.post("/api/v1/login", json={"code": api.issue_code(openid="o-mp-villager-1")}))
    assert again["user"]["id"] == data["user"]["id"] and again["token"] != data["token"]
    assert _count(services, WeChatUser) == 1
    services.engine.dispose()


def test_login_of_a_bound_user_returns_the_household_for_the_form(tmp_path, api):
    app, services = _app(tmp_path, api)
    client = app.test_client()
    first = assert_ok(client.post("/api/v1/login", json={"code": api.issue_code(openid="o-zhang")}))
    assert_ok(client.post("/api/v1/household/bind", json={"name": "张建国", "id_last6": "120018", "village": "龙湾村"},
                          headers=bearer(first["token"])))
    data = assert_ok(client.post("/api/v1/login", json={"code": api.issue_code(openid="o-zhang")}))
    assert data["user"]["bound"] is True and data["household"]["head_name"] == "张建国"
    services.engine.dispose()


def test_invalid_or_reused_code_is_401_and_writes_nothing(tmp_path, api):
    app, services = _app(tmp_path, api)
    client = app.test_client()
    assert_api_error(client.post("/api/v1/login", json={"code": "not-a-code"}), 401, "invalid_code", "code")
    code = api.issue_code()
    assert_ok(client.post("/api/v1/login", json={"code": code}))
    assert_api_error(client.post("/api/v1/login", json={"code": code}), 401, "invalid_code", "code")  # 40163
    assert _count(services, WeChatUser) == 1 and _count(services, ApiSession) == 1
    services.engine.dispose()


@pytest.mark.parametrize("body, code, fieldname", [
    ({}, "required", "code"),
    ({"code": 123}, "type", "code"),
    ({"code": ""}, "required", "code"),
    ({"code": "abc", "openid": "o-forged"}, "unknown_field", "openid"),
    ({"code": "a b"}, "pattern", "code"),
])
def test_login_body_is_validated_before_wechat_is_called(tmp_path, api, body, code, fieldname):
    app, services = _app(tmp_path, api)
    assert_api_error(app.test_client().post("/api/v1/login", json=body), 400, code, fieldname)
    assert api.requests == [] and _count(services, WeChatUser) == 0
    services.engine.dispose()


def test_wechat_down_or_misconfigured_is_503(tmp_path, api):
    app, services = _app(tmp_path, api)
    client = app.test_client()
    api.down(30)
    assert_api_error(client.post("/api/v1/login", json={"code": api.issue_code()}), 503, "wechat_unavailable")
    api.up()
    api.fail_next("sns/jscode2session", errcode=-1)
    assert_api_error(client.post("/api/v1/login", json={"code": api.issue_code()}), 503, "wechat_unavailable")
    assert _count(services, WeChatUser) == 0
    services.engine.dispose()

    app, services = _app(tmp_path / "wrong", api, mini_secret="a-wrong-secret")
    assert_api_error(app.test_client().post("/api/v1/login", json={"code": api.issue_code()}), 503,
                     "wechat_unavailable")
    services.engine.dispose()
    app, services = _app(tmp_path / "none", api, mini_appid="", mini_secret="")
    assert_api_error(app.test_client().post("/api/v1/login", json={"code": "abc"}), 503, "wechat_not_configured")
    services.engine.dispose()
