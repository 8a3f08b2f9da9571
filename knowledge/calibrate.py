"""Fit the answerability model on the project's own labelled questions.

``data/calibration.jsonl`` holds questions written for this purpose (not the evaluation
samples): answerable ones with the passage that answers them, and unanswerable ones of the
kinds users send -- off-topic, other provinces, personal records, and policy details the plans
do not contain (amounts, dates, rates). For every question and every ranking method, the
method ranks passages and :func:`knowledge.answerability.features` describes the ranking; a
class-balanced logistic regression is fitted on the questions the hard rules let through, and
the threshold is the highest one that still declines at most 4 % of the answerable questions.
The models are written to ``data/answerability.json``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from knowledge.answerability import FEATURE_NAMES, Calibration, fit, save_calibrations
from knowledge.evaluate import passage_hits, read_jsonl

__all__ = ["run", "collect", "METHODS"]

MAX_DECLINED_ANSWERABLE = 0.04
METHODS = ("weighted", "rrf", "bm25", "dense")


def _default_data() -> Path:
    return Path(str(resources.files("knowledge") / "data" / "calibration.jsonl"))


def collect(kb, rows: list[dict[str, object]], method: str = "weighted"):
    """For each row: ``(row, features or None when a hard rule declines it, hit rank or None)``."""
    out = []
    for row in rows:
        q, ranking = kb.rank(str(row["question"]), row.get("region"), method=method)
        rank = None
        if row.get("answerable"):
            for r, i in enumerate(ranking.order[:5], 1):
                p = kb.data.passages[i]
                if passage_hits(p.doc, p.text, row):
                    rank = r
                    break
        x = None if kb.rule_decline(q) or not ranking.order else kb.features(q, ranking)
        out.append((row, x, rank))
    return out


def _threshold(model: Calibration, xs: list[list[float]], ys: list[int]) -> float:
    probs = [model.probability(x) for x in xs]
    n_ans = sum(ys)
    best = min(probs, default=0.5)
    for t in sorted(set(probs)):
        declined = sum(1 for p, y in zip(probs, ys, strict=True) if y == 1 and p < t)
        if declined <= MAX_DECLINED_ANSWERABLE * n_ans:
            best = t
    # Halfway to the next lower probability, for a margin on unseen questions.
    lower = [p for p in probs if p < best]
    return (best + max(lower)) / 2 if lower else best


def fit_method(kb, rows, method: str) -> tuple[Calibration, str]:
    samples = collect(kb, rows, method)
    xs = [x for _, x, _ in samples if x is not None]
    ys = [1 if row.get("answerable") else 0 for row, x, _ in samples if x is not None]
    model = fit(xs, ys)
    model.threshold = _threshold(model, xs, ys)
    model.model = str(kb.data.manifest.get("model"))
    model.fitted_on = f"{len(rows)} calibration questions, {method} ranking"
    answerable = [(row, rank) for row, _, rank in samples if row.get("answerable")]
    n = max(1, len(answerable))
    hit1 = sum(1 for _, r in answerable if r == 1) / n
    hit3 = sum(1 for _, r in answerable if r is not None and r <= 3) / n
    dec_a = sum(
        1
        for row, x, _ in samples
        if row.get("answerable") and (x is None or model.probability(x) < model.threshold)
    )
    unans = [(row, x) for row, x, _ in samples if not row.get("answerable")]
    dec_u = sum(1 for _, x in unans if x is None or model.probability(x) < model.threshold)
    weights = ", ".join(f"{name}={w:+.2f}" for name, w in zip(FEATURE_NAMES, model.weights, strict=True))
    report = (
        f"{method:<9} hit@1 {hit1:.3f} hit@3 {hit3:.3f} | threshold {model.threshold:.3f}: declines "
        f"{dec_u}/{len(unans)} unanswerable, {dec_a}/{len(answerable)} answerable | {weights}"
    )
    return model, report


def run(kb, data_path: str | None = None, out_path: str | None = None) -> str:
    """Fit every method's model, write the calibration file, return a short report."""
    rows = read_jsonl(data_path or _default_data())
    models, lines = {}, []
    for method in METHODS:
        model, report = fit_method(kb, rows, method)
        models[method] = model
        lines.append(report)
    target = save_calibrations(models, Path(out_path) if out_path else None)
    kb.calibrations = models
    lines.append(f"written to {target}")
    return "\n".join(lines)
