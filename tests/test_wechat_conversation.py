"""The official account end to end: real signed (and in safe mode encrypted) XML through /wechat,
on SQLite and PostgreSQL; every step retried as WeChat retries, and nothing created twice."""

from __future__ import annotations

import pytest
from sqlmodel import Session, func, select

from storage.models import Attachment, Case, CaseEvent, Household, InboundMessage, Outbox, WeChatUser
from tests.wechat_user import FakeKnowledge, WeChatApp


@pytest.fixture
def kb():
    return FakeKnowledge()


def _count(engine, model, *where) -> int:
    with Session(engine) as s:
        stmt = select(func.count()).select_from(model)
        for w in where:
            stmt = stmt.where(w)
        return s.exec(stmt).one()


def _all(engine, stmt) -> list:
    with Session(engine) as s:
        return list(s.exec(stmt))


def _household(engine, head="张建国") -> Household:
    with Session(engine) as s:
        return s.exec(select(Household).where(Household.head_name == head)).one()


def _case(engine) -> Case:
    with Session(engine) as s:
        return s.exec(select(Case)).one()


def step(user, send, *, expect: str | list[str]):
    """Send, check the reply, let WeChat retry, check the retry got the very same reply."""
    reply = send()
    assert reply.status == 200 and reply.text, reply.body
    for word in [expect] if isinstance(expect, str) else expect:
        assert word in reply.text, reply.text
    assert reply.fields["ToUserName"] == user.openid and reply.fields["MsgType"] == "text"
    retry = user.resend()
    assert retry.text == reply.text
    return reply


@pytest.mark.parametrize("mode", ["plain", "compatible", "safe"])
def test_full_conversation(tmp_path, db_url, mode, kb):
    w = WeChatApp(tmp_path, db_url, mode=mode, knowledge=kb)
    try:
        engine = w.services.engine
        user = w.user("o-zhang")
        hh = _household(engine)

        step(user, user.subscribe, expect="一键申报")
        step(user, lambda: user.scan("hh:" + hh.bind_token), expect=["已绑定", "龙湾村", "张建国"])
        with Session(engine) as s:
            assert s.exec(select(WeChatUser).where(WeChatUser.openid == "o-zhang")).one().household_id == hh.id

        ack = step(user, lambda: user.click("REPORT"), expect=["编号 SB", "1. 因病"])
        case = _case(engine)
        assert case.ref in ack.text and case.household_id == hh.id and case.channel == "wechat"

        step(user, lambda: user.text("1"), expect="因病")
        assert _case(engine).risk_types == ["illness"]

        described = step(user, lambda: user.text("老伴住院了，家里没钱交押金"), expect=case.ref)
        assert _case(engine).description.count("老伴住院了") == 1
        step(user, lambda: user.text("好了"), expect=case.ref)

        step(user, lambda: user.text("进度"), expect=[case.ref, "办理时限"])
        answer = step(user, lambda: user.text("小额信贷最多贷多少"), expect=["5万元", "《陕西省", "第四章"])
        assert len(kb.calls) == 1 and kb.calls[0][1] == "白河县"  # the retry did not ask again
        more = step(user, lambda: user.text("更多"), expect="小额信贷政策")
        assert more.text != answer.text

        assert _count(engine, Case) == 1
        actions = [e.action for e in _all(engine, select(CaseEvent).order_by(CaseEvent.id))]
        assert actions.count("created") == 1 and actions.count("risk_types") == 1
        assert actions.count("described") == 1
        assert _count(engine, InboundMessage) == 9  # nine distinct messages, each retried once
        assert _count(engine, Outbox, Outbox.kind == "text") == 0  # every reply was passive
        assert "urgent" in described.text or "绿色通道" in described.text or "已补充" in described.text
    finally:
        w.close()


def test_unbound_villager_registers_in_few_turns_with_cancel_and_back(tmp_path, kb):
    w = WeChatApp(tmp_path, knowledge=kb)
    try:
        engine = w.services.engine
        user = w.user("o-wang")
        assert "姓名" in user.click("REPORT").text
        assert "已取消" in user.text("取消").text
        assert _count(engine, Case) == 0

        assert "姓名" in user.text("我要申报").text
        # one message answers two questions: name and village
        assert "手机号" in user.text("王五 东坝村").text
        assert "哪个村" in user.text("返回").text
        assert "手机号" in user.text("东坝村").text
        assert "手机号好像不对" in user.text("12345").text
        consent = user.text("13800001111")
        assert "承诺授权" in consent.text
        assert _count(engine, Case) == 0  # nothing filed before consent
        ack = user.text("同意")
        assert "编号 SB" in ack.text
        case = _case(engine)
        assert case.reporter_name == "王五" and case.household_id is None
        assert w.ctx.cipher.decrypt(case.reporter_phone_enc) == "13800001111"
        assert user.resend().text == ack.text and _count(engine, Case) == 1

        assert "刚刚已提交" in user.click("REPORT").text  # a second tap continues the same case
        assert case.ref in user.text("好了").text
        # the next report needs no questions at all: what they told us is remembered
        second = user.click("REPORT")
        assert "编号 SB" in second.text and "姓名" not in second.text
        assert _count(engine, Case) == 2
    finally:
        w.close()


def test_free_text_report_from_a_bound_household_is_filed_at_once(tmp_path, kb):
    w = WeChatApp(tmp_path, knowledge=kb)
    try:
        engine = w.services.engine
        user = w.user("o-li")
        user.scan("hh:" + _household(engine, "李秀英").bind_token)
        reply = user.text("老伴住院了，没钱交押金，怎么办")
        assert "编号 SB" in reply.text
        case = _case(engine)
        assert "住院" in case.description and case.risk_types
        assert user.resend().text == reply.text and _count(engine, Case) == 1
    finally:
        w.close()


def test_voice_photo_and_location_become_evidence(tmp_path, kb):
    w = WeChatApp(tmp_path, knowledge=kb)
    try:
        engine = w.services.engine
        user = w.user("o-zhao")
        assert "一键申报" in user.image().text  # no case yet: nothing to attach to
        user.scan("hh:" + _household(engine, "赵兰芳").bind_token)
        ref = _case_ref(user.click("REPORT").text)
        silent = user.voice("voice-1", recognition="")
        assert ref in silent.text and "回电" in silent.text and "转写" not in silent.text
        assert ref in user.image("img-1").text
        assert ref in user.location().text
        heard = user.voice("voice-2", recognition="房子漏雨了")
        assert ref in heard.text  # Recognition used as text: stored as description
        assert "房子漏雨了" in _case(engine).description
        kinds = sorted(a.kind for a in _all(engine, select(Attachment)))
        assert kinds == ["image", "location", "voice"]
        assert "回电话" in user.text("回电").text
        user.resend()
        assert _count(engine, CaseEvent, CaseEvent.action == "callback_requested") == 1
    finally:
        w.close()


def _case_ref(text: str) -> str:
    import re

    return re.search(r"SB\d{8}-\d{4}", text).group(0)


def test_menu_keys_and_words(tmp_path, kb):
    w = WeChatApp(tmp_path, knowledge=kb)
    try:
        user = w.user("o-menu")
        assert "政策问题" in user.click("ASK").text
        assert "还没有申报记录" in user.click("PROGRESS").text
        assert "还不知道您是哪个村" in user.click("CONTACT").text
        user.scan("hh:" + _household(w.services.engine).bind_token)
        assert "龙湾村" in user.click("CONTACT").text and "网格员" in user.click("CONTACT").text
        assert "您可以这样用" in user.click("NO_SUCH_KEY").text
        assert "还没有申报记录" in user.text("进度").text
        assert "更多" in user.text("更多").text  # no question asked yet
        assert "没有正在进行" in user.text("取消").text
    finally:
        w.close()


def test_slow_answer_is_deferred_to_the_outbox_and_delivered_once(tmp_path):
    slow = FakeKnowledge(delay=0.6)
    w = WeChatApp(tmp_path, knowledge=slow)
    w.inbox.budget = 0.1
    w.inbox.retry_wait = 0.1
    try:
        engine = w.services.engine
        user = w.user("o-slow")
        first = user.text("小额信贷最多贷多少")
        assert first.is_success  # answered at once, within WeChat's window
        assert user.resend().is_success  # the retry while it is still running
        import time

        deadline = time.monotonic() + 5
        while _count(engine, Outbox, Outbox.kind == "text") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        with Session(engine) as s:
            rows = s.exec(select(Outbox).where(Outbox.kind == "text")).all()
        assert len(rows) == 1 and rows[0].recipient == "o-slow" and "5万元" in rows[0].payload["content"]
        assert user.resend().is_success  # a late retry: the outbox delivers, not the retry
        assert len(slow.calls) == 1
    finally:
        w.close()


def test_knowledge_unavailable_is_said_in_chinese(tmp_path):
    def broken():
        raise FileNotFoundError("index missing: run huinong build-index")

    w = WeChatApp(tmp_path)
    w.ctx.knowledge = broken
    try:
        reply = w.user("o-q").text("小额信贷最多贷多少")
        assert reply.status == 200 and "暂时不可用" in reply.text
    finally:
        w.close()


def test_household_codes(tmp_path, kb):
    w = WeChatApp(tmp_path, knowledge=kb)
    try:
        engine = w.services.engine
        zhang, li = _household(engine, "张建国"), _household(engine, "李秀英")
        user = w.user("o-new")
        first = user.subscribe("hh:" + zhang.bind_token)  # scanned before following: qrscene_
        assert "已绑定" in first.text and "张建国" in first.text and "欢迎关注" in first.text
        assert "已绑定龙湾村张建国户" in user.scan("hh:" + zhang.bind_token).text
        moved = user.scan("hh:" + li.bind_token)
        assert "如需改绑" in moved.text  # not moved silently to another household
        assert "无效" in w.user("o-other").scan("hh:not-a-token").text
        assert "您可以这样用" in w.user("o-poster").scan("poster-2026").text  # not a household code
        with Session(engine) as s:
            assert s.exec(select(WeChatUser).where(WeChatUser.openid == "o-new")).one().household_id == zhang.id
            assert s.exec(select(WeChatUser).where(WeChatUser.openid == "o-other")).one().household_id is None
        assert user.unsubscribe().is_success
        with Session(engine) as s:
            assert not s.exec(select(WeChatUser).where(WeChatUser.openid == "o-new")).one().subscribed
    finally:
        w.close()


@pytest.mark.parametrize("store", ["database", "redis"])
def test_dialogue_continues_on_another_worker(tmp_path, kb, store):
    import uuid

    extra = {}
    if store == "redis":
        redis = pytest.importorskip("redis")
        try:
            redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_timeout=1).ping()
        except redis.RedisError as exc:
            pytest.skip(f"Redis not reachable on 127.0.0.1:6379 ({exc})")
        extra["redis_url"] = "redis://127.0.0.1:6379/0"
    a = WeChatApp(tmp_path, knowledge=kb, **extra)
    b = WeChatApp(tmp_path, knowledge=kb, data_key=a.settings.data_key, secret_key=a.settings.secret_key, **extra)
    try:
        assert type(a.ctx.kv).__name__ == ("RedisKV" if store == "redis" else "DatabaseKV")
        openid = "o-" + uuid.uuid4().hex[:10]
        on_a, on_b = a.user(openid), b.user(openid)
        on_a._last_time = on_b._last_time = 0
        assert "姓名" in on_a.click("REPORT").text
        on_b._last_time = on_a._last_time
        assert "哪个村" in on_b.text("陈六").text
        assert "手机号" in on_a.text("双喜村").text
        assert "承诺授权" in on_b.text("跳过").text
        ack = on_a.text("同意")
        assert "编号 SB" in ack.text
        assert _case(a.services.engine).reporter_name == "陈六"
        on_b.last = on_a.last
        assert on_b.resend().text == ack.text  # WeChat's retry landing on the other worker
        assert _count(a.services.engine, Case) == 1
    finally:
        a.close()
        b.close()


@pytest.fixture(scope="module")
def real_kb(tmp_path_factory):
    """The real knowledge base over the shipped corpus, with the hash embedder (no model)."""
    from pathlib import Path

    from knowledge import KnowledgeBase
    from knowledge.embedder import HashEmbedder

    corpus = Path(__file__).resolve().parent.parent / "knowledge" / "data" / "corpus"
    return KnowledgeBase.build(corpus, tmp_path_factory.mktemp("index"), HashEmbedder(), progress=False)


def test_question_through_the_real_knowledge_base(tmp_path, real_kb):
    w = WeChatApp(tmp_path, knowledge=real_kb)
    try:
        user = w.user("o-cadre")
        user.scan("hh:" + _household(w.services.engine).bind_token)  # 白河县: Shaanxi documents first
        replies = [user.text("小额信贷最多贷多少")]
        assert replies[0].status == 200 and "《" in replies[0].text and "小额信贷" in replies[0].text
        assert user.resend().text == replies[0].text
        while "5万元" not in "".join(r.text for r in replies) and len(replies) < 4:
            replies.append(user.text("更多"))
        assert any("5万元" in r.text for r in replies), [r.text[:80] for r in replies]
        assert all(len(r.text.encode()) <= 2048 for r in replies)
    finally:
        w.close()
