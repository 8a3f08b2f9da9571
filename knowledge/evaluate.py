"""Retrieval evaluation: BM25 alone, dense alone and the full pipeline, in one run.

Scoring rule (``shared/eval/README.md``): a passage hits a question when it comes from the gold
document and its text contains the gold string, whitespace ignored; a common run of at least
80 % of the gold's length also counts; ``alt_gold`` entries count the same. Reported per
pipeline: hit@1/3/5, MRR (first hit within the top 5), the share of unanswerable questions
declined and of answerable ones declined, the median length of returned passages, and p50/p95
latency per question (warm, in process).
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from knowledge.base import KnowledgeBase

__all__ = ["passage_hits", "evaluate", "format_report", "default_eval_dir", "read_jsonl"]

_WS = re.compile(r"\s+")
PIPELINES = (("bm25", "BM25 alone"), ("dense", "dense alone"), ("weighted", "full pipeline"))
# Reported beside the pipeline so the fusion choice stays measured.
FUSION_ALTERNATIVE = ("rrf", "full, RRF")


def default_eval_dir() -> Path:
    """``../shared/eval`` relative to the repository holding this package (or to the cwd)."""
    candidates = [
        Path(__file__).resolve().parent.parent.parent / "shared" / "eval",
        Path.cwd().resolve().parent / "shared" / "eval",
    ]
    return next((c for c in candidates if c.is_dir()), candidates[0])


def read_jsonl(path: str | Path) -> list[dict[str, object]]:
    rows = []
    for line in Path(path).read_text("utf-8").split("\n"):
        if line.strip():
            rows.append(json.loads(line))
    return rows


def _longest_common_run(a: str, b: str) -> int:
    """Length of the longest common substring (dynamic programming, O(len(a)·len(b)))."""
    best = 0
    prev = [0] * (len(b) + 1)
    for ca in a:
        cur = [0] * (len(b) + 1)
        for j, cb in enumerate(b, 1):
            if ca == cb:
                cur[j] = prev[j - 1] + 1
                if cur[j] > best:
                    best = cur[j]
        prev = cur
    return best


def _text_hits(text: str, gold: str) -> bool:
    t = _WS.sub("", text)
    g = _WS.sub("", gold)
    if not g:
        return False
    if g in t:
        return True
    return _longest_common_run(g, t) >= 0.8 * len(g)


def passage_hits(doc: str, text: str, item: dict[str, object]) -> bool:
    """Whether a returned passage answers an evaluation item (gold or any alt_gold)."""
    golds = [(str(item["doc"]), str(item["gold"]))]
    for alt in item.get("alt_gold") or []:  # type: ignore[union-attr]
        golds.append((str(alt["doc"]), str(alt["gold"])))
    return any(doc == gd and _text_hits(text, g) for gd, g in golds)


@dataclass
class PipelineReport:
    name: str
    label: str
    hit1: float
    hit3: float
    hit5: float
    mrr: float
    declined_unanswerable: float
    declined_answerable: float
    median_passage: float
    p50_ms: float
    p95_ms: float
    misses: list[str]


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    idx = min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))
    return s[idx]


def evaluate_pipeline(
    kb: KnowledgeBase,
    method: str,
    label: str,
    qa: list[dict[str, object]],
    unanswerable: list[dict[str, object]],
    k: int = 5,
) -> PipelineReport:
    hits1 = hits3 = hits5 = 0
    rr = 0.0
    declined_ans = declined_un = 0
    lengths: list[int] = []
    latencies: list[float] = []
    misses: list[str] = []
    kb.clear_cache()
    for item in qa:
        t0 = time.perf_counter()
        res = kb.search(str(item["question"]), item.get("region"), k=k, method=method)  # type: ignore[arg-type]
        latencies.append((time.perf_counter() - t0) * 1000.0)
        lengths.extend(len(h.text) for h in res.passages)
        rank = next((r for r, h in enumerate(res.passages, 1) if passage_hits(h.doc, h.text, item)), None)
        if rank is not None:
            hits1 += rank <= 1
            hits3 += rank <= 3
            hits5 += rank <= 5
            rr += 1.0 / rank
        if rank is None or rank > 1:
            misses.append(f"{item['id']}@{rank or '-'}")
        if not res.answerable:
            declined_ans += 1
            misses.append(f"{item['id']}:declined")
    for item in unanswerable:
        t0 = time.perf_counter()
        res = kb.search(str(item["question"]), item.get("region"), k=k, method=method)  # type: ignore[arg-type]
        latencies.append((time.perf_counter() - t0) * 1000.0)
        if not res.answerable:
            declined_un += 1
        else:
            misses.append(f"{item['id']}:answered")
    n = max(1, len(qa))
    return PipelineReport(
        name=method,
        label=label,
        hit1=hits1 / n,
        hit3=hits3 / n,
        hit5=hits5 / n,
        mrr=rr / n,
        declined_unanswerable=declined_un / max(1, len(unanswerable)),
        declined_answerable=declined_ans / n,
        median_passage=float(statistics.median(lengths)) if lengths else 0.0,
        p50_ms=_percentile(latencies, 0.5),
        p95_ms=_percentile(latencies, 0.95),
        misses=misses,
    )


def evaluate(
    kb: KnowledgeBase,
    qa: list[dict[str, object]],
    unanswerable: list[dict[str, object]],
    methods: Iterable[tuple[str, str]] = PIPELINES,
) -> list[PipelineReport]:
    """Run every pipeline over both sets (after a warm-up pass)."""
    for item in (qa + unanswerable)[:5]:
        kb.search(str(item["question"]))
    return [evaluate_pipeline(kb, m, label, qa, unanswerable) for m, label in methods]


def format_report(reports: list[PipelineReport], n_qa: int, n_un: int, verbose: bool = False) -> str:
    head = f"{'pipeline':<15}{'hit@1':>7}{'hit@3':>7}{'hit@5':>7}{'MRR':>7}{'decl-U':>8}{'decl-A':>8}{'med.len':>8}{'p50ms':>8}{'p95ms':>8}"
    lines = [f"questions: {n_qa} answerable, {n_un} unanswerable", head, "-" * len(head)]
    for r in reports:
        lines.append(
            f"{r.label:<15}{r.hit1:>7.3f}{r.hit3:>7.3f}{r.hit5:>7.3f}{r.mrr:>7.3f}"
            f"{r.declined_unanswerable:>8.2f}{r.declined_answerable:>8.2f}{r.median_passage:>8.0f}"
            f"{r.p50_ms:>8.1f}{r.p95_ms:>8.1f}"
        )
    if verbose:
        for r in reports:
            lines.append(f"{r.label} misses: {' '.join(r.misses)}")
    return "\n".join(lines)
