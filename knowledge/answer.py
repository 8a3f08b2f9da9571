"""Compose the WeChat reply: the best passage quoted verbatim, its citation, one supporting
passage when it adds something, and the hint for "更多" -- within WeChat's reply limit."""

from __future__ import annotations

from typing import Protocol

from knowledge.hits import Answer, Hit, SearchResult
from knowledge.spans import check_runs, text_of_runs

__all__ = ["compose", "verified_quote", "citation", "REPLY_LIMIT_BYTES"]

# WeChat truncates passive text replies at 2,048 bytes; keep a margin for the client.
REPLY_LIMIT_BYTES = 2000
MORE_HINT = "回复“更多”查看下一条"
NOT_FOUND = (
    "抱歉，现有政策文件中没有找到能回答这个问题的内容。"
    "您可以换个说法再问，或回复“申报”反映困难，也可以直接联系村干部。"
)
PERSONAL = (
    "政策文件里没有个人的办理记录。查询自己的申报进度请回复“进度”，其他个人情况请联系村干部或帮扶责任人。"
)
NO_MORE = "没有更多相关条文了。"
# "更多" pages through at most this many passages, and only while they stay close to the best.
MAX_PASSAGES = 6
RELEVANT_FRACTION = 0.6


class Sources(Protocol):
    """Where passages are quoted from: a :class:`~knowledge.base.KnowledgeBase`."""

    def source(self, doc: str) -> str:
        """The original text of document ``doc``."""
        ...


def verified_quote(kb: Sources, hit: Hit) -> str:
    """The passage as it will be quoted, after checking it against the source file.

    A clause is quoted as its repaired text, which is made only of source runs inside
    ``[start, end)``; a table row is quoted as its rendered row, each cell a source run.
    """
    source = kb.source(hit.doc)
    assert source[hit.start : hit.end] == hit.text, "passage text is not the source slice"
    if hit.kind == "table_row":
        for s, n in hit.runs:
            assert hit.start <= s and s + n <= hit.end and source[s : s + n] in hit.display, (
                "table cell not in source"
            )
        return hit.display
    assert check_runs(source, hit.runs, hit.start, hit.end, hit.display), "quote is not made of the source"
    return text_of_runs(source, hit.runs)


def citation(hit: Hit) -> str:
    """《title》 section path, issuer, date (and document number when there is one)."""
    parts = [f"《{hit.title}》"]
    if hit.section:
        parts.append(hit.section)
    tail = "，".join(x for x in (hit.issuer, hit.doc_no or "", hit.date) if x)
    return f"{' '.join(parts)}（{tail}）"


def _fits(text: str) -> bool:
    return len(text.encode("utf-8")) <= REPLY_LIMIT_BYTES


def _trim_to(text: str, budget: int) -> str:
    """Cut ``text`` to at most ``budget`` UTF-8 bytes, ending with an ellipsis if cut."""
    if len(text.encode("utf-8")) <= budget:
        return text
    out = text
    while out and len((out + "……").encode("utf-8")) > budget:
        out = out[:-1]
    return out + "……"


def _adds_something(first: Hit, second: Hit) -> bool:
    if second.doc == first.doc and second.start < first.end and first.start < second.end:
        return False  # an overlapping window of the same clause
    a, b = set(first.display), set(second.display)
    return len(b - a) >= 0.3 * max(1, len(b))


def compose(kb: Sources, question: str, res: SearchResult, offset: int = 0) -> Answer:
    """Build the :class:`~knowledge.hits.Answer` for a search result."""
    if not res.answerable:
        text = PERSONAL if res.reason == "personal" else NOT_FOUND
        return Answer(text=text, answerable=False, passages=[], next_offset=None)
    best = res.passages[0].score if res.passages else 0.0
    relevant = []
    for h in res.passages[:MAX_PASSAGES]:
        if best > 0 and h.score < RELEVANT_FRACTION * best:
            break
        relevant.append(h)
    hits = relevant[offset:]
    if not hits:
        return Answer(text=NO_MORE, answerable=True, passages=[], next_offset=None)
    first = hits[0]
    quote = verified_quote(kb, first)
    used = [first]
    header = "根据" + citation(first) + "：" if offset == 0 else "下一条，" + citation(first) + "："
    body = f"{header}\n“{quote}”"
    nxt = offset + 1
    if offset == 0 and len(hits) > 1 and _adds_something(first, hits[1]):
        second = hits[1]
        extra = f"\n\n另见{citation(second)}：\n“{verified_quote(kb, second)}”"
        if _fits(body + extra + "\n\n" + MORE_HINT):
            body += extra
            used.append(second)
            nxt = offset + 2
    has_more = len(relevant) > nxt
    tail = f"\n\n{MORE_HINT}" if has_more else ""
    if not _fits(body + tail):
        budget = REPLY_LIMIT_BYTES - len((header + "\n“”" + tail).encode("utf-8"))
        body = f"{header}\n“{_trim_to(quote, budget)}”"
        used, nxt = [first], offset + 1
        has_more = len(relevant) > nxt
        tail = f"\n\n{MORE_HINT}" if has_more else ""
    text = body + tail
    assert _fits(text)
    return Answer(text=text, answerable=True, passages=used, next_offset=nxt if has_more else None)
