"""The client factory against the loopback fake WeChat API: every call (token fetch included) goes
to the configured base, the token is shared between clients, WeChat's error codes surface."""

from __future__ import annotations

import time
import uuid

import pytest
import requests
from wechatpy.exceptions import WeChatClientException

from bot.wechat.outbound import (
    WeChatNotConfigured,
    create_household_qr,
    make_client,
    make_mini_client,
    send_template,
    send_text,
)
from storage.kv import MemoryKV
from tests.conftest import make_settings
from tests.fake_wechat_api import FakeWeChatAPI


@pytest.fixture
def api():
    with FakeWeChatAPI() as fake:
        yield fake


def _settings(tmp_path, api, **extra):
    values = dict(wechat_api_base=api.base_url, wechat_appid=api.appid, wechat_secret=api.secret,
                  mini_appid=api.mini_appid, mini_secret=api.mini_secret)
    return make_settings(tmp_path, **{**values, **extra})


def test_every_call_including_the_token_goes_to_the_configured_base(tmp_path, api):
    client = make_client(_settings(tmp_path, api), MemoryKV())
    result = send_text(client, "o-user-1", "您好")
    assert result["errcode"] == 0
    paths = [r.path for r in api.requests]
    assert paths == ["cgi-bin/token", "cgi-bin/message/custom/send"]
    assert api.requests[0].query["appid"] == api.appid
    body = api.requests[1].json
    assert body == {"touser": "o-user-1", "msgtype": "text", "text": {"content": "您好"}}


def test_token_is_shared_through_the_database_between_clients(tmp_path, api, services):
    settings = _settings(tmp_path, api)
    first = make_client(settings, services.ctx.kv)
    second = make_client(settings, services.ctx.kv)  # another process would build its own
    send_text(first, "o1", "a")
    send_text(second, "o1", "b")
    assert len(api.calls("cgi-bin/token")) == 1
    tokens = {r.query["access_token"] for r in api.calls("cgi-bin/message/custom/send")}
    assert len(tokens) == 1


def test_token_is_shared_through_redis_when_configured(tmp_path, api):
    redis = pytest.importorskip("redis")
    try:
        conn = redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_timeout=1)
        conn.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis not reachable on 127.0.0.1:6379 ({exc})")
    appid = "wx-redis-" + uuid.uuid4().hex[:8]
    api.apps[appid] = "redis-secret"
    settings = make_settings(tmp_path, wechat_api_base=api.base_url, wechat_appid=appid,
                             wechat_secret="redis-secret", redis_url="redis://127.0.0.1:6379/0")
    try:
        send_text(make_client(settings, MemoryKV()), "o1", "a")
        send_text(make_client(settings, MemoryKV()), "o1", "b")
        assert len(api.calls("cgi-bin/token")) == 1
        assert conn.ttl(f"huinong:wechatpy:{appid}_access_token") > 0
    finally:
        conn.delete(f"huinong:wechatpy:{appid}_access_token")


@pytest.mark.parametrize("field, value, errcode", [("wechat_appid", "wx-unknown", 40013),
                                                     ("wechat_secret", "wrong", 40125)])
def test_wrong_credentials_give_wechats_error_code(tmp_path, api, field, value, errcode):
    settings = _settings(tmp_path, api, **{field: value})
    with pytest.raises(WeChatClientException) as info:
        send_text(make_client(settings, MemoryKV()), "o1", "x")
    assert info.value.errcode == errcode


def test_missing_configuration_is_a_clear_error(tmp_path, api):
    settings = make_settings(tmp_path, wechat_api_base=api.base_url)
    with pytest.raises(WeChatNotConfigured, match="HUINONG_WECHAT_"):
        make_client(settings, MemoryKV())
    with pytest.raises(WeChatNotConfigured, match="HUINONG_MINI_"):
        make_mini_client(settings, MemoryKV())


def test_fake_rejects_missing_and_wrong_tokens(api):
    url = api.base_url + "cgi-bin/message/custom/send"
    body = {"touser": "o1", "msgtype": "text", "text": {"content": "x"}}
    assert requests.post(url, json=body, timeout=5).json()["errcode"] == 41001
    assert requests.post(url, params={"access_token": "nope"}, json=body, timeout=5).json()["errcode"] == 40001


def test_expired_token_is_renewed_and_the_call_retried(tmp_path, api):
    client = make_client(_settings(tmp_path, api), MemoryKV())
    send_text(client, "o1", "a")
    api.expire_tokens()
    assert send_text(client, "o1", "b")["errcode"] == 0
    assert len(api.calls("cgi-bin/token")) == 2
    assert len(api.sent("cgi-bin/message/custom/send")) == 2


def test_window_expired_surfaces_45015(tmp_path, api):
    client = make_client(_settings(tmp_path, api), MemoryKV())
    api.fail_next("cgi-bin/message/custom/send", errcode=45015)
    with pytest.raises(WeChatClientException) as info:
        send_text(client, "o1", "a")
    assert info.value.errcode == 45015
    assert send_text(client, "o1", "a")["errcode"] == 0  # only the next call was scripted


def test_template_message(tmp_path, api):
    client = make_client(_settings(tmp_path, api), MemoryKV())
    result = send_template(client, "o-staff", "TPL1", {"ref": "SB20260101-0001"}, url=None)
    assert result["errcode"] == 0 and result["msgid"]
    body = api.sent("cgi-bin/message/template/send")[0]
    assert body["template_id"] == "TPL1" and body["data"] == {"ref": {"value": "SB20260101-0001"}}


def test_household_qr_is_permanent_with_the_bind_token(tmp_path, api):
    client = make_client(_settings(tmp_path, api), MemoryKV())
    qr = create_household_qr(client, "tok123")
    assert qr["ticket"] and qr["url"] and qr["scene_str"] == "hh:tok123"
    body = api.sent("cgi-bin/qrcode/create")[0]
    assert body == {"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": "hh:tok123"}}}


def test_mini_program_code_to_session(tmp_path, api):
    client = make_mini_client(_settings(tmp_path, api), MemoryKV())
    code = api.issue_code(openid="o-mp-1", unionid="u-1")
    result = client.wxa.code_to_session(code)
    assert result["openid"] == "o-mp-1" and result["unionid"] == "u-1" and result["session_key"]
    for bad in (code, "forged-code"):  # used once already / never issued
        with pytest.raises(WeChatClientException) as info:
            client.wxa.code_to_session(bad)
        assert info.value.errcode in (40163, 40029)
    assert api.calls("sns/jscode2session")[0].query["appid"] == api.mini_appid
    assert all(r.path in {"cgi-bin/token", "sns/jscode2session"} for r in api.requests)


def test_outage_is_an_exception_not_a_hang(tmp_path, api):
    client = make_client(_settings(tmp_path, api), MemoryKV(), timeout=(0.5, 0.5))
    send_text(client, "o1", "warm")  # token fetched
    api.down(5, mode="timeout", hang=2)
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        send_text(client, "o1", "x")
    assert time.monotonic() - started < 1.5
    api.down(5, mode="500")
    with pytest.raises(WeChatClientException) as info:
        send_text(client, "o1", "x")
    assert info.value.errcode is None
    api.up()
    assert send_text(client, "o1", "x")["errcode"] == 0
