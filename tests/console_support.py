"""Helpers shared by the triage, queue and console tests: actors, cases, a fake knowledge base."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session, select

from handlers.report import ReportInput, submit
from handlers.staff import Actor, load_actor
from storage.models import Case, Household, Region, StaffUser
from tests.wechat_user import FakeHit


def actor(ctx, username: str) -> Actor:
    with Session(ctx.engine) as s:
        staff = s.exec(select(StaffUser).where(StaffUser.username == username)).one()
    result = load_actor(ctx, staff.id)
    assert result is not None
    return result


def household(ctx, head: str) -> Household:
    with Session(ctx.engine) as s:
        return s.exec(select(Household).where(Household.head_name == head)).one()


def village(ctx, name: str) -> Region:
    with Session(ctx.engine) as s:
        return s.exec(select(Region).where(Region.name == name)).one()


def get_case(ctx, case_id: int) -> Case:
    with Session(ctx.engine) as s:
        return s.get(Case, case_id)


_seq = [0]


def report(ctx, *, head: str | None = "张建国", village_name: str | None = None, urgent: bool = False,
           risks=("illness",), description: str = "老伴住院了", now: dt.datetime | None = None,
           reporter_id: int | None = None, phone: str | None = None, name: str = "") -> Case:
    """A case created through the real intake use case."""
    _seq[0] += 1
    data = ReportInput(
        channel="wechat", inbound_key=f"test:{_seq[0]}:{dt.datetime.now().timestamp()}",
        household_id=household(ctx, head).id if head else None,
        village_id=village(ctx, village_name).id if village_name else None,
        risk_types=list(risks), description=description, urgent=urgent,
        urgent_reasons=["住院无钱交押金"] if urgent else [], reporter_id=reporter_id, reporter_phone=phone,
        reporter_name=name,
    )
    ack = submit(ctx, data, now=now)
    return get_case(ctx, ack.case_id)


class FakeKB:
    """Stands in for knowledge.KnowledgeBase where only ``clauses_for`` matters."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def search(self, *a, **k):  # pragma: no cover - not used by the console
        raise NotImplementedError

    def clauses_for(self, query_terms, k=3):
        self.calls.append(list(query_terms))
        if "医疗救助" in query_terms:
            return [FakeHit("plan.txt", "陕西省巩固拓展脱贫攻坚成果规划", "陕西省人民政府", "2021-10-12", "陕政发〔2021〕1号",
                            "第三章 第二节", "完善医疗救助托底保障，落实大病保险倾斜政策，推行先诊疗后付费。",
                            100, 140, 3.2, region=None)]
        return []

    def status(self):
        return {"documents": 1, "passages": 1}


class BrokenKB:
    def search(self, *a, **k):
        raise FileNotFoundError("index missing")

    def clauses_for(self, *a, **k):
        raise FileNotFoundError("index missing")


#: Who completes each step in the demo county (城关镇 / 龙湾村).
STEP_ACTOR = {
    "warning": "longwan", "visit": "longwan", "consent": "longwan", "data_check": "chengguan",
    "review": "longwan", "notice": "longwan", "township": "chengguan",
}


def version(ctx, case_id: int) -> str:
    from handlers.triage import version_of

    return version_of(get_case(ctx, case_id))


def drive(ctx, case_id: int, until: str, *, now: dt.datetime | None = None) -> Case:
    """Complete steps with the right roles until the case stands at step ``until``."""
    from handlers.triage import advance

    now = now or dt.datetime.now(dt.UTC)
    while get_case(ctx, case_id).step != until:
        step = get_case(ctx, case_id).step
        if step == "notice":
            now = now + dt.timedelta(days=ctx.notice_days, minutes=1)
        advance(ctx, actor(ctx, STEP_ACTOR[step]), case_id, step=step, version=version(ctx, case_id),
                note=f"{step} 完成", now=now)
        now = now + dt.timedelta(minutes=1)
    return get_case(ctx, case_id)


def bind_villager(ctx, openid: str, head: str) -> int:
    """A subscribed official-account user bound to the household; returns its WeChatUser id."""
    from storage import session_scope
    from storage.people import bind_household, get_or_create_wechat_user

    with session_scope(ctx.engine) as s:
        user = get_or_create_wechat_user(s, openid=openid)
        hh = s.exec(select(Household).where(Household.head_name == head)).one()
        bind_household(s, user, hh)
        s.flush()
        return user.id
