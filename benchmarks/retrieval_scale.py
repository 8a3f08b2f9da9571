"""Retrieval latency, index build time and memory per worker as the corpus grows.

The shipped corpus ×1, ×10 and ×100: every document replicated under new names (``<name>--copy007.txt``,
title ``…（副本7）``, same issuer and region) into a temporary folder with its own manifest. For
each size, in fresh processes (so one size's memory does not colour the next):

- **build**: ``KnowledgeBase.build`` (ingest, jieba BM25, embeddings, faiss), wall time and size on disk;
- **worker**: a process that loads the index read-only, as every gunicorn worker does, and answers:
  resident memory (RSS) after loading, then ``search`` and ``answer`` latency p50 / p95 / p99 over the
  117 colloquial questions of ``knowledge/data/calibration.jsonl`` (a warm process, each question
  cold: the knowledge base's cache of query embeddings is cleared before each).

The real e5 model needs minutes per ×1 build on a 2-core machine (hours at ×100), so by default
every size uses the hash embedder (``knowledge.embedder.HashEmbedder``, same index shape, 64
dimensions instead of 384) and the output says so; ``--model`` adds the real model at ×1
(``--model-index DIR`` reuses an index built by ``huinong build-index`` instead of building one).

    .venv/bin/python benchmarks/retrieval_scale.py                       # hash embedder, ×1 ×10 ×100
    .venv/bin/python benchmarks/retrieval_scale.py --model --model-index instance/index
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
CORPUS = ROOT / "knowledge" / "data" / "corpus"


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))]


def _rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def replicate(times: int, target: Path) -> int:
    """The shipped corpus ``times`` over in ``target``; returns the number of documents."""
    manifest = json.loads((CORPUS / "manifest.json").read_text("utf-8"))
    target.mkdir(parents=True, exist_ok=True)
    docs = []
    for doc in manifest["documents"]:
        for k in range(times):
            name = doc["file"] if k == 0 else doc["file"].replace(".txt", f"--copy{k:03d}.txt")
            shutil.copyfile(CORPUS / doc["file"], target / name)
            docs.append({**doc, "file": name, "title": doc["title"] + (f"（副本{k}）" if k else "")})
    (target / "manifest.json").write_text(json.dumps({**manifest, "documents": docs}, ensure_ascii=False), "utf-8")
    return len(docs)


def _embedder(kind: str, instance: Path):
    from knowledge.embedder import HashEmbedder, load_embedder

    if kind == "hash":
        return HashEmbedder()
    return load_embedder(None, instance)


def child_build(corpus: Path, index: Path, kind: str, instance: Path) -> dict:
    from knowledge import KnowledgeBase

    embedder = _embedder(kind, instance)
    started = time.perf_counter()
    kb = KnowledgeBase.build(corpus, index, embedder, progress=False)
    seconds = time.perf_counter() - started
    size = sum(p.stat().st_size for p in index.rglob("*") if p.is_file())
    return {"build_s": round(seconds, 1), "passages": kb.status().get("passages"), "index_mb": round(size / 2**20, 1)}


def child_worker(index: Path, kind: str, instance: Path) -> dict:
    import logging

    logging.disable(logging.WARNING)
    from knowledge import KnowledgeBase

    base = _rss_mb()
    embedder = _embedder(kind, instance)
    started = time.perf_counter()
    kb = KnowledgeBase.load(index, embedder)
    load_s = time.perf_counter() - started
    questions = [json.loads(line)["question"]
                 for line in (ROOT / "knowledge/data/calibration.jsonl").read_text("utf-8").splitlines() if line]
    for q in questions[:5]:  # warm: jieba, faiss, the model's first batch
        kb.answer(q)
    rss = _rss_mb()
    search, answer = [], []
    forget = getattr(kb, "clear_cache", lambda: None)  # the query-embedding cache: measure cold questions
    for q in questions:
        forget()
        t0 = time.perf_counter()
        kb.search(q, k=5)
        search.append((time.perf_counter() - t0) * 1000)
        forget()
        t0 = time.perf_counter()
        kb.answer(q)
        answer.append((time.perf_counter() - t0) * 1000)
    return {"load_s": round(load_s, 1), "rss_mb": round(rss), "rss_before_mb": round(base),
            "search": [round(statistics.median(search), 1), round(_pct(search, 95), 1), round(_pct(search, 99), 1)],
            "answer": [round(statistics.median(answer), 1), round(_pct(answer, 95), 1), round(_pct(answer, 99), 1)],
            "n": len(questions)}


def _child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="1,10,100")
    parser.add_argument("--model", action="store_true", help="also the real e5 model at ×1")
    parser.add_argument("--model-index", type=Path, default=None, help="an index built with the real model")
    parser.add_argument("--instance", type=Path, default=ROOT / "instance", help="where the converted model lives")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        what, *rest = args.child
        result = child_build(Path(rest[0]), Path(rest[1]), rest[2], Path(rest[3])) if what == "build" else \
            child_worker(Path(rest[0]), rest[1], Path(rest[2]))
        print(json.dumps(result))
        return

    from inprocess_latency import machine

    started = time.strftime("%Y-%m-%d %H:%M")
    tmp = Path(tempfile.mkdtemp(prefix="retrieval-scale-"))
    instance = args.instance.resolve()
    plan = [(int(s), "hash") for s in args.scales.split(",")]
    if args.model:
        plan.insert(0, (1, "model"))
    rows = []
    for times, kind in plan:
        corpus = tmp / f"corpus-x{times}"
        docs = replicate(times, corpus) if not corpus.exists() else \
            len(json.loads((corpus / "manifest.json").read_text("utf-8"))["documents"])
        index = tmp / f"index-x{times}-{kind}"
        if kind == "model" and args.model_index:
            built = {"build_s": None, "passages": None,
                     "index_mb": round(sum(p.stat().st_size for p in args.model_index.rglob("*") if p.is_file()) / 2**20, 1)}
            index = args.model_index.resolve()
        else:
            built = _child("build", str(corpus), str(index), kind, str(instance))
        worker = _child("worker", str(index), kind, str(instance))
        rows.append((times, kind, docs, built, worker))
        print(f"×{times} {kind}: {built} {worker}", file=sys.stderr)

    print("retrieval as the corpus grows (the shipped corpus replicated under new names)")
    print(f"{started}, {machine()}")
    print("embedder 'hash' = the deterministic hash embedder (64 dims): the real e5 model would need minutes "
          "per ×1 build here, hours at ×100; 'model' = the bundled multilingual-e5-small (384 dims)")
    print(f"\n{'corpus':8} {'embedder':8} {'docs':>5} {'passages':>8} {'build s':>8} {'index MB':>8} {'load s':>6} "
          f"{'RSS MB':>7} {'search p50/p95/p99 ms':>22} {'answer p50/p95/p99 ms':>22}")
    for times, kind, docs, built, worker in rows:
        passages = built["passages"] or "—"
        build_s = "reused" if built["build_s"] is None else f"{built['build_s']:.1f}"
        print(f"{'×' + str(times):8} {kind:8} {docs:5d} {passages!s:>8} {build_s:>8} {built['index_mb']:8.1f} "
              f"{worker['load_s']:6.1f} {worker['rss_mb']:7d} {'/'.join(map(str, worker['search'])):>22} "
              f"{'/'.join(map(str, worker['answer'])):>22}")
    print(f"\nRSS MB = resident memory of one worker process after loading the index and answering "
          f"(a bare Python process with the package imported: {rows[0][4]['rss_before_mb']} MB)")


if __name__ == "__main__":
    main()
