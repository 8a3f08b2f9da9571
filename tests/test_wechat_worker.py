"""The outbox worker against the loopback fake WeChat API: delivery, retries with backoff through an
outage, the 45015 fallback, permanent failures, two workers at once; and the two CLI commands."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from click.testing import CliRunner
from sqlmodel import Session, select

from bot.wechat.worker import OutboxWorker
from storage import session_scope
from storage.models import Outbox, utcnow
from storage.outbox import enqueue
from tests.fake_wechat_api import FakeWeChatAPI
from tests.wechat_user import WeChatApp

CUSTOM = "cgi-bin/message/custom/send"
TEMPLATE = "cgi-bin/message/template/send"


@pytest.fixture
def api():
    with FakeWeChatAPI() as fake:
        yield fake


@pytest.fixture
def world(tmp_path, api):
    w = WeChatApp(tmp_path, load_demo=False, wechat_api_base=api.base_url, wechat_appid=api.appid,
                  wechat_secret=api.secret, wechat_template_urgent="TPL-URGENT")
    yield w
    w.close()


def _worker(world, **kw) -> OutboxWorker:
    from bot.wechat.outbound import make_client

    client = make_client(world.settings, world.ctx.kv, timeout=(0.5, 0.5))
    return OutboxWorker(world.services, client=client, **kw)


def _enqueue(world, **row) -> int:
    with session_scope(world.services.engine) as s:
        return enqueue(s, **row).id


def _row(world, row_id) -> Outbox:
    with Session(world.services.engine) as s:
        return s.get(Outbox, row_id)


def _later(seconds: int) -> dt.datetime:
    return utcnow() + dt.timedelta(seconds=seconds)


def test_text_and_template_are_delivered_once(world, api):
    t = _enqueue(world, kind="text", recipient="o-1", payload={"content": "您的申报已受理"})
    u = _enqueue(world, kind="template", recipient="o-staff", payload={
        "template": "urgent_case", "data": {"ref": "SB20260101-0001", "village": "龙湾村", "reasons": "房屋倒塌"}})
    stats = _worker(world).drain()
    assert stats.sent == 2 and stats.failed == 0
    assert api.sent(CUSTOM) == [{"touser": "o-1", "msgtype": "text", "text": {"content": "您的申报已受理"}}]
    tpl = api.sent(TEMPLATE)[0]
    assert tpl["template_id"] == "TPL-URGENT" and tpl["data"]["ref"] == {"value": "SB20260101-0001"}
    assert _row(world, t).status == "sent" and _row(world, u).status == "sent"
    assert _worker(world).drain().handled == 0  # nothing sent twice
    assert len(api.sent(CUSTOM)) == 1


@pytest.mark.parametrize("mode", ["500", "timeout"])
def test_an_outage_is_retried_with_backoff_and_delivered_once(world, api, mode):
    row_id = _enqueue(world, kind="text", recipient="o-1", payload={"content": "结果通知"})
    worker = _worker(world)
    worker.client.fetch_access_token()
    api.down(60, mode=mode, hang=1.5)
    first = worker.drain()
    assert first.retried == 1 and first.sent == 0
    row = _row(world, row_id)
    assert row.status == "pending" and row.attempts == 1 and row.last_error
    assert row.next_attempt_at > utcnow()  # backoff: not due again at once
    assert worker.drain().handled == 0
    second = worker.drain(now=_later(10))  # due again, WeChat still down
    assert second.retried == 1 and _row(world, row_id).attempts == 2
    api.up()
    assert worker.drain(now=_later(60)).sent == 1
    assert _row(world, row_id).status == "sent"
    assert len(api.sent(CUSTOM)) == 1  # delivered once, none twice
    assert worker.drain(now=_later(3600)).handled == 0


def test_outside_the_48h_window_falls_back_to_a_template(world, api):
    row_id = _enqueue(world, kind="text", recipient="o-1", payload={
        "content": "您的申报有了结果", "fallback_template": {"template": "urgent_case", "data": {"ref": "SB1"}}})
    api.fail_next(CUSTOM, errcode=45015)
    stats = _worker(world).drain()
    assert stats.sent == 1 and stats.fallbacks == 1
    assert api.sent(CUSTOM) == [] and api.sent(TEMPLATE)[0]["data"] == {"ref": {"value": "SB1"}}
    assert _row(world, row_id).status == "sent"


def test_outside_the_window_without_fallback_is_marked_for_staff_follow_up(world, api):
    row_id = _enqueue(world, kind="text", recipient="o-1", payload={"content": "您的申报有了结果"})
    api.fail_next(CUSTOM, errcode=45015)
    stats = _worker(world).drain()
    row = _row(world, row_id)
    assert stats.failed == 1 and row.status == "failed" and row.last_error.startswith("followup: 45015")
    assert _worker(world).drain(now=_later(7200)).handled == 0  # not retried: the window stays closed


def test_template_without_id_falls_back_to_text(world, api):
    _enqueue(world, kind="template", recipient="o-1", payload={
        "template": "outcome", "data": {"ref": "SB2", "status": "已纳入监测"}})
    stats = _worker(world).drain()
    assert stats.sent == 1 and stats.fallbacks == 1
    assert "SB2" in api.sent(CUSTOM)[0]["text"]["content"] and api.sent(TEMPLATE) == []


def test_unsubscribed_user_is_a_permanent_failure(world, api):
    row_id = _enqueue(world, kind="template", recipient="o-gone", payload={"template": "urgent_case", "data": {}})
    api.fail_next(TEMPLATE, errcode=43004, errmsg="require subscribe")
    assert _worker(world).drain().failed == 1
    assert _row(world, row_id).status == "failed" and "43004" in _row(world, row_id).last_error


def test_two_workers_never_send_the_same_message(tmp_path, api, db_url):
    world = WeChatApp(tmp_path, db_url, load_demo=False, wechat_api_base=api.base_url, wechat_appid=api.appid,
                      wechat_secret=api.secret)
    try:
        _two_workers(world, api)
    finally:
        world.close()


def _two_workers(world, api):
    ids = [_enqueue(world, kind="text", recipient=f"o-{i}", payload={"content": f"消息{i}"}) for i in range(30)]
    workers = [_worker(world, worker_id=f"w{i}", batch=5) for i in range(2)]
    for w in workers:
        w.client.fetch_access_token()
    threads = [threading.Thread(target=w.drain) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent = [b["touser"] for b in api.sent(CUSTOM)]
    assert sorted(sent) == sorted(f"o-{i}" for i in range(30))
    assert all(_row(world, i).status == "sent" for i in ids)


def test_deferred_chat_reply_reaches_the_villager(world, api):
    """The slow path end to end: /wechat answers "success", the outbox worker delivers the answer."""
    from tests.wechat_user import FakeKnowledge

    world.services.set_knowledge(FakeKnowledge(delay=0.4))
    world.inbox.budget = 0.05
    user = world.user("o-late")
    assert user.text("小额信贷最多贷多少").is_success
    import time

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with Session(world.services.engine) as s:
            if s.exec(select(Outbox)).first():
                break
        time.sleep(0.05)
    assert _worker(world).drain().sent == 1
    assert "5万元" in api.sent(CUSTOM)[0]["text"]["content"] and api.sent(CUSTOM)[0]["touser"] == "o-late"


# --- commands ------------------------------------------------------------------------------------------


def _env(world, api) -> dict:
    s = world.settings
    return {"HUINONG_ENV": "test", "HUINONG_INSTANCE_DIR": s.instance_dir, "HUINONG_DATABASE_URL": s.database_url,
            "HUINONG_DATA_KEY": s.data_key, "HUINONG_SECRET_KEY": s.secret_key, "HUINONG_WECHAT_TOKEN": "tok-12345",
            "HUINONG_WECHAT_API_BASE": api.base_url, "HUINONG_WECHAT_APPID": api.appid,
            "HUINONG_WECHAT_SECRET": api.secret}


def test_worker_once_command(world, api):
    from bot.cli import main

    _enqueue(world, kind="text", recipient="o-1", payload={"content": "你好"})
    result = CliRunner().invoke(main, ["worker", "--once"], env=_env(world, api))
    assert result.exit_code == 0, result.output
    assert "sent 1" in result.output and len(api.sent(CUSTOM)) == 1


def test_worker_refuses_to_start_without_credentials(world, api):
    from bot.cli import main

    env = {**_env(world, api), "HUINONG_WECHAT_APPID": ""}
    result = CliRunner().invoke(main, ["worker", "--once"], env=env)
    assert result.exit_code != 0 and "HUINONG_WECHAT_" in result.output and "Traceback" not in result.output


def test_menu_command_prints_and_pushes(world, api):
    import json

    from bot.cli import main
    from handlers.routing import MENU_KEYS

    printed = CliRunner().invoke(main, ["wechat-menu"], env=_env(world, api))
    assert printed.exit_code == 0
    menu = json.loads(printed.output)
    keys = [b.get("key") for top in menu["button"] for b in [top, *top.get("sub_button", [])] if b.get("key")]
    assert sorted(keys) == sorted(MENU_KEYS)
    assert api.requests == []
    pushed = CliRunner().invoke(main, ["wechat-menu", "--push"], env=_env(world, api))
    assert pushed.exit_code == 0, pushed.output
    assert "menu pushed" in pushed.output and api.sent("cgi-bin/menu/create") == [menu]
    api.fail_next("cgi-bin/menu/create", errcode=40018)
    refused = CliRunner().invoke(main, ["wechat-menu", "--push"], env=_env(world, api))
    assert refused.exit_code != 0 and "40018" in refused.output


def test_without_an_access_token_nothing_is_claimed_or_lost(world, api):
    row_id = _enqueue(world, kind="text", recipient="o-1", payload={"content": "通知"})
    api.apps[api.appid] = "rotated-secret"  # the AppSecret was reset in the admin console
    stats = _worker(world).drain()
    assert stats.handled == 0 and "40125" in stats.errors[0]
    row = _row(world, row_id)
    assert row.status == "pending" and row.attempts == 0
    api.apps[api.appid] = api.secret
    assert _worker(world).drain().sent == 1


def test_a_malformed_row_does_not_stop_the_batch(world, api):
    bad = _enqueue(world, kind="template", recipient="o-1", payload={"template": "urgent_case", "data": "oops"})
    good = _enqueue(world, kind="text", recipient="o-2", payload={"content": "好"})
    stats = _worker(world).drain()
    assert _row(world, good).status == "sent"
    assert _row(world, bad).status in {"pending", "failed"} and stats.sent == 1
