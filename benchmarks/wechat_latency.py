"""p50 / p95 time per WeChat message type, in process, through the whole /wechat path.

Each simulated villager goes through the conversation of the issue (subscribe → scan the
household code → 一键申报 → choose 因病 → describe → 好了 → 进度 → a policy question → 更多), plus a
voice note, a photo, a location, WeChat's retry of a message and an event that needs no answer.
Every request is signed (and in safe mode encrypted) exactly as WeChat does and goes through the
Flask test client: codec, dedupe, dispatch, storage and the reply's rendering and encryption.

    .venv/bin/python benchmarks/wechat_latency.py                     # plain and safe, SQLite, 60 villagers
    .venv/bin/python benchmarks/wechat_latency.py --users 200 --kb hash
    .venv/bin/python benchmarks/wechat_latency.py --db-url postgresql://postgres@127.0.0.1/bench

``--kb fake`` answers questions from a stub (measures the edge alone); ``--kb hash`` builds the
real knowledge base over the shipped corpus with the hash embedder; ``--kb model`` loads the
index of the instance folder (run ``huinong build-index`` first).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[k]


def _knowledge(kind: str, tmp: Path):
    if kind == "fake":
        from tests.wechat_user import FakeKnowledge

        return FakeKnowledge()
    if kind == "hash":
        from knowledge import KnowledgeBase
        from knowledge.embedder import HashEmbedder

        return KnowledgeBase.build(ROOT / "knowledge" / "data" / "corpus", tmp / "index", HashEmbedder(), progress=False)
    return None  # "model": the service loads the instance index itself


def run(mode: str, users: int, kb_kind: str, db_url: str | None) -> dict[str, list[float]]:
    import logging

    from sqlmodel import Session, select

    from storage.models import Household
    from tests.wechat_user import WeChatApp

    logging.disable(logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="wechat-bench-"))
    w = WeChatApp(tmp, db_url, mode=mode, knowledge=_knowledge(kb_kind, tmp))
    if kb_kind == "model":
        w.services.knowledge()
    # one household per villager, as in a real county (the five demo ones would pile up cases)
    from storage import session_scope
    from storage.households import create_household
    from storage.models import Region

    with session_scope(w.services.engine) as s:
        villages = list(s.exec(select(Region).where(Region.level == "village")))
        for i in range(users):
            create_household(s, w.ctx.cipher, head_name=f"测试户{i}", village_id=villages[i % len(villages)].id)
    with Session(w.services.engine) as s:
        tokens = [h.bind_token for h in s.exec(select(Household).where(Household.head_name.startswith("测试户")))]
    times: dict[str, list[float]] = defaultdict(list)

    def timed(kind, fn):
        started = time.perf_counter()
        reply = fn()
        times[kind].append((time.perf_counter() - started) * 1000)
        assert reply.status == 200, (kind, reply.body)
        return reply

    # warm up (first request compiles templates, opens connections, loads the classifier)
    warm = w.user("o-warm")
    warm.subscribe()
    warm.text("小额信贷最多贷多少")
    try:
        for i in range(users):
            u = w.user(f"o-bench-{mode}-{i}")
            timed("event subscribe", u.subscribe)
            timed("event SCAN (bind household)", lambda u=u, i=i: u.scan("hh:" + tokens[i]))
            timed("event CLICK REPORT (case filed)", lambda u=u: u.click("REPORT"))
            timed("retry of a message", u.resend)
            timed("text risk choice", lambda u=u: u.text("1"))
            timed("text description", lambda u=u: u.text("老伴住院了，家里没钱交押金"))
            timed("voice (no Recognition)", lambda u=u: u.voice("media-v"))
            timed("image", lambda u=u: u.image("media-i"))
            timed("location", lambda u=u: u.location())
            timed("text 好了", lambda u=u: u.text("好了"))
            timed("text 进度", lambda u=u: u.text("进度"))
            timed("text question", lambda u=u: u.text("小额信贷最多贷多少"))
            timed("text 更多", lambda u=u: u.text("更多"))
            timed("event VIEW (no answer)", lambda u=u: u.event("VIEW", "https://example.org/"))
    finally:
        w.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=60)
    parser.add_argument("--modes", default="plain,safe")
    parser.add_argument("--kb", choices=["fake", "hash", "model"], default="fake")
    parser.add_argument("--db-url", default=None, help="default: a SQLite file in a temporary folder")
    args = parser.parse_args()
    print(f"in-process /wechat latency, {args.users} villagers, knowledge: {args.kb}, "
          f"database: {'SQLite' if not args.db_url else args.db_url.split('://')[0]}")
    for mode in args.modes.split(","):
        times = run(mode.strip(), args.users, args.kb, args.db_url)
        print(f"\nmode {mode}:  {'message type':34} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
        for kind, values in times.items():
            print(f"             {kind:34} {len(values):5d} {statistics.median(values):8.2f} "
                  f"{_pct(values, 95):8.2f} {max(values):8.2f}")
        every = [v for vs in times.values() for v in vs]
        print(f"             {'all':34} {len(every):5d} {statistics.median(every):8.2f} {_pct(every, 95):8.2f} "
              f"{max(every):8.2f}")


if __name__ == "__main__":
    main()
