"""The procedure state machine on SQLite and PostgreSQL: order, roles, notice period, outcomes,
assistance, risk clearance, green channel, merge, notifications, audit, region scoping."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlmodel import Session, select

from handlers import triage
from handlers.context import Context
from handlers.deadlines import WorkCalendar
from handlers.demo import load_demo
from handlers.errors import Conflict, Forbidden, NotFound, ValidationError
from storage import DataCipher, init_db, make_engine, session_scope
from storage.crypto import generate_data_key
from storage.models import AuditLog, CaseEvent, Outbox, StaffUser
from storage.regions import set_deadline
from tests.console_support import (
    BrokenKB,
    FakeKB,
    actor,
    bind_villager,
    drive,
    get_case,
    report,
    version,
)


@pytest.fixture
def tctx(db_url):
    engine = make_engine(db_url)
    init_db(engine)
    ctx = Context(engine=engine, cipher=DataCipher(generate_data_key()), calendar=WorkCalendar(),
                  notice_days=5, knowledge=FakeKB())
    load_demo(ctx)
    yield ctx
    engine.dispose()


def _events(ctx, case_id):
    with Session(ctx.engine) as s:
        return list(s.exec(select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id)))


def _outbox(ctx):
    with Session(ctx.engine) as s:
        return list(s.exec(select(Outbox).order_by(Outbox.id)))


def _audit(ctx, action=None):
    with Session(ctx.engine) as s:
        stmt = select(AuditLog).order_by(AuditLog.id)
        if action:
            stmt = stmt.where(AuditLog.action == action)
        return list(s.exec(stmt))


def test_full_procedure_monitored_then_risk_cleared(tctx):
    uid = bind_villager(tctx, "o-zhang", "张建国")
    case = report(tctx, reporter_id=uid)
    start = dt.datetime.now(dt.UTC)
    drive(tctx, case.id, "county", now=start)
    steps_done = [e.step for e in _events(tctx, case.id) if e.action == "step_done"]
    assert steps_done == ["warning", "visit", "consent", "data_check", "review", "notice", "township"]

    county = actor(tctx, "county")
    res = triage.decide(tctx, county, case.id, outcome="monitored", monitoring_type="sudden",
                        version=version(tctx, case.id))
    assert res.notified == 1
    c = get_case(tctx, case.id)
    assert (c.step, c.outcome, c.monitoring_type, c.closed_at) == ("assistance", "monitored", "sudden", None)
    text = [o for o in _outbox(tctx) if o.kind == "text"][-1]
    assert text.recipient == "o-zhang" and "纳入防返贫监测" in text.payload["content"]
    fallback = text.payload["fallback_template"]
    assert fallback["template"] == "outcome" and fallback["data"]["ref"] == c.ref
    assert fallback["data"]["status"] == "已纳入监测，正在帮扶"

    triage.record_assistance(tctx, actor(tctx, "longwan"), case.id, kind="medical", amount="3000",
                             note="医疗救助已到账", version=version(tctx, case.id))
    triage.clear_risk(tctx, county, case.id, conditions=list(triage.CLEAR_CONDITION_KEYS),
                      version=version(tctx, case.id))
    c = get_case(tctx, case.id)
    assert (c.step, c.outcome) == ("closed", "risk_cleared") and c.closed_at is not None
    assert "风险已消除" in [o for o in _outbox(tctx) if o.kind == "text"][-1].payload["content"]
    actions = [a.action for a in _audit(tctx)]
    assert actions.count("step") == 7 and "decide" in actions and "assistance" in actions and "clear_risk" in actions
    view = triage.case_view(tctx, county, case.id)
    labels = [t.label for t in view.timeline]
    assert labels[0] == "提交申报" and "风险消除" in labels and any("县级审定" in lbl for lbl in labels)
    assert view.actions.keys() == {"note"}


def test_step_out_of_order_is_refused_and_changes_nothing(tctx):
    case = report(tctx)
    before = len(_events(tctx, case.id))
    with pytest.raises(Conflict) as err:
        triage.advance(tctx, actor(tctx, "longwan"), case.id, step="visit", version=version(tctx, case.id))
    assert "风险预警" in err.value.message and "按顺序" in err.value.message
    with pytest.raises(Conflict):  # the decision cannot be taken early either
        triage.decide(tctx, actor(tctx, "county"), case.id, outcome="rejected", reason="不符合",
                      version=version(tctx, case.id))
    assert get_case(tctx, case.id).step == "warning"
    assert len(_events(tctx, case.id)) == before
    assert not _audit(tctx, "step")


@pytest.mark.parametrize("step,who", [("visit", "chengguan"), ("visit", "county"), ("data_check", "longwan"),
                                      ("township", "longwan"), ("county", "chengguan")])
def test_a_step_by_a_role_not_allowed_is_refused(tctx, step, who):
    case = report(tctx)
    drive(tctx, case.id, step)
    before = version(tctx, case.id)
    with pytest.raises((Forbidden, Conflict)) as err:
        if step == "county":
            triage.decide(tctx, actor(tctx, who), case.id, outcome="monitored", monitoring_type="unstable",
                          version=before)
        else:
            triage.advance(tctx, actor(tctx, who), case.id, step=step, version=before)
    assert err.value.status == 403
    assert version(tctx, case.id) == before and get_case(tctx, case.id).step == step


def test_admin_cannot_work_cases(tctx):
    case = report(tctx)
    with pytest.raises(Forbidden):
        triage.advance(tctx, actor(tctx, "admin"), case.id, step="warning", version=version(tctx, case.id))
    assert triage.case_view(tctx, actor(tctx, "admin"), case.id).actions == {}


def test_replayed_or_stale_form_changes_nothing(tctx):
    case = report(tctx)
    v = version(tctx, case.id)
    cadre = actor(tctx, "longwan")
    triage.advance(tctx, cadre, case.id, step="warning", version=v, note="已核实")
    with pytest.raises(Conflict):  # the same post again
        triage.advance(tctx, cadre, case.id, step="warning", version=v, note="已核实")
    with pytest.raises(Conflict) as err:  # right step, old version (someone else acted meanwhile)
        triage.add_note(tctx, cadre, case.id, note="x", version=v)
    assert "刷新" in err.value.message
    assert [e.action for e in _events(tctx, case.id)] == ["created", "step_done"]


def test_notice_period_blocks_township_review_until_it_ends(tctx):
    case = report(tctx)
    t0 = dt.datetime(2026, 12, 1, 2, 0, tzinfo=dt.UTC)
    drive(tctx, case.id, "notice", now=t0)
    started = get_case(tctx, case.id).step_started_at
    cadre = actor(tctx, "longwan")
    with pytest.raises(Conflict) as err:
        triage.advance(tctx, cadre, case.id, step="notice", version=version(tctx, case.id),
                       now=started + dt.timedelta(days=4, hours=23))
    assert "公示" in err.value.message and "5 天" in err.value.message
    assert get_case(tctx, case.id).step == "notice"
    assert get_case(tctx, case.id).due_at >= started + dt.timedelta(days=5)
    triage.advance(tctx, cadre, case.id, step="notice", version=version(tctx, case.id),
                   now=started + dt.timedelta(days=5, seconds=1))
    assert get_case(tctx, case.id).step == "township"


def test_deadlines_follow_the_region_rule_in_working_days(tctx):
    with session_scope(tctx.engine) as s:
        from storage.models import Region

        town = s.exec(select(Region).where(Region.name == "城关镇")).one()
        set_deadline(s, step="visit", working_days=2, region=town)
    case = report(tctx)
    friday = dt.datetime(2026, 12, 4, 2, 0, tzinfo=dt.UTC)  # 10:00 in China
    triage.advance(tctx, actor(tctx, "longwan"), case.id, step="warning", version=version(tctx, case.id), now=friday)
    due = get_case(tctx, case.id).due_at.astimezone(dt.timezone(dt.timedelta(hours=8)))
    assert due.date() == dt.date(2026, 12, 8)  # Mon, Tue: two working days after Friday


def test_rejection_needs_a_reason_and_tells_the_villager_why(tctx):
    uid = bind_villager(tctx, "o-li", "李秀英")
    case = report(tctx, head="李秀英", reporter_id=uid)
    drive(tctx, case.id, "county")
    county = actor(tctx, "county")
    with pytest.raises(ValidationError):
        triage.decide(tctx, county, case.id, outcome="rejected", reason="  ", version=version(tctx, case.id))
    with pytest.raises(ValidationError):
        triage.decide(tctx, county, case.id, outcome="monitored", monitoring_type="nonsense",
                      version=version(tctx, case.id))
    assert get_case(tctx, case.id).outcome is None
    triage.decide(tctx, county, case.id, outcome="rejected", reason="家庭人均纯收入高于监测标准",
                  version=version(tctx, case.id))
    c = get_case(tctx, case.id)
    assert (c.outcome, c.step) == ("rejected", "closed") and c.closed_at is not None
    msg = [o for o in _outbox(tctx) if o.recipient == "o-li"]
    assert len(msg) == 1 and msg[0].kind == "text"
    assert "没有纳入监测" in msg[0].payload["content"] and "家庭人均纯收入高于监测标准" in msg[0].payload["content"]
    with pytest.raises(Conflict):  # closed: nothing more
        triage.advance(tctx, actor(tctx, "longwan"), case.id, step="closed", version=version(tctx, case.id))


def test_risk_clearance_conditions_and_no_labour_capacity(tctx):
    county = actor(tctx, "county")
    # 李秀英's household has no labour capacity: it stays monitored.
    weak = report(tctx, head="李秀英")
    drive(tctx, weak.id, "county")
    triage.decide(tctx, county, weak.id, outcome="monitored", monitoring_type="unstable", version=version(tctx, weak.id))
    triage.record_assistance(tctx, county, weak.id, kind="dibao", version=version(tctx, weak.id))
    with pytest.raises(Conflict) as err:
        triage.clear_risk(tctx, county, weak.id, conditions=list(triage.CLEAR_CONDITION_KEYS),
                          version=version(tctx, weak.id))
    assert "无劳动能力" in err.value.message
    assert get_case(tctx, weak.id).outcome == "monitored"

    strong = report(tctx, head="张建国")
    drive(tctx, strong.id, "county")
    triage.decide(tctx, county, strong.id, outcome="monitored", monitoring_type="marginal",
                  version=version(tctx, strong.id))
    with pytest.raises(ValidationError) as err:
        triage.clear_risk(tctx, county, strong.id, conditions=["income_stable"], version=version(tctx, strong.id))
    assert "两不愁三保障" in err.value.message
    with pytest.raises(Conflict) as err:
        triage.clear_risk(tctx, county, strong.id, conditions=list(triage.CLEAR_CONDITION_KEYS),
                          version=version(tctx, strong.id))
    assert "帮扶措施" in err.value.message
    with pytest.raises(Forbidden):
        triage.clear_risk(tctx, actor(tctx, "chengguan"), strong.id, conditions=list(triage.CLEAR_CONDITION_KEYS),
                          version=version(tctx, strong.id))
    assert get_case(tctx, strong.id).closed_at is None


def test_first_aid_at_any_step_for_urgent_cases_without_skipping(tctx):
    urgent = report(tctx, urgent=True)
    town = actor(tctx, "chengguan")
    triage.first_aid(tctx, town, urgent.id, kind="temporary", amount="2000", note="临时救助金先行发放",
                     version=version(tctx, urgent.id))
    c = get_case(tctx, urgent.id)
    assert c.first_aid_at is not None and c.step == "warning"
    assert "first_aid" in triage.case_view(tctx, town, urgent.id).actions
    drive(tctx, urgent.id, "visit")  # the procedure goes on from where it was
    assert get_case(tctx, urgent.id).step == "visit"

    calm = report(tctx, head="王大山")
    with pytest.raises(Conflict):
        triage.first_aid(tctx, town, calm.id, kind="temporary", note="x", version=version(tctx, calm.id))
    with pytest.raises(ValidationError):
        triage.first_aid(tctx, town, urgent.id, kind="temporary", amount="-5", note="x", version=version(tctx, urgent.id))


def test_marking_urgent_notifies_the_township_staff(tctx):
    with session_scope(tctx.engine) as s:
        staff = s.exec(select(StaffUser).where(StaffUser.username == "chengguan")).one()
        staff.wechat_openid = "o-staff-zhou"
        s.add(staff)
    case = report(tctx, head="李秀英")
    assert not _outbox(tctx)
    res = triage.mark_urgent(tctx, actor(tctx, "longwan"), case.id, reason="房屋倒塌", version=version(tctx, case.id))
    assert res.notified == 1
    row = _outbox(tctx)[0]
    assert row.kind == "template" and row.recipient == "o-staff-zhou"
    assert row.payload["template"] == "urgent_case" and row.payload["data"]["reasons"] == "房屋倒塌"
    assert get_case(tctx, case.id).urgent


def test_duplicate_is_flagged_and_merged_with_one_action(tctx):
    uid = bind_villager(tctx, "o-zhao", "赵兰芳")
    first = report(tctx, head="赵兰芳", reporter_id=uid, risks=("illness",))
    second = report(tctx, head="赵兰芳", reporter_id=uid, risks=("education",), urgent=True)
    assert second.possible_duplicate_of_id == first.id
    town = actor(tctx, "songjia")
    view = triage.case_view(tctx, town, second.id)
    assert view.duplicate_of["ref"] == first.ref and "merge" in view.actions
    res = triage.act(tctx, town, second.id, "merge", {"into_id": str(first.id), "version": view.version})
    assert res.extra["into_id"] == first.id
    merged, target = get_case(tctx, second.id), get_case(tctx, first.id)
    assert (merged.outcome, merged.merged_into_id, merged.step) == ("merged", first.id, "closed")
    assert target.closed_at is None and target.urgent and set(target.risk_types) == {"illness", "education"}
    assert [e.action for e in _events(tctx, first.id)][-1] == "merged_from"
    note = [o for o in _outbox(tctx) if o.kind == "text"][-1]
    assert first.ref in note.payload["content"] and note.recipient == "o-zhao"
    assert _audit(tctx, "merge")[0].target == second.ref


def test_merge_refuses_self_closed_and_other_region_targets(tctx):
    a = report(tctx, head="张建国")
    b = report(tctx, head="王大山")
    other_region = report(tctx, head="赵兰芳")
    town = actor(tctx, "chengguan")
    with pytest.raises(ValidationError):
        triage.merge(tctx, town, a.id, into_ref=a.ref, version=version(tctx, a.id))
    with pytest.raises(ValidationError):
        triage.merge(tctx, town, a.id, into_ref=other_region.ref, version=version(tctx, a.id))
    triage.merge(tctx, town, b.id, into_ref=a.ref, version=version(tctx, b.id))
    with pytest.raises(Conflict):
        triage.merge(tctx, town, a.id, into_ref=b.ref, version=version(tctx, a.id))
    with pytest.raises(Forbidden):
        triage.merge(tctx, actor(tctx, "longwan"), a.id, into_ref="SB1", version=version(tctx, a.id))
    assert get_case(tctx, a.id).closed_at is None


def test_another_regions_case_is_not_found(tctx):
    songjia_case = report(tctx, head="赵兰芳")  # 双喜村, 宋家镇
    chengguan, longwan = actor(tctx, "chengguan"), actor(tctx, "longwan")
    for who in (chengguan, longwan):
        with pytest.raises(NotFound):
            triage.case_view(tctx, who, songjia_case.id)
        with pytest.raises(NotFound):
            triage.advance(tctx, who, songjia_case.id, step="warning", version=version(tctx, songjia_case.id))
    dongba = report(tctx, head="王大山")  # 东坝村: same township, another village
    with pytest.raises(NotFound):
        triage.case_view(tctx, longwan, dongba.id)
    assert triage.case_view(tctx, actor(tctx, "county"), songjia_case.id).ref == songjia_case.ref
    assert get_case(tctx, songjia_case.id).step == "warning"


def test_bad_text_input_is_refused_and_html_is_kept_as_text(tctx):
    case = report(tctx)
    cadre = actor(tctx, "longwan")
    with pytest.raises(ValidationError) as err:
        triage.advance(tctx, cadre, case.id, step="warning", version=version(tctx, case.id), note="很" * 1001)
    assert "最多 1000 字" in err.value.message
    with pytest.raises(ValidationError):
        triage.add_note(tctx, cadre, case.id, note="a\x00b", version=version(tctx, case.id))
    with pytest.raises(ValidationError):
        triage.act(tctx, cadre, case.id, "explode", {"version": version(tctx, case.id)})
    assert get_case(tctx, case.id).step == "warning"
    triage.add_note(tctx, cadre, case.id, note="<script>alert(1)</script>", version=version(tctx, case.id))
    assert _events(tctx, case.id)[-1].note == "<script>alert(1)</script>"  # stored verbatim, escaped on output


def test_reveal_is_audited_and_masks_by_default(tctx):
    case = report(tctx)
    cadre = actor(tctx, "longwan")
    view = triage.case_view(tctx, cadre, case.id)
    assert view.household_person.id_number == "610929********0018" and view.household_person.phone == "139****0001"
    assert not _audit(tctx, "reveal")
    full = triage.case_view(tctx, cadre, case.id, reveal=True, ip="10.0.0.9")
    assert full.household_person.id_number == "610929196805120018" and full.household_person.phone == "13912340001"
    row = _audit(tctx, "reveal")[0]
    assert (row.actor_name, row.target, row.ip) == ("longwan", case.ref, "10.0.0.9")
    with pytest.raises(Forbidden):
        triage.case_view(tctx, actor(tctx, "admin"), case.id, reveal=True)


def test_link_household_for_an_unbound_report(tctx):
    existing = report(tctx, head="张建国")
    loose = report(tctx, head=None, village_name="龙湾村", name="张三", phone="13800001111")
    cadre = actor(tctx, "longwan")
    view = triage.case_view(tctx, cadre, loose.id)
    assert "link_household" in view.actions and view.reporter.phone == "138****1111"
    hh_id = next(i for i, label in view.village_households if label.startswith("张建国"))
    with pytest.raises(ValidationError):  # a household of another village
        from tests.console_support import household

        triage.link_household(tctx, cadre, loose.id, household_id=str(household(tctx, "王大山").id),
                              version=view.version)
    triage.link_household(tctx, cadre, loose.id, household_id=str(hh_id), version=view.version)
    c = get_case(tctx, loose.id)
    assert c.household_id == hh_id and c.possible_duplicate_of_id == existing.id


def test_assignment_rules(tctx):
    case = report(tctx)
    cadre, town = actor(tctx, "longwan"), actor(tctx, "chengguan")
    with pytest.raises(Forbidden):
        triage.assign(tctx, cadre, case.id, staff_id=str(town.id), version=version(tctx, case.id))
    triage.assign(tctx, cadre, case.id, staff_id=str(cadre.id), version=version(tctx, case.id))
    assert get_case(tctx, case.id).assigned_to_id == cadre.id
    with pytest.raises(ValidationError):  # 双喜村's cadre cannot see this case
        triage.assign(tctx, town, case.id, staff_id=str(actor(tctx, "shuangxi").id), version=version(tctx, case.id))
    triage.assign(tctx, town, case.id, staff_id=str(town.id), version=version(tctx, case.id))
    assert get_case(tctx, case.id).assigned_to_id == town.id


def test_policy_clauses_for_the_risk_types_and_a_graceful_message_without_index(tctx):
    case = report(tctx, risks=("illness",))
    view = triage.case_view(tctx, actor(tctx, "chengguan"), case.id)
    assert view.clauses and "先诊疗后付费" in view.clauses[0].text and not view.clauses_error
    assert "医疗救助" in tctx.knowledge.calls[0]
    tctx.knowledge = BrokenKB()
    view = triage.case_view(tctx, actor(tctx, "chengguan"), case.id)
    assert view.clauses == [] and "build-index" in view.clauses_error
    tctx.knowledge = None
    assert "索引" in triage.case_view(tctx, actor(tctx, "chengguan"), case.id).clauses_error



@pytest.fixture(scope="module")
def real_kb(tmp_path_factory):
    """The real knowledge base over the shipped corpus, with the hash embedder (no model)."""
    from knowledge import KnowledgeBase
    from knowledge.config import bundled_corpus_dir
    from knowledge.embedder import HashEmbedder

    return KnowledgeBase.build(bundled_corpus_dir(), tmp_path_factory.mktemp("index") / "index", HashEmbedder(),
                               progress=False)


def test_case_page_quotes_real_clauses_for_its_risk_types(tmp_path, real_kb):
    engine = make_engine(f"sqlite:///{tmp_path / 'kb.db'}")
    init_db(engine)
    ctx = Context(engine=engine, cipher=DataCipher(generate_data_key()), knowledge=real_kb)
    load_demo(ctx)
    ill = report(ctx, risks=("illness",))
    view = triage.case_view(ctx, actor(ctx, "chengguan"), ill.id)
    assert view.clauses and not view.clauses_error
    assert any("医疗救助" in c.text or "大病保险" in c.text for c in view.clauses)
    assert all(c.title and c.section for c in view.clauses)  # cited: document and section path
    # the case's own province first (白河县 is in 陕西省; 城口县 is Chongqing's, 陵川县 Shanxi's)
    assert not any("城口" in c.title or "陵川" in c.title or "晋城" in c.title for c in view.clauses), \
        [c.title for c in view.clauses]
    house = report(ctx, head="王大山", risks=("housing",))
    texts = " ".join(c.text for c in triage.case_view(ctx, actor(ctx, "chengguan"), house.id).clauses)
    assert "危房改造" in texts or "住房安全" in texts
    engine.dispose()
