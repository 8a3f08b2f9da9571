"""Throughput and latency through the real HTTP server, next to a bare wechatpy echo handler.

Starts, on loopback, ``huinong serve`` (gunicorn, ``--workers 2 --threads 8``, its defaults) and
the echo handler of ``benchmarks/echo_app.py`` under the same gunicorn settings, and drives both
from a second process (``benchmarks/loadgen.py``: pre-built requests, keep-alive connections,
threads) with the same load, alternating echo and service runs so both see the same noise, after
warming both up (the service also with 400 reports from other households: the first few hundred
after a start are slower):

- **echo**: a text message → the same text back (verify, decrypt, parse, reply, encrypt);
- **report**: a CLICK 一键申报 from a different bound household each time → the case is filed,
  committed, and acknowledged with its reference;
- **question**: a typed policy question → the quoted clause (the real model and index; skipped
  with ``--kb none``).

Every request is signed and encrypted (safe mode) as WeChat does. Afterwards every reply is
decrypted and checked (echo: the same text; report: a reference; question: an answer), and the
database must hold exactly one case per acknowledged report. The figure that matters on a noisy
machine is the ratio report / echo in the same run (bar: ≥ 40 %).

    .venv/bin/python benchmarks/http_throughput.py                       # SQLite, index of ./instance
    .venv/bin/python benchmarks/http_throughput.py --db-url postgresql://postgres@127.0.0.1/bench \\
        --redis-url redis://127.0.0.1:6379/2
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from inprocess_latency import REF, machine, questions  # noqa: E402

from tests.servers import BIN, Deployment, ServerProcess, env_for, free_port  # noqa: E402


def rss_mb(pid: int) -> float:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


_msgids = itertools.count(10**12)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of ``pids`` so far (from /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def build(d: Deployment, kind: str, openids: list[str], texts: list[str]) -> list[tuple[str, bytes]]:
    """Signed, encrypted requests (timestamps are checked within 300 s: build right before a run)."""
    out = []
    for i, openid in enumerate(openids):
        user = d.user(openid, None)  # only builds the requests; loadgen.py sends them
        if kind == "report":
            xml = user.xml(user.fields("event", Event="CLICK", EventKey="REPORT"))
        else:
            xml = user.xml(user.fields("text", Content=texts[i % len(texts)], MsgId=next(_msgids)))
        query, body = user.request(xml)
        out.append(("/wechat?" + urlencode(query), body))
    return out


def load(port: int, requests: list[tuple[str, bytes]], tmp: Path, name: str, concurrency: int,
         max_seconds: float, server: ServerProcess | None = None) -> tuple[dict, list]:
    req_file, body_file = tmp / f"{name}.req", tmp / f"{name}.bodies"
    with open(req_file, "wb") as fh:
        pickle.dump(requests, fh)
    pids = server.children() if server is not None else []
    cpu_before = cpu_seconds(pids)
    out = subprocess.run(
        [sys.executable, str(HERE / "loadgen.py"), "--port", str(port), "--requests", str(req_file),
         "--concurrency", str(concurrency), "--max-seconds", str(max_seconds), "--bodies", str(body_file)],
        capture_output=True, text=True, check=True,
    )
    with open(body_file, "rb") as fh:
        bodies = pickle.load(fh)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if pids and result["done"]:  # the server's CPU per request: the figure noise changes least
        result["cpu_ms"] = round((cpu_seconds(pids) - cpu_before) * 1000 / result["done"], 2)
    return result, bodies


def replies(d: Deployment, bodies: list) -> list[str | None]:
    """The decrypted text of each reply (None for no reply, an error or "success")."""
    import xmltodict

    crypto = d.user("o-any", None).crypto
    out = []
    for body in bodies:
        if not body or body == b"success":
            out.append(None)
            continue
        try:
            doc = xmltodict.parse(body)["xml"]
            plain = crypto.decrypt_message(body, doc["MsgSignature"], doc["TimeStamp"], doc["Nonce"])
            out.append(xmltodict.parse(plain)["xml"].get("Content"))
        except Exception:
            out.append(None)
    return out


class Analyzer:
    """Stands in for autovacuum's ANALYZE when the PostgreSQL server runs with autovacuum off.

    A production server analyzes a table once a tenth of it has changed (the default); without it
    the planner keeps the estimates of the empty tables the benchmark started with, and the
    service gets slower with every report (``storage.db.database_warnings``). Measuring that
    would measure the server's configuration, not the service: this runs ``ANALYZE`` every
    ``every`` seconds instead, and says so in the output.
    """

    def __init__(self, db_url: str | None, every: float = 5.0):
        import threading

        self.every, self.runs = every, 0
        self._stop = threading.Event()
        self._thread = None
        if not db_url or db_url.startswith("sqlite"):
            return
        import psycopg

        self._url = db_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(self._url, autocommit=True) as conn:
            if conn.execute("SHOW autovacuum").fetchone()[0] == "on":
                return
        self._thread = threading.Thread(target=self._loop, name="analyze", daemon=True)
        self._thread.start()

    @property
    def active(self) -> bool:
        return self._thread is not None

    def _loop(self) -> None:
        import psycopg

        with psycopg.connect(self._url, autocommit=True) as conn:
            while True:
                conn.execute("ANALYZE")
                self.runs += 1
                if self._stop.wait(self.every):
                    return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)


def copy_index(source: Path, instance: Path) -> bool:
    if not (source / "index" / "manifest.json").exists():
        return False
    instance.mkdir(parents=True, exist_ok=True)
    for part in ("index", "models"):
        if (source / part).exists() and not (instance / part).exists():
            shutil.copytree(source / part, instance / part)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per echo / report run")
    parser.add_argument("--questions", type=int, default=200, help="requests of the question run")
    parser.add_argument("--rounds", type=int, default=3, help="echo / report runs, alternating")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warm-reports", type=int, default=400,
                        help="reports from other households before the measured runs (not measured)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8, help="as huinong serve's default")
    parser.add_argument("--max-seconds", type=float, default=90.0, help="time bound of each run")
    parser.add_argument("--db-url", default=None, help="default: SQLite in a temporary instance folder")
    parser.add_argument("--redis-url", default="", help="e.g. redis://127.0.0.1:6379/2 (emptied first!)")
    parser.add_argument("--kb", choices=["model", "none"], default="model")
    parser.add_argument("--instance", type=Path, default=ROOT / "instance",
                        help="where the index (huinong build-index) and the converted model are copied from")
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M")
    tmp = Path(tempfile.mkdtemp(prefix="http-bench-"))
    if args.redis_url:
        import redis

        redis.Redis.from_url(args.redis_url).flushdb()

    d = Deployment(tmp, args.db_url, redis_url=args.redis_url, mode="safe", log_level="WARNING")
    analyzer = Analyzer(args.db_url)
    kb = args.kb == "model" and copy_index(args.instance.resolve(), d.settings.instance_path)
    if args.kb == "model" and not kb:
        print(f"no index in {args.instance}/index: run `huinong build-index` first (questions skipped)")
    openids = d.bound_openids(args.requests * args.rounds, prefix="o-http")
    warm_reporters = d.bound_openids(args.warm_reports, prefix="o-warm-report")
    asked = questions()

    echo_port = free_port()
    echo = ServerProcess(
        [str(BIN / "gunicorn"), "--workers", str(args.workers), "--threads", str(args.threads), "--bind",
         f"127.0.0.1:{echo_port}", "--access-logfile", "-", "--chdir", str(HERE), "echo_app:app"],
        env_for(d.settings), port=echo_port, name="echo", ready_path="/wechat",
    )
    results: dict[str, list[dict]] = {"echo": [], "report": [], "question": []}
    problems: list[str] = []
    try:
        echo.start(60)
        server = d.serve(workers=args.workers, threads=args.threads, name="huinong", ready_path="/console/login")
        # Warm both: templates, connections, and (on the first question) the model in every worker.
        warm_users = [f"o-warm-{i}" for i in range(40)]
        load(echo_port, build(d, "echo", warm_users, ["预热"]), tmp, "warm-echo", args.concurrency, 60)
        load(server.port, build(d, "echo", warm_users, ["你好"]), tmp, "warm-app", args.concurrency, 60)
        # The report path too: the first few hundred reports after a start run slower (on PostgreSQL
        # about a fifth: statements not yet prepared on the server, plans of nearly empty tables).
        warm_acks = 0
        if warm_reporters:
            _, bodies = load(server.port, build(d, "report", warm_reporters, []), tmp, "warm-report",
                             args.concurrency, 60)
            warm_acks = sum(1 for t in replies(d, bodies) if REF.search(t or ""))
        if kb:  # the model loads in each worker on its first question (warm-up texts differ from the measured)
            load(server.port, build(d, "question", warm_users, [q + "，谢谢" for q in asked]), tmp, "warm-q",
                 args.concurrency, 300)

        for r in range(args.rounds):
            batch = openids[r * args.requests:(r + 1) * args.requests]
            contents = [f"回声 {r}-{i}" for i in range(args.requests)]
            res, bodies = load(echo_port, build(d, "echo", [f"o-echo-{i}" for i in range(args.requests)], contents),
                               tmp, f"echo-{r}", args.concurrency, args.max_seconds, echo)
            got = replies(d, bodies)
            bad = sum(1 for i, t in enumerate(got) if t != contents[i % len(contents)])
            if bad:
                problems.append(f"echo round {r}: {bad} replies not the text sent")
            results["echo"].append(res)

            res, bodies = load(server.port, build(d, "report", batch, []), tmp, f"report-{r}", args.concurrency,
                               args.max_seconds, server)
            refs = [REF.search(t or "") for t in replies(d, bodies)]
            res["acknowledged"] = sum(1 for m in refs if m)
            res["success"] = sum(1 for b in bodies if b == b"success")  # over the 3 s budget: outbox
            if len({m.group(0) for m in refs if m}) != res["acknowledged"]:
                problems.append(f"report round {r}: two acknowledgements share a reference")
            results["report"].append(res)

        cases = len(d.cases())
        passive = warm_acks + sum(r["acknowledged"] for r in results["report"])
        deferred = sum(1 for row in d.outbox() if row.kind == "text" and REF.search(row.payload.get("content", "")))
        acknowledged = passive + deferred
        if cases != acknowledged:
            problems.append(f"{acknowledged} reports acknowledged but {cases} cases in the database")

        if kb:
            q_users = [f"o-ask-{i}" for i in range(args.questions)]
            # distinct texts (a repeat would hit the workers' cache of query embeddings)
            texts = [asked[i % len(asked)] + "？" * (i // len(asked)) for i in range(args.questions)]
            res, bodies = load(server.port, build(d, "question", q_users, texts), tmp, "question", args.concurrency,
                               args.max_seconds * 3, server)
            res["answered"] = sum(1 for t in replies(d, bodies) if t)
            results["question"].append(res)
        memory = {"huinong": [round(rss_mb(p)) for p in server.children()],
                  "echo": [round(rss_mb(p)) for p in echo.children()]}
    finally:
        analyzer.stop()
        echo.stop()
        d.close()

    db = "SQLite (WAL)" if not args.db_url else "PostgreSQL" + (" + Redis" if args.redis_url else "")
    print(f"HTTP on loopback: gunicorn --workers {args.workers} --threads {args.threads}, safe mode, {db}; "
          f"load from a second process, {args.concurrency} keep-alive connections")
    print(f"{started}, {machine()}")
    if analyzer.active:
        print(f"the PostgreSQL server runs with autovacuum off: ANALYZE every {analyzer.every:.0f} s in its place "
              f"({analyzer.runs} runs)")
    print(f"\n{'run':18} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
          f"{'server CPU ms/req':>18}  statuses")
    for kind, runs in results.items():
        for i, res in enumerate(runs):
            extra = {k: res[k] for k in ("acknowledged", "success", "answered") if res.get(k)}
            print(f"{kind + ' ' + str(i + 1):18} {res['done']:8d} {res['rps']:8.1f} {res['p50_ms']:8.2f} "
                  f"{res['p95_ms']:8.2f} {res['p99_ms']:8.2f} {res.get('cpu_ms', float('nan')):18.2f}  "
                  f"{res['statuses']} {res['errors'] or ''} {extra or ''}")
    ratios = [rep["rps"] / ech["rps"] for rep, ech in zip(results["report"], results["echo"], strict=True)
              if ech["rps"]]
    if ratios:
        med = statistics.median(ratios)
        print(f"\nreport / echo throughput, per round: {', '.join(f'{x:.0%}' for x in ratios)}; median {med:.0%} "
              f"(bar ≥ 40 %: {'met' if med >= 0.40 else 'NOT met'})")
    if results["question"] and results["echo"]:
        echo_rps = statistics.median(r["rps"] for r in results["echo"])
        print(f"question / echo throughput: {results['question'][0]['rps'] / echo_rps:.1%}")
    print(f"memory per worker (RSS MB) after the runs: huinong {memory['huinong']}, echo {memory['echo']}")
    print(f"cases in the database: {cases}; acknowledged in the reply: {passive}, through the outbox (the "
          f"reply took longer than the 3 s budget): {deferred}; lost or doubled: "
          f"{'none' if cases == acknowledged else 'YES'}")
    for p in problems:
        print("PROBLEM:", p)
    if problems:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
