"""The flood path of 一键申报 (handlers.quick_report): what it writes is what the general path
writes, batches commit together, and everything out of the ordinary falls back to the general
path without losing or doubling a report. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import threading

import pytest
from sqlmodel import Session, select

from handlers import routing
from handlers.quick_report import GroupCommit, _Job, file_batch
from storage import session_scope
from storage.households import create_household
from storage.kv import DatabaseKV
from storage.models import Case, CaseEvent, InboundMessage, KeyValue, Region
from storage.people import bind_household, get_or_create_wechat_user
from tests.wechat_user import WeChatApp


@pytest.fixture
def app(tmp_path, db_url):
    w = WeChatApp(tmp_path, db_url, mode="safe")
    yield w
    w.close()


def bind(w: WeChatApp, openid: str, *, village: int = 0, household: bool = True) -> None:
    with session_scope(w.services.engine) as s:
        villages = list(s.exec(select(Region).where(Region.level == "village").order_by(Region.id)))
        user = get_or_create_wechat_user(s, openid=openid)
        if household:
            hh = create_household(s, w.ctx.cipher, head_name=f"户主{openid[-3:]}", village_id=villages[village].id)
            bind_household(s, user, hh)


def click(openid: str, t: int = 1_700_000_000) -> routing.Inbound:
    return routing.Inbound(openid=openid, account="gh", msg_type="event", create_time=t, event="click",
                           event_key="REPORT")


def rows(w: WeChatApp, model, **where):
    with Session(w.services.engine) as s:
        stmt = select(model)
        for k, v in where.items():
            stmt = stmt.where(getattr(model, k) == v)
        return list(s.exec(stmt.order_by(*model.__table__.primary_key.columns)))


def user_id(w: WeChatApp, openid: str) -> int:
    with Session(w.services.engine) as s:
        return get_or_create_wechat_user(s, openid=openid).id


def general_path(w: WeChatApp, msg: routing.Inbound) -> str | None:
    """What the edge did before the flood path: receive → dispatch → complete."""
    receipt = routing.receive(w.ctx, msg)
    reply = routing.dispatch(w.ctx, msg, receipt.who)
    routing.complete(w.ctx, receipt.inbound_id, msg, reply)
    return reply.text


def test_writes_what_the_general_path_writes(app):
    bind(app, "o-general")
    bind(app, "o-quick")
    slow = general_path(app, click("o-general"))
    fast = app.inbox.handle(click("o-quick"))
    assert app.inbox.quick.filed == 1  # it was the flood path

    [a] = rows(app, Case, reporter_id=user_id(app, "o-general"))
    [b] = rows(app, Case, reporter_id=user_id(app, "o-quick"))
    differ = {"id", "ref", "inbound_key", "household_id", "reporter_id", "reporter_name", "created_at",
              "updated_at", "step_started_at", "due_at"}
    assert {k: v for k, v in a.model_dump().items() if k not in differ} == \
        {k: v for k, v in b.model_dump().items() if k not in differ}
    assert b.inbound_key == "wechat:o-quick:" + click("o-quick").dedupe_key
    assert b.reporter_name == "户主ick" and a.reporter_name == "户主ral"
    assert b.due_at.date() == a.due_at.date()

    assert slow.replace(a.ref, "REF") == fast.replace(b.ref, "REF")
    [ea], [eb] = rows(app, CaseEvent, case_id=a.id), rows(app, CaseEvent, case_id=b.id)
    assert (ea.action, ea.actor_kind, ea.step, ea.data, ea.note) == (eb.action, eb.actor_kind, eb.step, eb.data, eb.note)
    [ia], [ib] = rows(app, InboundMessage, source="o-general"), rows(app, InboundMessage, source="o-quick")
    assert (ib.dedupe_key, ib.msg_type, ib.case_id) == (ia.dedupe_key, ia.msg_type, b.id)
    assert json.loads(ib.reply)["text"] == fast and json.loads(ib.reply)["via"] == "passive"
    state_a = json.loads(app.ctx.kv.get("wechat:dlg:o-general"))
    state_b = json.loads(app.ctx.kv.get("wechat:dlg:o-quick"))
    assert (state_b["flow"], state_b["stage"], state_b["case_id"], state_b["ref"]) == ("details", "risk", b.id, b.ref)
    assert state_a.keys() == state_b.keys()


def test_the_conversation_goes_on_after_a_quick_report(app):
    bind(app, "o-talk")
    user = app.user("o-talk")
    first = user.click("REPORT")
    assert "编号 SB" in first.text and "请回复数字选择困难类型" in first.text
    chose = user.text("1")
    assert chose.text.startswith("已记下困难类型：因病")  # the details flow continues
    assert user.resend().text == chose.text  # WeChat's retry gets the stored reply
    [case] = rows(app, Case, reporter_id=user_id(app, "o-talk"))
    assert case.risk_types == ["illness"]


def test_a_batch_is_one_transaction_with_consecutive_references(app):
    openids = [f"o-batch-{i:02d}" for i in range(6)]
    for i, o in enumerate(openids):
        bind(app, o, village=i % 3)
    results = file_batch(app.ctx, [click(o) for o in openids], state_in_db=True)
    assert all(r is not None for r in results)
    cases = rows(app, Case)
    assert [c.ref[-4:] for c in cases] == [f"{n:04d}" for n in range(1, 7)]
    assert [r.text.split("编号 ")[1][:15] for r in results] == [c.ref for c in cases]
    assert len(rows(app, InboundMessage)) == 6 and len(rows(app, CaseEvent)) == 6
    assert isinstance(app.ctx.kv, DatabaseKV) and len(rows(app, KeyValue)) == 6


def test_references_go_on_from_the_days_counter_past_four_digits(app):
    """Both paths share the day's counter, and the replies and dialogue states carry the
    references the batch took."""
    from sqlalchemy import text

    openids = [f"o-many-{i}" for i in range(4)]
    for o in openids:
        bind(app, o)
    first = general_path(app, click(openids[0]))  # creates the day's counter row
    with app.services.engine.begin() as conn:
        conn.execute(text("UPDATE refcounter SET last = 9998"))
    results = file_batch(app.ctx, [click(o) for o in openids[1:]], state_in_db=True)
    refs = sorted(c.ref for c in rows(app, Case))
    day = refs[0][2:10]
    assert refs == [f"SB{day}-0001", f"SB{day}-10000", f"SB{day}-10001", f"SB{day}-9999"]
    assert [re.search(r"SB\d{8}-\d{4,}", r.text).group(0) for r in results] == \
        [f"SB{day}-9999", f"SB{day}-10000", f"SB{day}-10001"]
    assert "SB" in first
    for o, r in zip(openids[1:], results, strict=True):
        [case] = rows(app, Case, reporter_id=user_id(app, o))
        assert case.ref in r.text
        [stored] = rows(app, InboundMessage, source=o)
        assert json.loads(stored.reply)["text"] == r.text
        [state] = rows(app, KeyValue, key=f"wechat:dlg:{o}")
        assert json.loads(state.value)["ref"] == case.ref == json.loads(r.state)["ref"]
    bind(app, "o-after")
    assert f"SB{day}-10002" in general_path(app, click("o-after"))


def test_what_the_flood_path_leaves_to_the_general_path(app):
    bind(app, "o-known")
    bind(app, "o-twice")
    bind(app, "o-dialogue")
    with session_scope(app.services.engine) as s:
        get_or_create_wechat_user(s, openid="o-stranger")  # subscribed, never registered
    app.ctx.kv.set("wechat:dlg:o-dialogue", json.dumps({"flow": "register", "stage": "name", "media": []}), ttl=600)
    msgs = [click("o-known"), click("o-twice"), click("o-twice", 1_700_000_001), click("o-stranger"),
            click("o-nobody"), click("o-dialogue")]
    results = file_batch(app.ctx, msgs, state_in_db=True)
    assert [r is not None for r in results] == [True, True, False, False, False, False]
    # Through the edge each of them still gets the general path's answer.
    assert "编号" not in (app.inbox.handle(click("o-stranger")) or "")  # the short registration
    assert app.inbox.handle(click("o-twice", 1_700_000_001)).startswith("您刚刚已提交申报")
    assert len(rows(app, Case)) == 2


def test_a_retry_in_a_batch_fails_only_itself(app):
    for o in ("o-a", "o-b", "o-c"):
        bind(app, o)
    first = app.inbox.handle(click("o-b"))
    app.ctx.kv.delete("wechat:dlg:o-b")  # so the retry is not stopped by the open dialogue
    gc = GroupCommit(app.ctx)
    jobs = [click("o-a"), click("o-b"), click("o-c")]
    out = [None] * 3
    # All three in one batch: the retry's unique key refuses it, the other two are filed one by one.
    gc._leaders = gc.max_leaders  # every batch slot taken: the three wait
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, gc.file(jobs[i]))) for i in range(3)]
    for t in threads:
        t.start()
    while len(gc._waiting) < 3:
        pass
    with gc._lock:  # as a leader hands over: the first one waiting leads the three
        job = gc._waiting[0]
        job.batch = gc._take()
        job.done.set()
    for t in threads:
        t.join(10)
    assert out[0] and out[2] and out[1] is None
    assert gc.batch_sizes[3] == 1
    assert app.inbox.handle(click("o-b")) == first  # the general path answers the stored reply
    assert len(rows(app, Case)) == 3


@pytest.mark.parametrize("leaders", [1, 2])
def test_concurrent_reports_are_filed_once_each(app, leaders):
    app.inbox.quick.max_leaders = leaders  # two batches in flight at once: still each report once
    openids = [f"o-many-{i:02d}" for i in range(24)]
    for i, o in enumerate(openids):
        bind(app, o, village=i % 3)
    out: dict[str, str | None] = {}
    start = threading.Barrier(8)

    def send(chunk):
        start.wait()
        for o in chunk:
            out[o] = app.inbox.handle(click(o))

    threads = [threading.Thread(target=send, args=(openids[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(out[o] and "编号 SB" in out[o] for o in openids)
    cases = rows(app, Case)
    assert len(cases) == 24 and len({c.ref for c in cases}) == 24
    sizes = app.inbox.quick.batch_sizes
    assert sum(size * n for size, n in sizes.items()) == 24 and app.inbox.quick.filed == 24
    # A retry of each is answered from the record, creating nothing.
    assert all(app.inbox.handle(click(o)) == out[o] for o in openids[:5])
    assert len(rows(app, Case)) == 24


def test_a_household_with_an_open_case_is_flagged_as_a_possible_duplicate(app):
    bind(app, "o-dup")
    user = app.user("o-dup")
    user.click("REPORT")
    user.text("好了")  # ends the details flow
    user.click("REPORT")
    first, second = rows(app, Case)
    assert second.possible_duplicate_of_id == first.id


def test_open_case_lookups_use_the_owner_indexes(tmp_path):
    """``household_id = ? OR reporter_id = ?`` made SQLite walk every open case per report."""
    w = WeChatApp(tmp_path, None, mode="plain")
    try:
        from sqlalchemy.dialects import sqlite

        from storage.cases import _owner_conditions, open_cases_of
        from storage.models import Case as C

        stmts = [select(C.id).where(cond, C.closed_at.is_(None)).order_by(C.created_at.desc()).limit(1)
                 for cond in _owner_conditions(1, 2)]
        queries = [(str(stmt.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True})), ())
                   for stmt in stmts]
        with w.services.engine.connect() as conn:
            for sql, params in queries:
                plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params))
                assert "ix_case_household_id" in plan or "ix_case_reporter_id" in plan, plan
            # The one write path's read of a batch's open cases: each owner through its index, no scan.
            batch = str(open_cases_of([1, 2], [3, 4]).compile(dialect=sqlite.dialect(),
                                                               compile_kwargs={"literal_binds": True}))
            plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + batch))
            assert "ix_case_household_id" in plan and "ix_case_reporter_id" in plan, plan
            assert "SCAN" not in plan.replace("SCAN CONSTANT ROW", ""), plan
    finally:
        w.close()


def test_with_redis_the_states_of_a_batch_go_there(tmp_path, db_url):
    from tests.conftest import IN_CI
    from tests.servers import redis_available, redis_db

    problem = redis_available()
    if problem:
        (pytest.fail if IN_CI else pytest.skip)(f"Redis not reachable at 127.0.0.1:6379 ({problem})")
    with redis_db() as url:
        w = WeChatApp(tmp_path, db_url, mode="safe", redis_url=url)
        try:
            assert type(w.ctx.kv).__name__ == "RedisKV"
            openids = [f"o-redis-{i}" for i in range(4)]
            for o in openids:
                bind(w, o)
            w.ctx.kv.set("wechat:dlg:o-redis-3", json.dumps({"flow": "register", "stage": "name"}), ttl=60)
            gc = GroupCommit(w.ctx)
            results = [gc.file(click(o)) for o in openids]
            assert [bool(r) for r in results] == [True, True, True, False]  # o-redis-3 is registering
            assert json.loads(w.ctx.kv.get("wechat:dlg:o-redis-0"))["stage"] == "risk"
            assert rows(w, KeyValue) == []  # nothing of the dialogue in the database
            user = w.user(openids[0])
            assert user.text("2").text.startswith("已记下困难类型")  # continues from Redis
            assert len(rows(w, Case)) == 3
            # In one batch the states come from one MGET: the registering sender is left out.
            bind(w, "o-redis-4")
            batch = [_Job(click("o-redis-3", 1_700_000_100)), _Job(click("o-redis-4"))]
            gc._run(batch)
            assert batch[0].result is None and "编号 SB" in batch[1].result
            assert len(rows(w, Case)) == 4
        finally:
            w.close()


def test_the_flood_path_purges_expired_states_now_and_then(app):
    """Its dialogue states go into the key-value table without ``DatabaseKV.set``: the leader
    purges the expired ones on the same schedule."""
    import datetime as dt

    from storage.models import utcnow

    bind(app, "o-purge")
    with Session(app.services.engine) as s:
        s.add(KeyValue(key="wechat:dlg:o-gone", value="{}", expires_at=utcnow() - dt.timedelta(minutes=1)))
        s.commit()
    app.ctx.kv._next_purge = 0.0
    assert app.inbox.handle(click("o-purge"))
    assert [r.key for r in rows(app, KeyValue)] == ["wechat:dlg:o-purge"]


@pytest.mark.parametrize("busy", [True, False])
def test_a_busy_leader_gathers_the_reports_on_their_way(app, busy):
    """After a batch of more than one, the next leader waits for more while they keep coming
    (``gather`` at most); after a batch of one (idle) it files at once."""
    import time

    openids = ["o-gather-a", "o-gather-b", "o-gather-c"]
    for o in openids:
        bind(app, o)
    gc = GroupCommit(app.ctx, gather=0.8, gather_step=0.3)
    gc._last_size = 2 if busy else 1
    out: dict[str, str | None] = {}
    threads = [threading.Thread(target=lambda o=o: out.__setitem__(o, gc.file(click(o)))) for o in openids]
    threads[0].start()
    time.sleep(0.05)  # the leader is on its way (or, idle, already filing alone)
    for t in threads[1:]:
        t.start()
    for t in threads:
        t.join(10)
    assert all(out[o] and "编号 SB" in out[o] for o in openids)
    if busy:
        assert gc.batch_sizes == {3: 1}
    else:
        assert gc.batch_sizes[1] >= 1 and 3 not in gc.batch_sizes
    assert len(rows(app, Case)) == 3


def test_a_busy_leader_stops_waiting_when_none_come(app):
    import time

    bind(app, "o-alone")
    gc = GroupCommit(app.ctx, gather=5.0, gather_step=0.05)
    gc._last_size = 2  # busy
    started = time.monotonic()
    assert "编号 SB" in gc.file(click("o-alone"))
    assert time.monotonic() - started < 3  # one step without arrivals, not the 5 s
    assert gc.batch_sizes == {1: 1}


def test_two_taps_at_once_are_flagged_as_possible_duplicates(app):
    """Two one-click reports of one household in two transactions at the same moment (two taps
    handled by two workers): the second sees the first, decided inside its own transaction."""
    bind(app, "o-tap-a")
    with session_scope(app.services.engine) as s:  # a second member of the same household
        first = get_or_create_wechat_user(s, openid="o-tap-a")
        other = get_or_create_wechat_user(s, openid="o-tap-b")
        other.household_id = first.household_id
        s.add(other)
    start = threading.Barrier(2)
    out: dict[str, object] = {}

    def tap(openid: str, t: int) -> None:
        start.wait()
        out[openid] = file_batch(app.ctx, [click(openid, t)], state_in_db=True)[0]

    threads = [threading.Thread(target=tap, args=(o, t)) for o, t in (("o-tap-a", 1), ("o-tap-b", 2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(out.values())
    a, b = sorted(rows(app, Case), key=lambda c: c.id)
    assert a.possible_duplicate_of_id is None and b.possible_duplicate_of_id == a.id
