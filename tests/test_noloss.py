"""Nothing is lost and nothing is doubled, under load and when things break.

Real ``huinong serve`` processes (gunicorn, 2 workers × 4 threads) on loopback, safe-mode messages
encrypted and signed as WeChat does, the embedded default (SQLite, no Redis) and the scale-out
mode (PostgreSQL + Redis):

- 500 one-click reports from 100 villagers at once → exactly 500 cases, each acknowledged with
  its own reference;
- every report sent three times at once, the copies on two server processes → one case each;
- ``kill -9`` of a gunicorn worker in the middle of a load → every acknowledged report is in the
  database, and WeChat's retries (every 5 s, three of them) of the unacknowledged ones create
  each exactly once and acknowledge it (passively, or through the outbox when the first copy died
  half way);
- the WeChat API answering HTTP 500 and then hanging past the client's timeout while two
  ``huinong worker`` processes deliver the outbox → every message delivered once after it
  recovers, none twice, and each failure recorded on its row.

Bounded in count and time (each under a minute on the 2-core machine; the two heaviest are marked
``slow``, which the full run of ``make test`` / ``.ci/run`` includes).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import update
from sqlmodel import Session

from handlers import chat_texts as T
from storage import session_scope
from storage.models import Outbox, utcnow
from storage.outbox import enqueue
from tests.conftest import IN_CI
from tests.fake_wechat_api import FakeWeChatAPI
from tests.servers import Deployment, redis_available, redis_db

# Real server processes, timed retries and outages: one xdist worker runs them one after another.
pytestmark = pytest.mark.xdist_group("processes")

REF = re.compile(r"SB\d{8}-\d{4,}")
CUSTOM = "cgi-bin/message/custom/send"
TEMPLATE = "cgi-bin/message/template/send"


@pytest.fixture
def redis_url_for(request):
    """Redis for PostgreSQL (the scale-out mode); none for SQLite (the embedded default)."""
    stack = contextlib.ExitStack()

    def make(db_url: str) -> str:
        if not db_url.startswith("postgresql"):
            return ""
        problem = redis_available()
        if problem:
            (pytest.fail if IN_CI else pytest.skip)(f"Redis not reachable at 127.0.0.1:6379 ({problem})")
        return stack.enter_context(redis_db())

    yield make
    stack.close()


@pytest.fixture
def deployment(tmp_path, db_url, redis_url_for):
    d = Deployment(tmp_path, db_url, redis_url=redis_url_for(db_url))
    yield d
    d.close()


def _ref(reply) -> str | None:
    return _ref_in(reply.text if reply is not None else None)


def _ref_in(text: str | None) -> str | None:
    m = REF.search(text or "")
    return m.group(0) if m else None


def _cases_by_household(deployment) -> dict[int, list]:
    out: dict[int, list] = defaultdict(list)
    for c in deployment.cases():
        out[c.household_id].append(c)
    return out


def _households(deployment, openids) -> dict[str, int]:
    from sqlmodel import select

    from storage.models import WeChatUser

    with Session(deployment.services.engine) as s:
        rows = s.exec(select(WeChatUser.openid, WeChatUser.household_id).where(WeChatUser.openid.in_(openids)))
        return dict(rows.all())


# --- 500 at once ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_500_concurrent_reports_from_100_villagers_make_500_cases(deployment):
    server = deployment.serve(workers=2, threads=4)
    openids = deployment.bound_openids(100, prefix="o-500")
    per_user = 5
    refs: dict[str, list[str]] = {}
    problems: list[str] = []

    def villager(openid: str) -> None:
        user = deployment.user(openid, server)
        mine = []
        for _ in range(per_user):
            ack = user.click("REPORT")
            ref = _ref(ack)
            if ack.status != 200 or ref is None:
                problems.append(f"{openid}: {ack.status} {ack.text!r}")
                continue
            mine.append(ref)
            done = user.text("好了")
            if done.text != T.DESCRIBE_DONE.format(ref=ref):
                problems.append(f"{openid}: {done.text!r}")
        refs[openid] = mine
        user.client.close()

    started = time.monotonic()
    with ThreadPoolExecutor(len(openids)) as pool:
        list(pool.map(villager, openids))
    elapsed = time.monotonic() - started

    assert not problems, problems[:5]
    cases = deployment.cases()
    acknowledged = [r for rs in refs.values() for r in rs]
    assert len(cases) == len(acknowledged) == 500, (len(cases), len(acknowledged))
    assert sorted(c.ref for c in cases) == sorted(acknowledged)  # no lost, no doubled, no mixed up
    households = _households(deployment, openids)
    by_ref = {c.ref: c for c in cases}
    for openid, rs in refs.items():
        assert {by_ref[r].household_id for r in rs} == {households[openid]}
    print(f"500 reports (1000 requests) from 100 villagers in {elapsed:.1f}s")


# --- every report three times, racing on two servers ----------------------------------------------


def test_every_report_sent_three_times_racing_on_two_servers_makes_one_case(deployment):
    a = deployment.serve(workers=2, threads=4, name="serve-a")
    b = deployment.serve(workers=2, threads=4, name="serve-b")
    openids = deployment.bound_openids(60, prefix="o-x3")
    replies: dict[str, list[str | None]] = {}

    def report_three_times(openid: str) -> None:
        copies = [deployment.user(openid, target) for target in (a, b, a)]
        xml = copies[0].xml(copies[0].fields("event", Event="CLICK", EventKey="REPORT"))
        start = threading.Barrier(len(copies))
        got: list[str | None] = []

        def send(copy) -> None:
            copy.last = xml
            start.wait()
            got.append(copy.resend().text)
            copy.client.close()

        threads = [threading.Thread(target=send, args=(c,)) for c in copies]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        replies[openid] = got

    with ThreadPoolExecutor(10) as pool:
        list(pool.map(report_three_times, openids))

    by_household = _cases_by_household(deployment)
    households = _households(deployment, openids)
    assert sum(len(v) for v in by_household.values()) == len(openids)
    for openid, got in replies.items():
        assert len(got) == 3, got
        assert len(by_household[households[openid]]) == 1, openid
        answered = {t for t in got if t}  # a copy that waited 3 s for the first answers "success"
        assert len(answered) == 1, got
        assert _ref_in(answered.pop()) == by_household[households[openid]][0].ref


# --- kill -9 in the middle of a load ---------------------------------------------------------------


@pytest.mark.slow
def test_a_worker_killed_mid_load_loses_no_acknowledged_report(deployment):
    server = deployment.serve(workers=2, threads=4)
    openids = deployment.bound_openids(160, prefix="o-kill")
    users = {o: deployment.user(o, server.client(timeout=10)) for o in openids}
    acked: dict[str, str] = {}
    unacked: list[str] = []
    lock = threading.Lock()
    sent = [0]
    victim: list[int] = []

    def first_copy(openid: str) -> None:
        user = users[openid]
        try:
            reply = user.click("REPORT")
            ref = _ref(reply)
        except (OSError, http.client.HTTPException):
            ref = None
        with lock:
            sent[0] += 1
            (acked.__setitem__(openid, ref) if ref else unacked.append(openid))

    def killer() -> None:
        while sent[0] < 40:
            time.sleep(0.005)
        pid = server.children()[0]
        victim.append(pid)
        os.kill(pid, signal.SIGKILL)

    k = threading.Thread(target=killer)
    k.start()
    # Each client thread keeps one keep-alive connection, so the victim holds about half of them.
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(first_copy, openids))
    k.join(10)
    assert victim and victim[0] not in server.children(), "the worker was not killed"
    assert unacked, "the kill interrupted nothing: the test proved nothing"

    cases = {c.ref: c for c in deployment.cases()}
    households = _households(deployment, openids)
    for openid, ref in acked.items():  # acknowledged → committed before the reply was sent
        assert ref in cases and cases[ref].household_id == households[openid], (openid, ref)

    # WeChat retries a message it got no answer for: three more times, about 5 s apart.
    answered: dict[str, str | None] = {o: None for o in unacked}
    for _attempt in range(3):
        time.sleep(5)
        pending = [o for o, r in answered.items() if r is None]
        if not pending:
            break
        with ThreadPoolExecutor(16) as pool:
            for openid, reply in zip(pending, pool.map(lambda o: users[o].resend(), pending), strict=True):
                assert reply.status == 200, (reply.status, reply.body)
                answered[openid] = _ref(reply)

    by_household = _cases_by_household(deployment)
    assert sum(len(v) for v in by_household.values()) == len(openids), "a report lost or doubled"
    outbox = defaultdict(list)
    for row in deployment.outbox():
        if row.kind == "text":
            outbox[row.recipient].append(row.payload["content"])
    for openid in openids:
        [case] = by_household[households[openid]]
        if openid in acked:
            assert acked[openid] == case.ref
        elif answered[openid] is not None:
            assert answered[openid] == case.ref
        else:  # the first copy died after recording the message: its reply goes through the outbox
            assert any(case.ref in text for text in outbox[openid]), (openid, case.ref, outbox[openid])
    print(f"killed worker {victim[0]}: {len(acked)} acknowledged at once, {len(unacked)} retried "
          f"({sum(1 for r in answered.values() if r)} answered passively, the rest through the outbox)")


# --- the WeChat API down while the outbox is delivered --------------------------------------------


@pytest.mark.postgres
def test_outbox_survives_wechat_errors_and_timeouts(tmp_path, pg_url, redis_url_for):
    with FakeWeChatAPI() as api:
        d = Deployment(tmp_path, pg_url, api=api, redis_url=redis_url_for(pg_url),
                       wechat_template_urgent="TPL-URGENT")
        try:
            _outage(d, api)
        finally:
            d.close()


def _fast_forward(d) -> None:
    """Let the backoff elapse now (the workers' clock is the real one: 5 s, then 30 s …)."""
    with session_scope(d.services.engine) as s:
        s.execute(update(Outbox).where(Outbox.status == "pending").values(next_attempt_at=utcnow()))


def _errors(d) -> Counter:
    return Counter(r.last_error.split(":")[0] for r in d.outbox() if r.last_error)


def _outage(d, api) -> None:
    workers = [d.worker(name=f"worker-{i}", batch=5) for i in (1, 2)]
    deadline = time.monotonic() + 20
    while not api.sent("cgi-bin/token") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert api.sent("cgi-bin/token"), d.dump()

    # Phase 1: every call answers HTTP 500.
    api.down(4, mode="500")
    up_again = time.monotonic() + 4
    texts, templates = 30, 10
    with session_scope(d.services.engine) as s:
        for i in range(texts):
            enqueue(s, kind="text", recipient=f"o-out-{i % 9}", payload={"content": f"通知 {i}"})
        for i in range(templates):
            enqueue(s, kind="template", recipient="o-staff", payload={
                "template": "urgent_case", "data": {"ref": f"SB20260101-{i:04d}", "village": "龙湾村",
                                                    "reasons": "房屋倒塌"}})
    total = texts + templates
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and sum(1 for r in d.outbox() if r.attempts and r.last_error) < total:
        time.sleep(0.1)
    during_500 = d.outbox()
    assert all(r.status == "pending" and r.attempts >= 1 and r.last_error for r in during_500), \
        [(r.status, r.attempts, r.last_error) for r in during_500][:5]
    assert not api.sent(CUSTOM) and not api.sent(TEMPLATE)
    first_errors = _errors(d)
    assert first_errors == Counter({"HTTP 500": total}), first_errors  # what failed, on each row

    # Phase 2: every call hangs past the client's 5 s read timeout.
    while time.monotonic() < up_again:
        time.sleep(0.1)
    api.down(4.5, mode="timeout", hang=6)
    _fast_forward(d)
    time.sleep(5.5)
    timeouts = [r for r in d.outbox() if "Timeout" in r.last_error]

    # Recovered: every message goes out once.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = d.outbox()
        if all(r.status == "sent" for r in rows):
            break
        _fast_forward(d)
        time.sleep(0.3)
    rows = d.outbox()
    assert [r.status for r in rows] == ["sent"] * total, (d.dump(), [(r.status, r.last_error) for r in rows])
    delivered = Counter(m["text"]["content"] for m in api.sent(CUSTOM))
    assert delivered == Counter({f"通知 {i}": 1 for i in range(texts)})
    refs = Counter(m["data"]["ref"]["value"] for m in api.sent(TEMPLATE))
    assert refs == Counter({f"SB20260101-{i:04d}": 1 for i in range(templates)})
    assert all(r.attempts >= 2 for r in rows), "every message failed at least once and was retried"
    assert timeouts, f"no timeout was recorded: {first_errors}"
    assert all(p.alive for p in workers), d.dump()
    print(f"outage: errors recorded {dict(first_errors)}, then {len(timeouts)} timeouts; "
          f"{total} messages delivered once each, attempts {Counter(r.attempts for r in rows)}")


# --- a first copy that died after recording the message ------------------------------------------


@pytest.mark.postgres
def test_a_copy_that_died_after_recording_is_taken_over_once(tmp_path, pg_url, redis_url_for):
    """The first copy recorded the message and died (its process was killed) before filing the case.
    WeChat's retries land on two servers: one within the lease is told "success"; once the lease
    (``routing.LEASE_SECONDS``) is over, two racing retries take it over exactly once, the case is
    filed once and its acknowledgement goes out through the outbox, delivered once by the worker."""
    from handlers import routing
    from storage.models import InboundMessage

    with FakeWeChatAPI() as api:
        d = Deployment(tmp_path, pg_url, api=api, redis_url=redis_url_for(pg_url))
        try:
            a = d.serve(workers=1, threads=4, name="serve-a")
            b = d.serve(workers=1, threads=4, name="serve-b")
            [openid] = d.bound_openids(1, prefix="o-died")
            villager = d.user(openid, a)
            xml = villager.xml(villager.fields("event", Event="CLICK", EventKey="REPORT"))
            # The first copy, up to the moment its process died: verified, decrypted, recorded.
            opened = d.services.extras["wechat"].codec.open(*villager.request(xml))
            receipt = routing.receive(d.ctx, opened.inbound)
            assert receipt.created and not d.cases()

            villager.last = xml
            assert villager.resend().is_success  # within the lease: waits, then "success"
            assert not d.cases()

            def age(seconds: int) -> None:  # the lease runs out (instead of waiting for it)
                import datetime as dt

                with session_scope(d.services.engine) as s:
                    s.execute(update(InboundMessage).where(InboundMessage.id == receipt.inbound_id).values(
                        received_at=utcnow() - dt.timedelta(seconds=seconds)))

            age(routing.LEASE_SECONDS + 1)
            retries = [d.user(openid, target) for target in (a, b)]
            for r in retries:
                r.last = xml
            start = threading.Barrier(2)
            got: list = []

            def send(r) -> None:
                start.wait()
                got.append(r.resend())

            threads = [threading.Thread(target=send, args=(r,)) for r in retries]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert all(g.status == 200 for g in got), [g.body for g in got]
            [case] = d.cases()
            acks = [row for row in d.outbox() if row.kind == "text" and case.ref in row.payload["content"]]
            assert len(acks) == 1, d.outbox()
            assert all(g.is_success or _ref(g) == case.ref for g in got)
            assert villager.resend().is_success and len(d.cases()) == 1  # a later retry: nothing new

            d.worker(name="worker")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not api.sent(CUSTOM):
                time.sleep(0.1)
            time.sleep(0.5)
            delivered = [m for m in api.sent(CUSTOM) if case.ref in m["text"]["content"]]
            assert len(delivered) == 1 and delivered[0]["touser"] == openid, api.sent(CUSTOM)
        finally:
            d.close()
