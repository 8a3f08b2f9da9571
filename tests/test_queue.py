"""The queue use case on SQLite and PostgreSQL: order, keyset pages, counts, filters, search,
scoping, masking and the audited export."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from sqlmodel import Session, select

from handlers import queue
from handlers.context import Context
from handlers.demo import load_demo
from handlers.errors import Forbidden, ValidationError
from storage import DataCipher, init_db, make_engine, session_scope
from storage.crypto import generate_data_key
from storage.models import AuditLog, Case
from tests.console_support import actor, drive, report, version


@pytest.fixture
def qctx(db_url):
    engine = make_engine(db_url)
    init_db(engine)
    ctx = Context(engine=engine, cipher=DataCipher(generate_data_key()))
    load_demo(ctx)
    yield ctx
    engine.dispose()


NOW = dt.datetime.now(dt.UTC)


def _refs(page):
    return [r.ref for r in page.rows]


def test_urgent_first_then_overdue_then_due_date(qctx):
    late = report(qctx, head="张建国", now=NOW - dt.timedelta(days=30))  # overdue by now
    soon = report(qctx, head="李秀英", now=NOW - dt.timedelta(days=3))
    fresh = report(qctx, head="王大山")
    urgent = report(qctx, head="王大山", urgent=True)
    no_due = report(qctx, head="张建国")
    with session_scope(qctx.engine) as s:
        c = s.get(Case, no_due.id)
        c.due_at = None
        s.add(c)
    page = queue.queue(qctx, actor(qctx, "county"), {})
    assert _refs(page) == [urgent.ref, late.ref, soon.ref, fresh.ref, no_due.ref]
    rows = {r.ref: r for r in page.rows}
    assert rows[late.ref].overdue and not rows[soon.ref].overdue and rows[urgent.ref].urgent
    assert rows[late.ref].days_left < 0
    assert page.urgent_count == 1 and page.overdue_count == 1 and page.total == 5


def test_keyset_pages_cover_every_case_once_in_order(qctx):
    made = []
    for i in range(23):
        made.append(report(qctx, head=["张建国", "李秀英", "王大山"][i % 3], urgent=i % 7 == 0,
                           now=NOW - dt.timedelta(hours=i * 5)))
    with session_scope(qctx.engine) as s:  # a few without a due date, sorted last
        for c in made[:3]:
            row = s.get(Case, c.id)
            row.due_at = None
            s.add(row)
    county = actor(qctx, "county")
    seen, after, pages = [], "", 0
    while True:
        page = queue.queue(qctx, county, {"after": after} if after else {}, page_size=5)
        seen += page.rows
        pages += 1
        if not page.next_cursor:
            break
        after = page.next_cursor
    assert pages == 5 and len(seen) == 23 and len({r.id for r in seen}) == 23
    whole = queue.queue(qctx, county, {}, page_size=100)
    assert [r.id for r in seen] == [r.id for r in whole.rows]
    keys = [(not r.urgent, r.due_at is None, r.due_at or NOW, r.id) for r in seen]
    assert keys == sorted(keys)


def test_counts_per_step_and_step_filter(qctx):
    a = report(qctx, head="张建国")
    report(qctx, head="李秀英")
    drive(qctx, a.id, "consent")
    county = actor(qctx, "county")
    page = queue.queue(qctx, county, {"step": "consent"})
    counts = {code: n for code, _label, n in page.counts}
    assert counts["warning"] == 1 and counts["consent"] == 1 and counts["visit"] == 0
    assert _refs(page) == [a.ref]


def test_filters_risk_village_channel_mine_and_status(qctx):
    ill = report(qctx, head="张建国", risks=("illness", "housing"))
    school = report(qctx, head="王大山", risks=("education",))
    county, cadre = actor(qctx, "county"), actor(qctx, "longwan")
    assert _refs(queue.queue(qctx, county, {"risk": "housing"})) == [ill.ref]
    assert _refs(queue.queue(qctx, county, {"risk": "education"})) == [school.ref]
    dongba = next(v for v in queue.queue(qctx, county, {}).villages if v[1] == "东坝村")
    assert _refs(queue.queue(qctx, county, {"village": str(dongba[0])})) == [school.ref]
    assert _refs(queue.queue(qctx, county, {"channel": "staff"})) == []
    from handlers import triage

    triage.assign(qctx, cadre, ill.id, staff_id=str(cadre.id), version=version(qctx, ill.id))
    assert _refs(queue.queue(qctx, cadre, {"mine": "1"})) == [ill.ref]
    assert _refs(queue.queue(qctx, county, {"status": "closed"})) == []
    for bad in ({"step": "nope"}, {"risk": "x"}, {"status": "deleted"}, {"village": "1 OR 1=1"}, {"after": "zzz"},
                {"q": "长" * 41}):
        with pytest.raises(ValidationError):
            queue.queue(qctx, county, bad)
    with pytest.raises(ValidationError):  # a village outside the viewer's scope
        shuangxi = next(v for v in queue.queue(qctx, county, {}).villages if v[1] == "双喜村")
        queue.queue(qctx, cadre, {"village": str(shuangxi[0])})


def test_search_by_reference_name_and_phone_with_phones_masked(qctx):
    a = report(qctx, head="张建国")
    b = report(qctx, head=None, village_name="东坝村", name="刘小红", phone="13700007777")
    county = actor(qctx, "county")
    assert _refs(queue.queue(qctx, county, {"q": a.ref.lower()})) == [a.ref]
    assert set(_refs(queue.queue(qctx, county, {"q": a.ref[:10]}))) == {a.ref, b.ref}
    assert _refs(queue.queue(qctx, county, {"q": "刘小"})) == [b.ref]
    assert _refs(queue.queue(qctx, county, {"q": "张建国"})) == [a.ref]  # household head
    hit = queue.queue(qctx, county, {"q": "137 0000 7777"})
    assert _refs(hit) == [b.ref] and hit.rows[0].phone == "137****7777"
    # the household's own phone (blind index on Household.phone_idx) finds its cases too
    assert _refs(queue.queue(qctx, county, {"q": "13912340001"})) == [a.ref]
    assert queue.queue(qctx, county, {"q": "13912340001"}).rows[0].phone == "139****0001"


def test_scope_township_and_village_see_only_their_cases(qctx):
    cg = report(qctx, head="张建国")        # 城关镇/龙湾村
    db = report(qctx, head="王大山")        # 城关镇/东坝村
    sj = report(qctx, head="赵兰芳")        # 宋家镇/双喜村
    assert set(_refs(queue.queue(qctx, actor(qctx, "chengguan"), {}))) == {cg.ref, db.ref}
    assert set(_refs(queue.queue(qctx, actor(qctx, "songjia"), {}))) == {sj.ref}
    assert set(_refs(queue.queue(qctx, actor(qctx, "longwan"), {}))) == {cg.ref}
    assert set(_refs(queue.queue(qctx, actor(qctx, "admin"), {}))) == {cg.ref, db.ref, sj.ref}
    assert queue.queue(qctx, actor(qctx, "songjia"), {"q": cg.ref}).rows == []


def _csv(body: bytes):
    assert body.startswith("\ufeff".encode())
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))


def test_export_is_masked_unless_the_role_allows_and_always_audited(qctx):
    report(qctx, head="张建国")
    report(qctx, head=None, village_name="东坝村", name="=HYPERLINK(\"x\")", phone="13700007777")
    town, county = actor(qctx, "chengguan"), actor(qctx, "county")
    name, body, n = queue.export_csv(qctx, town, {}, ip="10.1.1.1")
    rows = _csv(body)
    assert name.endswith(".csv") and n == 2 and rows[0][0] == "编号"
    flat = "\n".join(",".join(r) for r in rows)
    assert "610929********0018" in flat and "610929196805120018" not in flat and "137****7777" in flat
    assert any(r[6].startswith("'=HYPERLINK") for r in rows[1:])  # no formula injection
    with pytest.raises(Forbidden):
        queue.export_csv(qctx, town, {}, unmasked=True)
    _, body, _ = queue.export_csv(qctx, county, {"risk": "illness"}, unmasked=True)
    flat = "\n".join(",".join(r) for r in _csv(body))
    assert "610929196805120018" in flat and "13912340001" in flat
    with Session(qctx.engine) as s:
        audits = list(s.exec(select(AuditLog).where(AuditLog.action == "export").order_by(AuditLog.id)))
    assert [a.actor_name for a in audits] == ["chengguan", "county"]
    assert "个人信息打码" in audits[0].detail and "含完整身份证号和电话" in audits[1].detail
    assert "困难类型=因病" in audits[1].detail and audits[1].detail.startswith("2 条")
