"""Several processes on one PostgreSQL and one Redis behave as one service.

Real processes, configured only through ``HUINONG_*`` variables: two ``huinong serve`` (gunicorn)
instances on their own loopback ports and two ``huinong worker`` processes, the loopback fake
WeChat API, safe-mode (encrypted) messages signed as WeChat signs them.

- a registration dialogue started on one server continues on the other, turn by turn;
- WeChat's retry of a message landing on the other server (after the first copy, or racing it)
  gets the first copy's reply and creates nothing new;
- two outbox workers deliver each message exactly once, and claim rows with
  ``SELECT … FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter

import pytest
from sqlalchemy import event

from handlers import chat_texts as T
from storage import session_scope
from storage.outbox import claim_batch, enqueue
from tests.conftest import IN_CI
from tests.fake_wechat_api import FakeWeChatAPI
from tests.servers import Deployment, redis_available, redis_db

# Real server processes, timed retries and outages: one xdist worker runs them one after another.
pytestmark = [pytest.mark.postgres, pytest.mark.xdist_group("processes")]

REF = re.compile(r"SB\d{8}-\d{4,}")
CUSTOM = "cgi-bin/message/custom/send"


@pytest.fixture
def redis_url():
    problem = redis_available()
    if problem:
        (pytest.fail if IN_CI else pytest.skip)(f"Redis not reachable at 127.0.0.1:6379 ({problem})")
    with redis_db() as url:
        yield url


class SlowWeChatAPI(FakeWeChatAPI):
    """The fake WeChat API taking ``latency`` seconds per call, like the real one over the internet."""

    latency = 0.02

    def _handle(self, h, method):
        time.sleep(self.latency)
        super()._handle(h, method)


@pytest.fixture
def api():
    with SlowWeChatAPI() as fake:
        yield fake


@pytest.fixture
def deployment(tmp_path, pg_url, redis_url, api):
    d = Deployment(tmp_path, pg_url, api=api, redis_url=redis_url)
    yield d
    d.close()


@pytest.fixture
def two_servers(deployment):
    a = deployment.serve(workers=1, threads=4, name="serve-a")
    b = deployment.serve(workers=1, threads=4, name="serve-b")
    return a, b


def test_a_dialogue_started_on_one_server_continues_on_the_other(deployment, two_servers):
    a, b = two_servers
    on_a, on_b = deployment.user("o-mw-stranger", a), deployment.user("o-mw-stranger", b)

    turns = [
        (on_a, lambda u: u.click("REPORT"), T.ASK_NAME),
        (on_b, lambda u: u.text("王小明"), T.ASK_VILLAGE),
        (on_a, lambda u: u.text("龙湾村"), T.ASK_PHONE),
        (on_b, lambda u: u.text("13800001111"), T.ASK_CONSENT),
    ]
    for user, say, expected in turns:
        reply = say(user)
        assert reply.status == 200 and reply.text == expected, (reply.status, reply.body, deployment.dump())
    filed = on_a.text("同意")
    ref = REF.search(filed.text or "")
    assert ref, filed
    done = on_b.text("好了")
    assert done.text == T.DESCRIBE_DONE.format(ref=ref.group(0))

    cases = deployment.cases()
    assert [(c.ref, c.reporter_name, c.channel) for c in cases] == [(ref.group(0), "王小明", "wechat")]
    assert deployment.ctx.cipher.decrypt(cases[0].reporter_phone_enc) == "13800001111"


def test_a_retry_on_the_other_server_creates_nothing_new(deployment, two_servers):
    a, b = two_servers
    [openid] = deployment.bound_openids(1, prefix="o-mw-retry")
    villager = deployment.user(openid, a)
    first = villager.click("REPORT")
    ref = REF.search(first.text).group(0)
    # WeChat's retry is the same XML signed anew; it lands on the other server.
    retry = deployment.user(openid, b)
    retry.last = villager.last
    assert retry.resend().text == first.text
    assert retry.resend().text == first.text
    assert [c.ref for c in deployment.cases()] == [ref]


def test_copies_racing_on_both_servers_make_one_case_and_one_reply(deployment, two_servers):
    a, b = two_servers
    openids = deployment.bound_openids(12, prefix="o-mw-race")
    replies: dict[str, list[str | None]] = {o: [] for o in openids}
    lock = threading.Lock()

    def race(openid: str) -> None:
        sender = deployment.user(openid, a)
        sender.last = sender.xml(sender.fields("event", Event="CLICK", EventKey="REPORT"))
        copies = [deployment.user(openid, target) for target in (a, b, a)]
        for c in copies:
            c.last = sender.last
        start = threading.Barrier(3)

        def one(copy):
            start.wait()
            text = copy.resend().text
            copy.client.close()
            with lock:
                replies[openid].append(text)

        threads = [threading.Thread(target=one, args=(c,)) for c in copies]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)

    for openid in openids:
        race(openid)

    cases = deployment.cases()
    assert len(cases) == len(openids), deployment.dump()
    refs = {c.ref for c in cases}
    for texts in replies.values():
        assert len(texts) == 3
        answered = [t for t in texts if t]  # a copy still waiting after 3 s answers "success"
        assert answered and len(set(answered)) == 1, texts
        assert REF.search(answered[0]).group(0) in refs


def test_two_outbox_workers_deliver_each_message_once(deployment, api):
    w1 = deployment.worker(name="worker-1", batch=10)
    w2 = deployment.worker(name="worker-2", batch=10)
    deadline = time.monotonic() + 20
    while not api.calls("cgi-bin/token") and time.monotonic() < deadline:
        time.sleep(0.05)
    count = 120
    with session_scope(deployment.services.engine) as s:
        for i in range(count):
            enqueue(s, kind="text", recipient=f"o-mw-{i % 7}", payload={"content": f"消息 {i}"})

    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        rows = deployment.outbox()
        if all(r.status == "sent" for r in rows):
            break
        time.sleep(0.2)
    rows = deployment.outbox()
    assert [r.status for r in rows] == ["sent"] * count, deployment.dump()
    delivered = Counter(m["text"]["content"] for m in api.sent(CUSTOM))
    assert delivered == Counter({f"消息 {i}": 1 for i in range(count)})
    by = Counter(r.locked_by.rsplit(":", 1)[1] for r in rows)
    assert set(by) == {str(w1.proc.pid), str(w2.proc.pid)}, by  # both took part, none twice
    assert len(api.calls("cgi-bin/token")) == 1, "the token is shared through Redis"


def test_claiming_locks_rows_with_skip_locked_on_postgresql(deployment):
    engine = deployment.services.engine
    seen: list[str] = []

    def capture(conn, cursor, statement, *args):
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with session_scope(engine) as s:
            enqueue(s, kind="text", recipient="o-1", payload={"content": "x"})
        with session_scope(engine) as s:
            claimed = claim_batch(s, worker="probe")
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert len(claimed) == 1
    assert any("FOR UPDATE SKIP LOCKED" in q for q in seen), seen
