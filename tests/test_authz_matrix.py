"""The authorisation table: every route of the application × every role × the region of what it
touches → the expected status, walked completely.

The demo county has two townships. Target **A** is 张建国's household in 龙湾村 (城关镇), target **B**
赵兰芳's in 双喜村 (宋家镇); each has a WeChat report, a mini-program report, a photo and a console
evidence file (:class:`tests.probes.TwoVillagers`). A cell reads:

- ``"302"`` — this status, whatever the target;
- ``"200/404"`` — the status for target A / for target B;
- ``"200:A"`` — this status, and of the two targets the body shows exactly A (``AB`` both, ``-``
  neither): the region dimension of lists (queue, export, my reports …).

``test_every_route_has_an_entry`` compares the table with ``app.url_map``: a new route (or method)
without a row fails the suite, and so does a row whose route is gone.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from sqlmodel import Session, select

from storage.models import Attachment
from tests.api_helpers import JPEG, PNG, bearer, mp_session
from tests.fake_wechat_api import FakeWeChatAPI
from tests.leaks import assert_no_leak
from tests.probes import REF_RE, ConsoleStaff, TwoVillagers, Villager, _bytes

STAFF_ROLES = ("anon", "longwan", "shuangxi", "chengguan", "songjia", "county", "admin")
API_ROLES = ("anon", "staff", "villager_a", "villager_b", "unbound")

# fmt: off
#: (method, rule, variant) → one cell per role of STAFF_ROLES:
#:        anon       longwan    shuangxi   chengguan  songjia    county     admin
CONSOLE: dict[tuple[str, str, str], tuple[str, ...]] = {
    ("GET", "/console/", "queue"):
        ("302",     "200:A",   "200:B",   "200:A",   "200:B",   "200:AB",  "200:AB"),
    ("GET", "/console/", "search for 赵兰芳 (B)"):
        ("302",     "200:-",   "200:B",   "200:-",   "200:B",   "200:B",   "200:B"),
    ("GET", "/console/cases/<int:case_id>", ""):
        ("302",     "200/404", "404/200", "200/404", "404/200", "200/200", "200/200"),
    ("POST", "/console/cases/<int:case_id>/reveal", ""):
        ("401",     "200/404", "404/200", "200/404", "404/200", "200/200", "403/403"),
    ("POST", "/console/cases/<int:case_id>/act", "note"):
        ("401",     "302/404", "404/302", "302/404", "404/302", "302/302", "403/403"),
    ("POST", "/console/cases/<int:case_id>/act", "advance 风险预警 (village or township)"):
        ("401",     "302/404", "404/302", "302/404", "404/302", "403/403", "403/403"),
    ("POST", "/console/cases/<int:case_id>/act", "first aid (township or county)"):
        ("401",     "403/404", "404/403", "302/404", "404/302", "302/302", "403/403"),
    ("GET", "/console/attachments/<int:attachment_id>", "console evidence"):
        ("302",     "200/404", "404/200", "200/404", "404/200", "200/200", "200/200"),
    ("GET", "/console/attachments/<int:attachment_id>", "mini-program photo"):
        ("302",     "200/404", "404/200", "200/404", "404/200", "200/200", "200/200"),
    ("POST", "/console/export", "masked"):
        ("401",     "200:A",   "200:B",   "200:A",   "200:B",   "200:AB",  "200:AB"),
    ("POST", "/console/export", "unmasked"):
        ("401",     "403",     "403",     "403",     "403",     "200:AB",  "403"),
    ("GET", "/console/audit", ""):
        ("302",     "403",     "403",     "403",     "403",     "403",     "200"),
    ("GET", "/console/villages", ""):
        ("302",     "200:A",   "200:B",   "200:A",   "200:B",   "200:AB",  "200:AB"),
    ("GET", "/console/villages/<int:village_id>/codes", ""):
        ("302",     "200/404", "404/200", "200/404", "404/200", "200/200", "200/200"),
    ("GET", "/console/static/<path:filename>", ""):
        ("200",     "200",     "200",     "200",     "200",     "200",     "200"),
    ("GET", "/console/login", ""):
        ("200",     "302",     "302",     "302",     "302",     "302",     "302"),
    ("POST", "/console/login", "wrong password"):
        ("401",     "401",     "401",     "401",     "401",     "401",     "401"),
    ("POST", "/console/logout", ""):  # walked last: it ends the sessions
        ("302",     "302",     "302",     "302",     "302",     "302",     "302"),
}

#: (method, rule, variant) → one cell per role of API_ROLES (``staff``: a county clerk's console
#: cookie and no token; ``unbound``: a fresh mini-program user bound to no household):
#:        anon       staff      villager_a villager_b unbound
API: dict[tuple[str, str, str], tuple[str, ...]] = {
    ("POST", "/api/v1/login", "invalid code"):
        ("401",     "401",     "401",     "401",     "401"),
    ("POST", "/api/v1/login", "code from wx.login()"):
        ("200",     "200",     "200",     "200",     "200"),
    ("GET", "/api/v1/household", ""):
        ("401",     "401",     "200:A",   "200:B",   "200:-"),
    ("POST", "/api/v1/household/bind", "the household's QR token"):
        ("401",     "401",     "200/409", "409/200", "200/200"),
    ("POST", "/api/v1/reports", ""):
        ("401",     "401",     "201",     "201",     "400"),
    ("GET", "/api/v1/reports", ""):
        ("401",     "401",     "200:A",   "200:B",   "200:-"),
    ("GET", "/api/v1/reports/<ref>", ""):
        ("401",     "401",     "200/404", "404/200", "404/404"),
    ("POST", "/api/v1/reports/<ref>/photos", ""):
        ("401",     "401",     "201/404", "404/201", "404/404"),
    ("POST", "/api/v1/ask", ""):
        ("200",     "200",     "200",     "200",     "200"),
    ("GET", "/api/v1/policy/topics", ""):
        ("200",     "200",     "200",     "200",     "200"),
    ("GET", "/api/v1/openapi.json", ""):
        ("200",     "200",     "200",     "200",     "200"),
    ("POST", "/api/v1/logout", ""):  # walked last: it revokes the tokens
        ("401",     "401",     "200",     "200",     "200"),
}

#: Routes outside the console and the API: no role applies (WeChat signs its own requests).
PUBLIC: dict[tuple[str, str, str], str] = {
    ("GET", "/healthz", ""): "200",
    ("GET", "/wechat", "unsigned"): "403",
    ("POST", "/wechat", "unsigned"): "403",
    ("GET", "/static/<path:filename>", ""): "404",
}
# fmt: on


def _routes(app) -> set[tuple[str, str]]:
    return {(m, r.rule) for r in app.url_map.iter_rules() for m in r.methods - {"HEAD", "OPTIONS"}}


def _rows() -> set[tuple[str, str]]:
    return {(m, rule) for m, rule, _ in itertools.chain(CONSOLE, API, PUBLIC)}


def test_every_route_has_an_entry(app):
    routes, rows = _routes(app), _rows()
    assert not routes - rows, f"routes without a row in the authorisation table: {sorted(routes - rows)}"
    assert not rows - routes, f"rows for routes that no longer exist: {sorted(rows - routes)}"
    for rule in rows:
        prefix = "/console" if rule[1].startswith("/console") else "/api/" if rule[1].startswith("/api/") else ""
        table = CONSOLE if prefix == "/console" else API if prefix == "/api/" else PUBLIC
        assert any((m, r) == rule for m, r, _ in table), f"{rule} is in the wrong table"
    for key, cells in CONSOLE.items():
        assert len(cells) == len(STAFF_ROLES) and key in CONSOLE_REQUESTS, key
    for key, cells in API.items():
        assert len(cells) == len(API_ROLES) and key in API_REQUESTS, key
    assert set(PUBLIC) <= set(PUBLIC_REQUESTS)


# --- the requests ---------------------------------------------------------------------------------


@dataclass
class Probe:
    """What a request may use: the service, the two targets, the logged-in console or API caller."""

    two: TwoVillagers
    role: str
    staff: ConsoleStaff | None = None
    token: str | None = None

    @property
    def c(self):
        return self.staff.client if self.staff is not None else self.two.app.test_client()

    def headers(self, **extra) -> dict:
        return {**(bearer(self.token) if self.token else {}), **extra}


def _case(t: Villager) -> int:
    return t.case_ids[0]


def _act(p: Probe, t: Villager, data: dict, case_id: int | None = None):
    case_id = case_id or _case(t)
    version = p.staff.version(case_id) if p.staff.username else "0"
    return p.staff.post(f"/console/cases/{case_id}/act", {"version": version, **data})


def _fresh_case(p: Probe, t: Villager, *, urgent: bool = False) -> int:
    """A new report from the target's household, so a state-changing action starts from 风险预警."""
    from handlers.report import ReportInput, submit

    n = next(_seq)
    ack = submit(p.two.ctx, ReportInput(channel="wechat", inbound_key=f"authz:{n}", household_id=t.household_id,
                                        description="新的申报", urgent=urgent))
    return ack.case_id


_seq = itertools.count(1)

Request = Callable[[Probe, Villager], object]

CONSOLE_REQUESTS: dict[tuple[str, str, str], Request] = {
    ("GET", "/console/", "queue"): lambda p, t: p.c.get("/console/"),
    ("GET", "/console/", "search for 赵兰芳 (B)"): lambda p, t: p.c.get("/console/", query_string={"q": "赵兰芳"}),
    ("GET", "/console/cases/<int:case_id>", ""): lambda p, t: p.c.get(f"/console/cases/{_case(t)}"),
    ("POST", "/console/cases/<int:case_id>/reveal", ""): lambda p, t: p.staff.post(f"/console/cases/{_case(t)}/reveal"),
    ("POST", "/console/cases/<int:case_id>/act", "note"): lambda p, t: _act(p, t, {"action": "note", "note": "已电话联系"}),
    ("POST", "/console/cases/<int:case_id>/act", "advance 风险预警 (village or township)"):
        lambda p, t: _act(p, t, {"action": "advance", "step": "warning", "note": "核实"}, _fresh_case(p, t)),
    ("POST", "/console/cases/<int:case_id>/act", "first aid (township or county)"):
        lambda p, t: _act(p, t, {"action": "first_aid", "kind": "temporary", "amount": "500", "note": "先行救助"},
                          _fresh_case(p, t, urgent=True)),
    ("GET", "/console/attachments/<int:attachment_id>", "console evidence"):
        lambda p, t: p.c.get(f"/console/attachments/{_EVIDENCE[t.head]}"),
    ("GET", "/console/attachments/<int:attachment_id>", "mini-program photo"):
        lambda p, t: p.c.get(f"/console/attachments/{t.attachment_id}"),
    ("POST", "/console/export", "masked"): lambda p, t: p.staff.post("/console/export", {}),
    ("POST", "/console/export", "unmasked"): lambda p, t: p.staff.post("/console/export", {"unmasked": "1"}),
    ("GET", "/console/audit", ""): lambda p, t: p.c.get("/console/audit"),
    ("GET", "/console/villages", ""): lambda p, t: p.c.get("/console/villages"),
    ("GET", "/console/villages/<int:village_id>/codes", ""): lambda p, t: p.c.get(f"/console/villages/{t.village_id}/codes"),
    ("GET", "/console/static/<path:filename>", ""): lambda p, t: p.c.get("/console/static/console.css"),
    ("GET", "/console/login", ""): lambda p, t: p.c.get("/console/login"),
    ("POST", "/console/login", "wrong password"):
        lambda p, t: p.staff.post("/console/login", {"username": p.staff.username or "nobody",
                                                     "password": "not-the-password"}),
    ("POST", "/console/logout", ""): lambda p, t: p.staff.post("/console/logout"),
}


def _unbound_token(p: Probe) -> str:
    token, _ = mp_session(p.two.ctx, openid=f"o-mp-unbound-{next(_seq)}")
    return token


def _bind_token(t: Villager, p: Probe) -> str:
    from storage.models import Household

    with Session(p.two.services.engine) as s:
        return s.get(Household, t.household_id).bind_token


API_REQUESTS: dict[tuple[str, str, str], Request] = {
    ("POST", "/api/v1/login", "invalid code"): lambda p, t: p.c.post("/api/v1/login", json={"code": "not-a-code"},
                                                                      headers=p.headers()),
    ("POST", "/api/v1/login", "code from wx.login()"):
        lambda p, t: p.c.post("/api/v1/login", json={"code": p.two.api.issue_code()}, headers=p.headers()),
    ("GET", "/api/v1/household", ""): lambda p, t: p.c.get("/api/v1/household", headers=p.headers()),
    ("POST", "/api/v1/household/bind", "the household's QR token"):
        lambda p, t: p.c.post("/api/v1/household/bind", json={"token": _bind_token(t, p)}, headers=p.headers()),
    ("POST", "/api/v1/reports", ""):
        lambda p, t: p.c.post("/api/v1/reports", json={"description": "又下雨了"},
                              headers=p.headers(**{"Idempotency-Key": f"authz-{next(_seq)}"})),
    ("GET", "/api/v1/reports", ""): lambda p, t: p.c.get("/api/v1/reports", headers=p.headers()),
    ("GET", "/api/v1/reports/<ref>", ""): lambda p, t: p.c.get(f"/api/v1/reports/{t.refs[1]}", headers=p.headers()),
    ("POST", "/api/v1/reports/<ref>/photos", ""):
        lambda p, t: p.c.post(f"/api/v1/reports/{t.refs[1]}/photos", data={"photo": (_bytes(JPEG), "new.jpg")},
                              headers=p.headers(), content_type="multipart/form-data"),
    ("POST", "/api/v1/ask", ""): lambda p, t: p.c.post("/api/v1/ask", json={"question": "看病能报销多少"},
                                                       headers=p.headers()),
    ("GET", "/api/v1/policy/topics", ""): lambda p, t: p.c.get("/api/v1/policy/topics", headers=p.headers()),
    ("GET", "/api/v1/openapi.json", ""): lambda p, t: p.c.get("/api/v1/openapi.json", headers=p.headers()),
    ("POST", "/api/v1/logout", ""): lambda p, t: p.c.post("/api/v1/logout", headers=p.headers()),
}

PUBLIC_REQUESTS: dict[tuple[str, str, str], Request] = {
    ("GET", "/healthz", ""): lambda p, t: p.c.get("/healthz"),
    ("GET", "/wechat", "unsigned"): lambda p, t: p.c.get("/wechat", query_string={"echostr": "x"}),
    ("POST", "/wechat", "unsigned"): lambda p, t: p.c.post("/wechat", data=b"<xml/>", content_type="text/xml"),
    ("GET", "/static/<path:filename>", ""): lambda p, t: p.c.get("/static/console.css"),
}

#: head of household → id of a console evidence file on their case (made by the fixture).
_EVIDENCE: dict[str, int] = {}


# --- the walk ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    with FakeWeChatAPI() as api:
        two = TwoVillagers(tmp_path_factory.mktemp("authz"), api)
        for clerk, t in (("longwan", two.a), ("shuangxi", two.b)):  # a console evidence file on each case
            staff = two.staff(clerk)
            resp = staff.client.post(f"/console/cases/{_case(t)}/act", data={
                "csrf_token": staff.token(), "version": staff.version(_case(t)), "action": "advance", "step": "warning",
                "note": "已核实", "evidence_file": (_bytes(PNG), "photo.png", "image/png")},
                content_type="multipart/form-data")
            assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
            with Session(two.services.engine) as s:
                _EVIDENCE[t.head] = s.exec(select(Attachment.id).where(Attachment.case_id == _case(t),
                                                                       Attachment.kind == "file")).one()
        yield two
        two.services.engine.dispose()


def _expect(cell: str, target: str) -> tuple[int, str | None]:
    """(status, which targets the body shows or None) for target ``"A"`` or ``"B"``."""
    shows = None
    if ":" in cell:
        cell, shows = cell.split(":")
        shows = "" if shows == "-" else shows
    if "/" in cell:
        a, b = cell.split("/")
        cell = a if target == "A" else b
    return int(cell), shows


def _markers(key, t: Villager) -> list[str]:
    """What shows that a list includes target ``t``."""
    rule = key[1]
    if "villages" in rule:
        return [t.village]
    if rule == "/api/v1/household":
        return [t.head]
    return t.refs[:1] if rule.startswith("/console") else t.refs[1:2]


def _check(problems, key, role, tname, cell, resp, t: Villager, other: Villager) -> None:
    status, shows = _expect(cell, tname)
    body = resp.get_data().decode("utf-8", "replace")  # evidence files are images
    got = resp.status_code
    label = f"{key[0]} {key[1]} [{key[2]}] × {role} × {tname}"
    if got != status:
        excerpt = re.sub(r"\s+", " ", body)[:120]
        problems.append(f"{label}: expected {status}, got {got} {excerpt!r}")
        return
    try:
        assert_no_leak(body, where=label)
    except AssertionError as exc:
        problems.append(str(exc)[:300])
    if got == 404:  # a refusal says nothing about what was asked for
        secret = [t.secret, t.id_number, t.phone] + (t.refs if key[1].startswith("/console/cases") else [])
        if any(s in body for s in secret):
            problems.append(f"{label}: the 404 shows the target's data")
    if shows is not None:
        for name, v in (("A", t if tname == "A" else other), ("B", other if tname == "A" else t)):
            seen = any(m in body for m in _markers(key, v))
            if seen != (name in shows):
                problems.append(f"{label}: target {name} {'shown' if seen else 'not shown'}, expected "
                                f"{'shown' if name in shows else 'hidden'}")


def test_console_routes_by_role_and_region(world):
    problems: list[str] = []
    sessions: dict[str, ConsoleStaff] = {}
    order = sorted(CONSOLE, key=lambda k: k[1] == "/console/logout")  # logout last
    for key in order:
        for role, cell in zip(STAFF_ROLES, CONSOLE[key], strict=True):
            for tname, t, other in (("A", world.a, world.b), ("B", world.b, world.a)):
                if key[1] == "/console/logout" or role not in sessions:
                    sessions[role] = world.staff(None if role == "anon" else role)
                probe = Probe(world, role, staff=sessions[role])
                _check(problems, key, role, tname, cell, CONSOLE_REQUESTS[key](probe, t), t, other)
                if key[1] == "/console/logout" and role != "anon":
                    after = sessions.pop(role).client.get("/console/")
                    if after.status_code != 302:
                        problems.append(f"after logout × {role}: the session still works ({after.status_code})")
    assert not problems, "\n".join(problems)


def test_api_routes_by_role_and_region(world):
    problems: list[str] = []
    county = world.staff("county")
    order = sorted(API, key=lambda k: k[1] == "/api/v1/logout")
    for key in order:
        for role, cell in zip(API_ROLES, API[key], strict=True):
            for tname, t, other in (("A", world.a, world.b), ("B", world.b, world.a)):
                probe = Probe(world, role)
                if role == "staff":
                    probe.staff = county
                elif role == "villager_a":
                    probe.token = world.a.mp_token
                elif role == "villager_b":
                    probe.token = world.b.mp_token
                elif role == "unbound":
                    probe.token = _unbound_token(probe)
                if key[1] == "/api/v1/logout" and tname == "B" and role.startswith("villager"):
                    continue  # the token was revoked by the A pass
                _check(problems, key, role, tname, cell, API_REQUESTS[key](probe, t), t, other)
    assert not problems, "\n".join(problems)


def test_public_routes(world):
    problems: list[str] = []
    for key, cell in PUBLIC.items():
        resp = PUBLIC_REQUESTS[key](Probe(world, "anon"), world.a)
        _check(problems, key, "anyone", "A", cell, resp, world.a, world.b)
    assert not problems, "\n".join(problems)


def test_a_new_report_appears_for_the_right_region_only(world):
    """The region dimension end to end: a report filed in 双喜村 now is in 宋家镇's queue, not 城关镇's."""
    chat = world.wechat(world.b)
    ref = REF_RE.search(chat.click("REPORT").text).group(0)
    chat.text("好了")
    assert ref in world.staff("songjia").client.get("/console/").get_data(as_text=True)
    assert ref in world.staff("county").client.get("/console/").get_data(as_text=True)
    assert ref not in world.staff("chengguan").client.get("/console/").get_data(as_text=True)
    assert ref not in world.staff("longwan").client.get("/console/").get_data(as_text=True)
