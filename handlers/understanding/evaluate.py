"""Figures for the intake bars: report-vs-not accuracy, urgent recall/precision, risk-type micro-F1.

Each gold line is ``{"id", "text", "risk_types", "urgent", "is_report"}``. Urgency and risk types
are scored on every line: a line predicted as not a report predicts no risk types and no urgency.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .rules import Understanding, classify

__all__ = ["Figures", "evaluate", "read_jsonl"]


@dataclass
class Figures:
    n: int = 0
    intent_correct: int = 0
    urgent_tp: int = 0
    urgent_fp: int = 0
    urgent_fn: int = 0
    risk_tp: int = 0
    risk_fp: int = 0
    risk_fn: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)

    @staticmethod
    def _ratio(a: int, b: int) -> float:
        return a / b if b else 1.0

    @property
    def intent_accuracy(self) -> float:
        return self._ratio(self.intent_correct, self.n)

    @property
    def urgent_recall(self) -> float:
        return self._ratio(self.urgent_tp, self.urgent_tp + self.urgent_fn)

    @property
    def urgent_precision(self) -> float:
        return self._ratio(self.urgent_tp, self.urgent_tp + self.urgent_fp)

    @property
    def risk_f1(self) -> float:
        p = self._ratio(self.risk_tp, self.risk_tp + self.risk_fp)
        r = self._ratio(self.risk_tp, self.risk_tp + self.risk_fn)
        return 2 * p * r / (p + r) if p + r else 0.0

    @staticmethod
    def percentile(values: list[float], q: float) -> float:
        if not values:
            return 0.0
        xs = sorted(values)
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    def report(self) -> str:
        lines = [
            f"lines: {self.n}",
            f"intent accuracy (report vs not): {self.intent_accuracy:.3f}",
            f"urgent recall: {self.urgent_recall:.3f} ({self.urgent_tp}/{self.urgent_tp + self.urgent_fn})",
            f"urgent precision: {self.urgent_precision:.3f} ({self.urgent_tp}/{self.urgent_tp + self.urgent_fp})",
            f"risk-type micro-F1: {self.risk_f1:.3f} (tp {self.risk_tp}, fp {self.risk_fp}, fn {self.risk_fn})",
            f"latency per message (wall, {len(self.latencies_ms)} calls): p50 {self.percentile(self.latencies_ms, 0.5):.3f} ms,"
            f" p95 {self.percentile(self.latencies_ms, 0.95):.3f} ms",
            f"latency per message (CPU): p50 {self.percentile(self.cpu_ms, 0.5):.3f} ms,"
            f" p95 {self.percentile(self.cpu_ms, 0.95):.3f} ms",
            f"misclassified: {len(self.errors)}",
        ]
        for e in self.errors:
            lines.append("  " + json.dumps(e, ensure_ascii=False))
        return "\n".join(lines)


def read_jsonl(lines: Iterable[str]) -> list[dict]:
    rows = []
    for i, line in enumerate(lines, start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"line {i}: not JSON ({exc.msg})") from None
    return rows


def evaluate(
    rows: Iterable[dict], classifier: Callable[[str], Understanding] = classify, *, timing_passes: int = 5
) -> Figures:
    """Score ``classifier`` on gold rows.

    Latency is taken over ``timing_passes`` passes of the rows (a small sample would otherwise let
    one scheduling hiccup set the p95), as wall-clock and as this thread's CPU time.
    """
    rows = list(rows)
    fig = Figures()
    for _ in range(max(1, timing_passes)):
        for row in rows:
            wall, cpu = time.perf_counter(), time.thread_time()
            classifier(row["text"])
            fig.cpu_ms.append((time.thread_time() - cpu) * 1000)
            fig.latencies_ms.append((time.perf_counter() - wall) * 1000)
    for row in rows:
        u = classifier(row["text"])
        fig.n += 1
        gold_report = bool(row.get("is_report"))
        gold_urgent = bool(row.get("urgent"))
        gold_risks = set(row.get("risk_types") or [])
        pred_risks = {r.value for r in u.risk_types} if u.is_report else set()
        fig.intent_correct += u.is_report == gold_report
        fig.urgent_tp += u.urgent and gold_urgent
        fig.urgent_fp += u.urgent and not gold_urgent
        fig.urgent_fn += gold_urgent and not u.urgent
        fig.risk_tp += len(gold_risks & pred_risks)
        fig.risk_fp += len(pred_risks - gold_risks)
        fig.risk_fn += len(gold_risks - pred_risks)
        wrong = []
        if u.is_report != gold_report:
            wrong.append("intent")
        if u.urgent != gold_urgent:
            wrong.append("urgent")
        if pred_risks != gold_risks:
            wrong.append("risk_types")
        if wrong:
            fig.errors.append(
                {
                    "id": row.get("id"),
                    "wrong": wrong,
                    "text": row["text"],
                    "gold": {
                        "is_report": gold_report,
                        "urgent": gold_urgent,
                        "risk_types": sorted(gold_risks),
                    },
                    "got": {"intent": u.intent.value, "urgent": u.urgent, "risk_types": sorted(pred_risks)},
                    "reasons": list(u.reasons),
                }
            )
    return fig
