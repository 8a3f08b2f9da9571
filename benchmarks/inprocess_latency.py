"""p50 / p95 / p99 time per message type, in process, through the whole /wechat path.

The four types the bars are about — a CLICK 一键申报 (the case is filed and acknowledged), a typed
policy question (answered with the quoted clause), 进度 (progress) and a voice note — plus the
voice note with WeChat's ``Recognition`` filled in and WeChat's retry of a report. Each villager
is a household bound through its QR code; every request is signed and encrypted (safe mode) as
WeChat does and goes through the Flask test client: verify, decrypt, parse, dedupe, dispatch,
storage (committed before the reply), render, encrypt. Questions are the 117 colloquial ones of
``knowledge/data/calibration.jsonl``, in turn, each one cold (the cache of query embeddings is
cleared before it). Builds on ``benchmarks/wechat_latency.py``.

    .venv/bin/python benchmarks/inprocess_latency.py                         # hash embedder, SQLite
    .venv/bin/python benchmarks/inprocess_latency.py --kb model              # the real e5 model (index of ./instance)
    .venv/bin/python benchmarks/inprocess_latency.py --db-url postgresql://postgres@127.0.0.1/bench
    .venv/bin/python benchmarks/inprocess_latency.py --phases               # + CPU per stage of a report, both paths
    .venv/bin/python benchmarks/inprocess_latency.py --concurrent 4         # + reports from 4 threads at once
    .venv/bin/python benchmarks/inprocess_latency.py --concurrent 4 --processes 2   # ... in 2 processes, one database

``--kb model`` loads the index built by ``huinong build-index`` in ``--instance`` (default
``./instance``); ``--kb hash`` builds one over the shipped corpus with the hash embedder (seconds).
Bars: report acknowledged p95 ≤ 30 ms, question p95 ≤ 150 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from wechat_latency import _pct  # noqa: E402  (the percentile the other benchmark prints)

REF = re.compile(r"SB\d{8}-\d{4,}")
BARS = {"CLICK 一键申报 (case filed)": 30.0, "text question": 150.0}


def questions() -> list[str]:
    path = ROOT / "knowledge" / "data" / "calibration.jsonl"
    return [json.loads(line)["question"] for line in path.read_text("utf-8").splitlines() if line.strip()]


def knowledge(kind: str, instance: Path, tmp: Path):
    from knowledge import KnowledgeBase
    from knowledge.embedder import HashEmbedder, load_embedder

    if kind == "hash":
        return KnowledgeBase.build(ROOT / "knowledge" / "data" / "corpus", tmp / "index", HashEmbedder(),
                                   progress=False), "hash embedder, index built over the shipped corpus"
    embedder = load_embedder(os.environ.get("HUINONG_EMBEDDING_MODEL") or None, instance)
    return KnowledgeBase.load(instance / "index", embedder), f"real model, index of {instance / 'index'}"


def machine() -> str:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores {cpu}, Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}"


def run(users: int, kb_kind: str, instance: Path, db_url: str | None, mode: str) -> tuple[dict, dict, str]:
    import logging

    from sqlmodel import Session, select

    from storage import session_scope
    from storage.households import create_household
    from storage.models import Household, Region
    from tests.wechat_user import WeChatApp

    logging.disable(logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="inprocess-bench-"))
    kb, kb_note = knowledge(kb_kind, instance, tmp)
    w = WeChatApp(tmp, db_url, mode=mode, knowledge=kb)
    with session_scope(w.services.engine) as s:
        villages = list(s.exec(select(Region).where(Region.level == "village")))
        for i in range(users + 1):
            create_household(s, w.ctx.cipher, head_name=f"测试户{i}", village_id=villages[i % len(villages)].id)
    with Session(w.services.engine) as s:
        tokens = [h.bind_token for h in s.exec(select(Household).where(Household.head_name.startswith("测试户"))
                                               .order_by(Household.id))]
    asked = questions()
    # Each question cold: the knowledge base caches recent query embeddings (for "更多").
    forget = getattr(kb, "clear_cache", lambda: None)
    times: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)

    def timed(kind, fn, *, check=None):
        started, cpu_started = time.perf_counter(), time.process_time()
        reply = fn()
        times[kind].append((time.perf_counter() - started) * 1000)
        cpu[kind].append((time.process_time() - cpu_started) * 1000)  # all threads: one request at a time
        assert reply.status == 200, (kind, reply.status, reply.body[:200])
        if check is not None:
            assert check(reply.text or ""), (kind, reply.text)
        return reply

    try:
        warm = w.user("o-warm")  # templates, connections, jieba, the classifier, the model
        warm.scan("hh:" + tokens[-1])
        for q in asked[:5]:
            warm.text(q)
        warm.click("REPORT")
        warm.text("好了")
        for i in range(users):
            u = w.user(f"o-bench-{i}")
            u.scan("hh:" + tokens[i])
            timed("CLICK 一键申报 (case filed)", lambda u=u: u.click("REPORT"), check=REF.search)
            timed("retry of the CLICK (stored reply)", u.resend, check=REF.search)
            u.text("好了")
            forget()
            timed("text question", lambda u=u, i=i: u.text(asked[i % len(asked)]))
            timed("text 进度 (progress)", lambda u=u: u.text("进度"), check=REF.search)
            timed("voice, no Recognition (attached)", lambda u=u: u.voice("media-v"), check=REF.search)
            forget()
            timed("voice with Recognition (a question)",
                  lambda u=u, i=i: u.voice("media-r", recognition=asked[(i + 7) % len(asked)]))
    finally:
        w.close()
    return times, cpu, kb_note


def phases(users: int, db_url: str | None, mode: str) -> dict[str, dict[str, float]]:
    """Mean CPU ms per stage of a CLICK 一键申报, one at a time: the path the edge takes (the flood
    path of ``handlers.quick_report``, a batch of one here) and the general path it replaced
    (``routing.receive`` → ``dispatch`` → ``complete``, four transactions), on new households each."""
    import logging

    from handlers import routing
    from tests.servers import Deployment

    logging.disable(logging.WARNING)
    d = Deployment(Path(tempfile.mkdtemp(prefix="phases-bench-")), db_url, mode=mode)
    codec, ctx, quick = d.services.extras["wechat"].codec, d.ctx, d.services.extras["wechat"].inbox.quick
    out: dict[str, dict[str, float]] = {}
    try:
        for path in ("flood path (reads, then one write transaction)", "general path (four transactions)"):
            requests = []
            for openid in d.bound_openids(users + 50, prefix=f"o-phase-{len(out)}"):
                u = d.user(openid, None)
                requests.append(u.request(u.xml(u.fields("event", Event="CLICK", EventKey="REPORT"))))
            spent: dict[str, list[float]] = defaultdict(list)
            for n, (query, body) in enumerate(requests):
                t = [time.process_time()]
                opened = codec.open(query, body)
                t.append(time.process_time())
                if path.startswith("flood"):
                    text = quick.file(opened.inbound)
                    assert text and REF.search(text)
                    t.append(time.process_time())
                    stages = ("verify + decrypt + parse", "file + record + commit", "render + encrypt")
                else:
                    receipt = routing.receive(ctx, opened.inbound)
                    t.append(time.process_time())
                    reply = routing.dispatch(ctx, opened.inbound, receipt.who)
                    t.append(time.process_time())
                    routing.complete(ctx, receipt.inbound_id, opened.inbound, reply)
                    t.append(time.process_time())
                    text = reply.text
                    stages = ("verify + decrypt + parse", "record the message", "dispatch (dialogue + intake)",
                              "store the reply", "render + encrypt")
                codec.seal(opened.inbound, text, encrypted=opened.encrypted)
                t.append(time.process_time())
                if n >= 50:  # after a warm-up
                    for stage, a, b in zip(stages, t, t[1:], strict=False):
                        spent[stage].append((b - a) * 1000)
            out[path] = {stage: statistics.mean(v) for stage, v in spent.items()}
    finally:
        d.close()
    return out


def concurrent(threads: int, reports: int, db_url: str | None, mode: str, processes: int = 1) -> dict:
    """One-click reports from ``threads`` threads at once through the WSGI app (no HTTP), in
    ``processes`` forked processes on the same database: reports/s, CPU per report and the
    batches the group commit formed."""
    import logging
    import threading

    from werkzeug.test import EnvironBuilder

    from bot.app import create_app
    from bot.services import build_services
    from tests.servers import Deployment

    logging.disable(logging.WARNING)
    d = Deployment(Path(tempfile.mkdtemp(prefix="concurrent-bench-")), db_url, mode=mode)
    environs = []
    for openid in d.bound_openids(reports + 100 * processes, prefix="o-conc"):
        u = d.user(openid, None)
        query, body = u.request(u.xml(u.fields("event", Event="CLICK", EventKey="REPORT")))
        environs.append(EnvironBuilder(path="/wechat", method="POST", query_string=query, data=body,
                                       content_type="text/xml").get_environ())
    before = len(d.cases())  # with --db-url the earlier parts of the run used the same database
    d.services.engine.dispose()

    def one_process(mine: list) -> dict:
        services = build_services(d.settings)
        app = create_app(services=services)

        def call(environ) -> bytes:
            return b"".join(app(environ, lambda status, headers, exc_info=None: None))

        for environ in mine[:100]:  # warm-up
            call(environ)
        quick = services.extras["wechat"].inbox.quick
        quick.batch_sizes.clear()
        todo = iter(mine[100:])
        lock = threading.Lock()
        bad = []

        def run():
            while True:
                with lock:
                    environ = next(todo, None)
                if environ is None:
                    return
                if b"Encrypt" not in call(environ):
                    bad.append(1)

        workers = [threading.Thread(target=run) for _ in range(threads)]
        cpu, wall = time.process_time(), time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        done = len(mine) - 100
        return {"wall": time.perf_counter() - wall, "cpu_ms": (time.process_time() - cpu) * 1000 / done,
                "batches": dict(quick.batch_sizes), "bad": len(bad), "done": done}

    share = len(environs) // processes
    parts = [environs[i * share:(i + 1) * share] for i in range(processes)]
    try:
        if processes == 1:
            results = [one_process(parts[0])]
        else:
            children = []
            for part in parts:
                read, write = os.pipe()
                pid = os.fork()
                if pid == 0:  # the child: its own engine and app, the answer through the pipe
                    os.close(read)
                    try:
                        os.write(write, json.dumps(one_process(part)).encode())
                    finally:
                        os._exit(0)
                os.close(write)
                children.append((pid, read))
            results = []
            for pid, read in children:
                with os.fdopen(read, "rb") as fh:
                    results.append(json.loads(fh.read() or b"{}"))
                os.waitpid(pid, 0)
        cases = len(d.cases()) - before
    finally:
        d.close()
    batches: dict[int, int] = defaultdict(int)
    for r in results:
        for size, n in r["batches"].items():
            batches[int(size)] += n
    done = sum(r["done"] for r in results)
    return {"reports/s": done / max(r["wall"] for r in results),
            "cpu_ms": statistics.mean(r["cpu_ms"] for r in results), "batches": dict(sorted(batches.items())),
            "cases": cases, "expected": len(environs), "bad": sum(r["bad"] for r in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=200, help="villagers, one of each message type each")
    parser.add_argument("--kb", choices=["hash", "model"], default="hash")
    parser.add_argument("--instance", type=Path, default=ROOT / "instance", help="where --kb model finds the index")
    parser.add_argument("--db-url", default=None, help="default: a SQLite file in a temporary folder")
    parser.add_argument("--mode", default="safe", choices=["plain", "compatible", "safe"])
    parser.add_argument("--phases", action="store_true", help="also: CPU per stage of a CLICK 一键申报")
    parser.add_argument("--concurrent", type=int, metavar="THREADS", default=0,
                        help="also: one-click reports from THREADS threads at once in one process (group commit)")
    parser.add_argument("--processes", type=int, default=1,
                        help="with --concurrent: that many forked processes on the same database")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M")
    times, cpu, kb_note = run(args.users, args.kb, args.instance.resolve(), args.db_url, args.mode)
    db = "SQLite (WAL)" if not args.db_url else args.db_url.split("://")[0]
    print(f"in-process /wechat, {args.mode} mode, {db}, {args.users} villagers; knowledge: {kb_note}")
    print(f"{started}, {machine()}")
    print(f"\n{'message type':40} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'CPU p50':>8}  bar")
    for kind, values in times.items():
        bar = BARS.get(kind)
        verdict = "" if bar is None else f"p95 ≤ {bar:g} ms: {'met' if _pct(values, 95) <= bar else 'NOT met'}"
        print(f"{kind:40} {len(values):5d} {statistics.median(values):8.2f} {_pct(values, 95):8.2f} "
              f"{_pct(values, 99):8.2f} {max(values):8.2f} {statistics.median(cpu[kind]):8.2f}  {verdict}")
    print("(wall-clock ms; CPU p50 = CPU time of the process per message, less sensitive to other load)")
    if args.phases:
        for path, spent in phases(args.users, args.db_url, args.mode).items():
            print(f"\nCPU per stage of a CLICK 一键申报, {path} (mean ms of {args.users}, one at a time):")
            for stage, ms in spent.items():
                print(f"  {stage:32} {ms:6.2f}")
            print(f"  {'total':32} {sum(spent.values()):6.2f}")
    if args.concurrent:
        got = concurrent(args.concurrent, 4000, args.db_url, args.mode, args.processes)
        print(f"\n4000 one-click reports from {args.concurrent} threads in each of {args.processes} process(es) "
              f"(WSGI, no HTTP): "
              f"{got['reports/s']:.0f} reports/s, {got['cpu_ms']:.2f} ms CPU each; batches (size: count) "
              f"{got['batches']}; cases {got['cases']} of {got['expected']}, bad replies {got['bad']}")


if __name__ == "__main__":
    main()
