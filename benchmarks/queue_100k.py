"""The staff queue at 100,000 cases, on SQLite and PostgreSQL: how long a page takes.

    python benchmarks/queue_100k.py                       # SQLite in a temporary folder only
    python benchmarks/queue_100k.py --pg postgresql://postgres@127.0.0.1:5432/postgres
    python benchmarks/queue_100k.py --cases 20000 --runs 5

For each backend it creates a fresh database, loads the demo county, bulk-inserts the cases
(about 3 % urgent, 85 % open, due dates spread over ±40 days so many are overdue, one to three
risk types each, a phone on every fifth) and then times, warm, the median and the worst of
``--runs`` calls of:

- ``storage.queue.queue_page`` alone (the rows of one page), for the first page and for a page
  reached by walking the keyset 200 pages deep, for the county, a township and a village;
- filters and searches (step, risk type, village, reference, phone, name);
- the whole page use case ``handlers.queue.queue`` (rows + total + counts per step + urgent and
  overdue counts), which is what a console request does;
- ``EXPLAIN`` of the first-page query, so the index use is visible.

With ``--pg`` the admin URL is used to create (and afterwards drop) a scratch database.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, text  # noqa: E402
from sqlmodel import Session, select  # noqa: E402

from handlers import queue as queue_uc  # noqa: E402
from handlers.context import Context  # noqa: E402
from handlers.demo import load_demo  # noqa: E402
from handlers.staff import load_actor  # noqa: E402
from storage import DataCipher, init_db, make_engine  # noqa: E402
from storage.crypto import generate_data_key  # noqa: E402
from storage.models import Case, Region, StaffUser  # noqa: E402
from storage.queue import QueueFilter, queue_page  # noqa: E402

RISKS = ["illness", "disability", "education", "disaster", "accident", "industry_failure", "unemployment",
         "labor_shortage", "housing", "water", "other"]
STEPS = ["warning", "visit", "consent", "data_check", "review", "notice", "township", "county", "assistance"]
NAMES = "张王李赵刘陈杨黄周吴徐孙马朱胡郭何高林罗"


def populate(ctx: Context, n: int, seed: int = 7) -> dict[str, str]:
    """Bulk-insert ``n`` cases across the demo villages; returns probes (a ref, a phone, a name)."""
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC)
    with Session(ctx.engine) as s:
        villages = list(s.exec(select(Region).where(Region.level == "village")))
    probes: dict[str, str] = {}
    batch: list[dict] = []
    t0 = time.perf_counter()
    for i in range(n):
        v = villages[i % len(villages)]
        created = now - dt.timedelta(minutes=rng.randint(0, 60 * 24 * 120))
        closed = rng.random() < 0.15
        risks = rng.sample(RISKS, rng.randint(1, 3))
        phone = f"13{rng.randint(0, 999999999):09d}" if i % 5 == 0 else None
        name = rng.choice(NAMES) + rng.choice(NAMES) + "某"
        ref = f"SB{created:%Y%m%d}-{i:06d}"
        batch.append({
            "ref": ref, "inbound_key": None, "channel": rng.choice(["wechat", "wechat", "miniprogram", "staff"]),
            "household_id": None, "reporter_id": None, "reporter_name": name,
            "reporter_phone_enc": ctx.cipher.encrypt(phone) if phone else None,
            "reporter_phone_idx": ctx.cipher.blind_index(phone) if phone else None,
            "reporter_id_number_enc": None, "village_id": v.id, "region_path": v.path,
            "risk_types": risks, "risk_codes": "," + "".join(f"{r}," for r in risks),
            "description": "", "urgent": rng.random() < 0.03, "urgent_reasons": "",
            "step": "closed" if closed else rng.choice(STEPS), "outcome": "rejected" if closed else None,
            "monitoring_type": None, "outcome_reason": "", "merged_into_id": None, "possible_duplicate_of_id": None,
            "first_aid_at": None, "assigned_to_id": None, "step_started_at": created,
            "due_at": None if closed else now + dt.timedelta(hours=rng.randint(-40 * 24, 40 * 24)),
            "created_at": created, "updated_at": created, "closed_at": created if closed else None,
        })
        if i == n // 2:
            probes.update(ref=ref, phone=phone or "13800000000", name=name[:2])
        if phone and "phone" not in probes:
            probes["phone"] = phone
        if len(batch) == 5000:
            _flush(ctx, batch)
    _flush(ctx, batch)
    # Statistics (and, on PostgreSQL, the visibility map that index-only scans need) as autovacuum
    # would leave them on a live database.
    with ctx.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text('VACUUM ANALYZE "case"' if ctx.engine.dialect.name == "postgresql" else "ANALYZE"))
    probes["insert_s"] = f"{time.perf_counter() - t0:.1f}"
    return probes


def _flush(ctx: Context, batch: list[dict]) -> None:
    if batch:
        with ctx.engine.begin() as conn:
            conn.execute(insert(Case), batch)
        batch.clear()


def timed(fn, runs: int) -> tuple[float, float]:
    fn()  # warm
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples), max(samples)


def actor_named(ctx: Context, username: str):
    with Session(ctx.engine) as s:
        staff = s.exec(select(StaffUser).where(StaffUser.username == username)).one()
    return load_actor(ctx, staff.id)


def deep_cursor(ctx: Context, f: QueueFilter, pages: int):
    now = dt.datetime.now(dt.UTC)
    cursor = None
    with Session(ctx.engine) as s:
        for _ in range(pages):
            _rows, cursor = queue_page(s, f, now=now, limit=50, after=cursor)
            if cursor is None:
                break
    return cursor


def bench(url: str, n: int, runs: int) -> list[tuple[str, float, float]]:
    engine = make_engine(url)
    init_db(engine)
    ctx = Context(engine=engine, cipher=DataCipher(generate_data_key()))
    load_demo(ctx)
    probes = populate(ctx, n)
    print(f"  inserted {n} cases in {probes['insert_s']} s", flush=True)
    county, town, village = (actor_named(ctx, u) for u in ("county", "chengguan", "longwan"))
    now = dt.datetime.now(dt.UTC)
    with Session(engine) as s:
        dongba = s.exec(select(Region).where(Region.name == "东坝村")).one().path

    def page(f: QueueFilter, after=None):
        def run():
            with Session(engine) as s:
                queue_page(s, f, now=now, limit=50, after=after)
        return run

    with Session(engine) as s:
        dongba_id = s.exec(select(Region).where(Region.name == "东坝村")).one().id
    fc, ft, fv = (QueueFilter(region_path=a.region_path) for a in (county, town, village))
    results = []
    cases = [
        ("rows: county, first page", page(fc)),
        ("rows: county, page 201 (keyset)", page(fc, deep_cursor(ctx, fc, 200))),
        ("rows: township, first page", page(ft)),
        ("rows: township, page 201 (keyset)", page(ft, deep_cursor(ctx, ft, 200))),
        ("rows: village, first page", page(fv)),
        ("rows: step = 入户核查", page(QueueFilter(region_path=county.region_path, step="visit"))),
        ("rows: risk = 因病", page(QueueFilter(region_path=county.region_path, risk="illness"))),
        ("rows: village filter", page(QueueFilter(region_path=county.region_path, village_path=dongba))),
        ("rows: overdue only", page(QueueFilter(region_path=county.region_path, overdue_only=True))),
    ]
    for label, fn in cases:
        results.append((label, *timed(fn, runs)))
    uc = [
        ("page use case: county", lambda: queue_uc.queue(ctx, county, {})),
        ("page use case: township", lambda: queue_uc.queue(ctx, town, {})),
        ("page use case: village", lambda: queue_uc.queue(ctx, village, {})),
        ("page use case: county, risk + step", lambda: queue_uc.queue(ctx, county, {"risk": "illness", "step": "visit"})),
        ("search: reference number", lambda: queue_uc.queue(ctx, county, {"q": probes["ref"]})),
        ("search: phone (blind index)", lambda: queue_uc.queue(ctx, county, {"q": probes["phone"]})),
        ("search: name prefix", lambda: queue_uc.queue(ctx, county, {"q": probes["name"]})),
        ("page use case: county, village filter", lambda: queue_uc.queue(ctx, county, {"village": str(dongba_id)})),
    ]
    for label, fn in uc:
        results.append((label, *timed(fn, runs)))
    with Session(engine) as s:
        from sqlalchemy.dialects import postgresql, sqlite

        from storage.queue import _conditions, _segment_query

        dialect = postgresql.dialect() if engine.dialect.name == "postgresql" else sqlite.dialect()
        prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
        page_q = _segment_query(select(Case.id).where(*_conditions(s, fc, now)), False, False, None,
                                open_only=True).limit(51)
        count_q = (select(Case.step, func.count()).where(*_conditions(s, fc, now, with_step=False))
                   .group_by(Case.step))
        for label, q in (("first page, non-urgent segment", page_q), ("counts per step", count_q)):
            sql = str(q.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
            plan = [" ".join(str(c) for c in row) for row in s.execute(text(prefix + sql))]
            print(f"  plan of the county {label}:")
            for line in plan[:6]:
                print("    " + line)
    engine.dispose()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--pg", default="", help="PostgreSQL admin URL (a scratch database is created and dropped)")
    args = ap.parse_args()
    backends = []
    tmp = tempfile.mkdtemp(prefix="queue100k-")
    backends.append(("SQLite", f"sqlite:///{tmp}/bench.db", None))
    if args.pg:
        import psycopg

        name = f"huinong_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.pg, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        backends.append(("PostgreSQL", args.pg.rsplit("/", 1)[0] + "/" + name, name))
    table: dict[str, dict[str, tuple[float, float]]] = {}
    try:
        for label, url, _ in backends:
            print(f"{label}: {args.cases} cases", flush=True)
            for row, med, worst in bench(url, args.cases, args.runs):
                table.setdefault(row, {})[label] = (med, worst)
    finally:
        for _label, _url, name in backends:
            if name:
                import psycopg

                with psycopg.connect(args.pg, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    names = [b[0] for b in backends]
    print()
    print(f"{'ms, median / worst of ' + str(args.runs):40}" + "".join(f"{n:>22}" for n in names))
    for row, cols in table.items():
        print(f"{row:40}" + "".join(f"{cols[n][0]:>12.1f} / {cols[n][1]:<7.1f}" for n in names))


if __name__ == "__main__":
    main()
