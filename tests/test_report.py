"""The intake use case on both databases: validation, idempotency (also under real concurrency),
reference numbers, progress, urgent notification."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import threading

import pytest
from sqlmodel import Session, func, select

from handlers.context import Context
from handlers.demo import load_demo
from handlers.errors import ValidationError
from handlers.report import ReportInput, progress, progress_text, submit
from storage import DataCipher, init_db, make_engine
from storage.crypto import generate_data_key
from storage.models import Case, CaseEvent, Household, Outbox, Region, StaffUser
from storage.refs import REF_RE

KEY = generate_data_key()


@pytest.fixture
def dbctx(db_url):
    engine = make_engine(db_url)
    init_db(engine)
    ctx = Context(engine=engine, cipher=DataCipher(KEY))
    load_demo(ctx)
    yield ctx
    engine.dispose()


def _village(ctx, name="龙湾村") -> Region:
    with Session(ctx.engine) as s:
        return s.exec(select(Region).where(Region.name == name)).one()


def _household(ctx, head="张建国") -> Household:
    with Session(ctx.engine) as s:
        return s.exec(select(Household).where(Household.head_name == head)).one()


def _count(ctx, model=Case) -> int:
    with Session(ctx.engine) as s:
        return s.exec(select(func.count()).select_from(model)).one()


def test_bound_household_report_lands_with_reference_and_deadline(dbctx):
    hh = _household(dbctx)
    ack = submit(dbctx, ReportInput(channel="wechat", inbound_key="wechat:o1:1", household_id=hh.id))
    assert REF_RE.match(ack.ref) and ack.created
    assert ack.due_at is not None and ack.due_at > dt.datetime.now(dt.UTC)
    assert ack.next_questions  # asks for risk types and a description
    with Session(dbctx.engine) as s:
        case = s.exec(select(Case).where(Case.ref == ack.ref)).one()
        assert case.village_id == hh.village_id and case.step == "warning"
        assert s.exec(select(CaseEvent).where(CaseEvent.case_id == case.id)).one().action == "created"


def test_reference_numbers_are_sequential_per_day(dbctx):
    hh = _household(dbctx)
    now = dt.datetime(2026, 11, 22, 2, tzinfo=dt.UTC)
    refs = [submit(dbctx, ReportInput(channel="wechat", inbound_key=f"k{i}", household_id=hh.id), now=now).ref
            for i in range(3)]
    assert refs == ["SB20261122-0001", "SB20261122-0002", "SB20261122-0003"]


def test_same_inbound_key_twice_is_one_case(dbctx):
    hh = _household(dbctx)
    a = submit(dbctx, ReportInput(channel="wechat", inbound_key="wechat:o1:42", household_id=hh.id))
    b = submit(dbctx, ReportInput(channel="wechat", inbound_key="wechat:o1:42", household_id=hh.id))
    assert a.ref == b.ref and a.created and not b.created
    assert "已经收到" in b.message
    assert _count(dbctx) == 1


def test_concurrent_threads_same_key_create_one_case(dbctx):
    hh = _household(dbctx)
    refs, errors = [], []
    barrier = threading.Barrier(8)

    def go():
        try:
            barrier.wait()
            refs.append(submit(dbctx, ReportInput(channel="wechat", inbound_key="race", household_id=hh.id)).ref)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(refs)) == 1 and _count(dbctx) == 1


def _proc_submit(url, key, hh_id, keys, out):
    engine = make_engine(url)
    ctx = Context(engine=engine, cipher=DataCipher(KEY))
    for k in keys:
        out.put(submit(ctx, ReportInput(channel="wechat", inbound_key=k, household_id=hh_id)).ref)
    engine.dispose()


@pytest.mark.postgres
def test_concurrent_processes_on_postgres(pg_url):
    engine = make_engine(pg_url)
    init_db(engine)
    ctx = Context(engine=engine, cipher=DataCipher(KEY))
    load_demo(ctx)
    hh = _household(ctx)
    keys = [f"p{i}" for i in range(20)]
    mp = multiprocessing.get_context("spawn")
    out = mp.Queue()
    procs = [mp.Process(target=_proc_submit, args=(pg_url, KEY, hh.id, keys, out)) for _ in range(4)]
    for p in procs:
        p.start()
    refs = [out.get(timeout=60) for _ in range(4 * len(keys))]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert _count(ctx) == len(keys)  # every key once, no matter how many processes raced
    assert len(set(refs)) == len(keys)
    engine.dispose()


def test_unbound_reporter_needs_a_real_village(dbctx):
    town = None
    with Session(dbctx.engine) as s:
        town = s.exec(select(Region).where(Region.level == "township")).first()
    with pytest.raises(ValidationError) as info:
        submit(dbctx, ReportInput(channel="wechat", village_id=town.id, reporter_name="王五"))
    assert info.value.field == "village_id"
    ack = submit(dbctx, ReportInput(channel="wechat", village_id=_village(dbctx).id, reporter_name="王五",
                                    reporter_phone="13800001111", risk_types=["因病"]))
    assert ack.risk_types == ["illness"]


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"risk_types": ["flu"]}, "risk_types"),
        ({"risk_types": "illness"}, "risk_types"),
        ({"description": "很" * 2001}, "description"),
        ({"reporter_phone": "12345"}, "reporter_phone"),
        ({"channel": "fax"}, "channel"),
        ({"village_id": None, "household_id": None}, "village_id"),
        ({"reporter_name": "名" * 40}, "reporter_name"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(dbctx, changes, field):
    data = ReportInput(channel="wechat", village_id=_village(dbctx).id, inbound_key="bad")
    for k, v in changes.items():
        setattr(data, k, v)
    with pytest.raises(ValidationError) as info:
        submit(dbctx, data)
    assert info.value.field == field and info.value.message
    assert _count(dbctx) == 0 and _count(dbctx, CaseEvent) == 0


def test_description_pii_is_masked_and_stored_encrypted(dbctx):
    ack = submit(dbctx, ReportInput(
        channel="wechat", village_id=_village(dbctx).id, reporter_name="李四",
        description="我男人摔断了腿 身份证612724198305121235 电话13912345678",
    ))
    with Session(dbctx.engine) as s:
        case = s.exec(select(Case).where(Case.ref == ack.ref)).one()
    assert "612724198305121235" not in case.description and "13912345678" not in case.description
    assert dbctx.cipher.decrypt(case.reporter_id_number_enc) == "612724198305121235"
    assert dbctx.cipher.decrypt(case.reporter_phone_enc) == "13912345678"


def test_urgent_report_notifies_township_staff(dbctx):
    with Session(dbctx.engine) as s:
        staff = s.exec(select(StaffUser).where(StaffUser.username == "chengguan")).one()
        staff.wechat_openid = "o-staff-1"
        s.add(staff)
        s.commit()
    ack = submit(dbctx, ReportInput(channel="wechat", village_id=_village(dbctx).id, reporter_name="王五",
                                    urgent=True, urgent_reasons=["房屋倒塌"]))
    assert ack.urgent and "绿色通道" in ack.message
    with Session(dbctx.engine) as s:
        msgs = s.exec(select(Outbox)).all()
    assert [m.recipient for m in msgs] == ["o-staff-1"]
    assert msgs[0].payload["data"]["ref"] == ack.ref


def test_second_open_case_of_household_is_flagged_as_possible_duplicate(dbctx):
    hh = _household(dbctx)
    a = submit(dbctx, ReportInput(channel="wechat", inbound_key="d1", household_id=hh.id))
    b = submit(dbctx, ReportInput(channel="staff", inbound_key="d2", household_id=hh.id))
    with Session(dbctx.engine) as s:
        second = s.get(Case, b.case_id)
    assert second.possible_duplicate_of_id == a.case_id


def test_progress_lists_cases_with_step_and_deadline(dbctx):
    hh = _household(dbctx)
    submit(dbctx, ReportInput(channel="wechat", inbound_key="g1", household_id=hh.id))
    items = progress(dbctx, household_id=hh.id)
    assert len(items) == 1 and items[0].step_label == "风险预警" and items[0].due_at
    text = progress_text(items)
    assert items[0].ref in text and "办理时限" in text
    late = progress(dbctx, household_id=hh.id, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=30))
    assert late[0].overdue and "已超过时限" in progress_text(late)
    assert "还没有申报" in progress_text([])
