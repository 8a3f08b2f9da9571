"""Policy clauses shown beside a case: the knowledge base searched with words for each risk type.

A missing, stale or broken index never breaks the case page: it shows a short note instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import triage_texts as T
from ..context import Context

#: Words handed to the knowledge module for the clauses shown beside a case of each risk type.
RISK_TERMS: dict[str, list[str]] = {
    "illness": ["因病", "医疗救助", "大病保险", "先诊疗后付费", "医疗保障"],
    "disability": ["因残", "残疾人", "两项补贴", "康复"],
    "education": ["因学", "教育资助", "雨露计划", "控辍保学"],
    "disaster": ["因灾", "自然灾害", "临时救助", "灾后恢复"],
    "accident": ["意外事故", "临时救助", "救助"],
    "industry_failure": ["产业帮扶", "小额信贷", "产业发展"],
    "unemployment": ["就业帮扶", "公益岗位", "稳岗就业"],
    "labor_shortage": ["缺劳动力", "低保", "兜底保障", "特困供养"],
    "housing": ["住房安全", "危房改造"],
    "water": ["饮水安全", "农村供水"],
    "other": ["防止返贫", "监测帮扶"],
}


@dataclass
class Clause:
    title: str
    section: str
    text: str
    source: str


def _hits(kb, terms: list[str], county: str | None, k: int):
    """Passages for ``terms``, preferring the case's own county and province when the index can."""
    if county:
        try:
            return kb.search(" ".join(terms), region=county, k=k).passages
        except Exception:  # an index without region preference: fall back to the plain look-up
            pass
    return kb.clauses_for(terms, k=k)


def clauses_for(ctx: Context, risk_types: list[str], county: str | None = None) -> tuple[list[Clause], str]:
    """At most six clauses for the case's risk types, and a note when there are none."""
    codes = risk_types or ["other"]
    try:
        kb = ctx.kb()
        if kb is None:
            return [], T.CLAUSES_UNAVAILABLE
        seen: set[tuple[str, int]] = set()
        out: list[Clause] = []
        for code in codes:
            for hit in _hits(kb, RISK_TERMS.get(code, [code]), county, 2) or []:
                key = (getattr(hit, "doc", ""), getattr(hit, "start", 0))
                if key in seen:
                    continue
                seen.add(key)
                source = "　".join(
                    x for x in (getattr(hit, "issuer", ""), getattr(hit, "doc_no", ""), getattr(hit, "date", "")) if x
                )
                out.append(Clause(getattr(hit, "title", ""), getattr(hit, "section", ""), getattr(hit, "text", ""), source))
        return out[:6], ("" if out else T.CLAUSES_NONE)
    except Exception:  # a missing, stale or broken index must not break the case page
        return [], T.CLAUSES_UNAVAILABLE
