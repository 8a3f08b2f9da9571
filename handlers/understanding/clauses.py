"""How :mod:`handlers.understanding.rules` reads a message: clauses and the marks on them.

The normalised text is cut into clauses at punctuation and spaces, every group of the vocabulary
is found in one pass (:func:`scan_text`), and each clause is marked framed, a question, anchored,
stale, worried, generic or a progress query (:func:`mark_clauses`). :func:`is_full` then says
whether a term reports something that happened. Steps 1 to 4 of the rules' module docstring
explain each mark; the scores built on them are in :mod:`handlers.understanding.rules`.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from ..pii import mask_pii
from .vocabulary import Hit, Vocabulary

# Clause separators: punctuation (after NFKC, so full-width forms are ASCII) and whitespace.
_CLAUSE_RE = re.compile(r"[^,.!?;:~、。\s…\"'“”‘’()\[\]【】《》]+")
# A negator right before a term in its clause, with at most two light words in between.
_NEGATION_RE = re.compile(
    r"(?:没有|没得|莫得|冇|并没有|并没|从没|从来没|从未|还没有|还没|不是|不用|不会|不要|不至于|不算|没|不|未|无|别)"
    r"(?:有|是|再|被|要|用|会|曾|太|啥|什么|怎么|咋|得|到|在|也|都|算|过|遭|受|人){0,2}$"
)
_SELF_RE = re.compile(r"(?:我|俺|咱)(?:家|们|们家)?(?:是|属于|为|也是|就是)[^,。!?\s]{0,8}$")
_PERFECTIVE_RE = re.compile(r"^[^,。!?\s]{0,2}?(?:了|过|啦|咯|掉)")
CJK_RE = re.compile(r"[\u4e00-\u9fff]")


@dataclass
class Clause:
    start: int
    end: int
    framed: bool = False
    question: bool = False
    anchored: bool = False
    stale: bool = False
    worried: bool = False
    generic: bool = False
    progress: bool = False


@dataclass
class Scan:
    text: str
    clauses: list[Clause]
    starts: list[int]
    hits: dict[str, list[Hit]] = field(default_factory=dict)

    def clause_of(self, pos: int) -> Clause:
        i = bisect.bisect_right(self.starts, pos) - 1
        return self.clauses[max(i, 0)]


def scan_text(text: str, vocab: Vocabulary) -> Scan:
    clauses = [Clause(m.start(), m.end()) for m in _CLAUSE_RE.finditer(text)] or [Clause(0, len(text))]
    scan = Scan(text, clauses, [c.start for c in clauses])
    scan.hits = vocab.scan(text)
    # A plea (咋办, 怎么办) is not an interrogative: drop the 怎么 inside 怎么办.
    questions = scan.hits.pop("question", [])
    pleas = [h for h in questions if h.term.key == "plea"]
    scan.hits["plea"] = pleas
    scan.hits["asking"] = [
        h
        for h in questions
        if h.term.key != "plea" and not any(p.start < h.end and h.start < p.end for p in pleas)
    ]
    return scan


def is_negated(scan: Scan, hit: Hit) -> bool:
    clause = scan.clause_of(hit.start)
    return bool(_NEGATION_RE.search(scan.text[clause.start : hit.start]))


def is_perfective(scan: Scan, hit: Hit) -> bool:
    clause = scan.clause_of(hit.start)
    return bool(_PERFECTIVE_RE.match(scan.text[hit.end : clause.end]))


def mark_clauses(scan: Scan) -> None:
    def mark(group: str, attr: str) -> None:
        for h in scan.hits.get(group, ()):
            setattr(scan.clause_of(h.start), attr, True)

    mark("frame", "framed")
    mark("asking", "question")
    mark("stale", "stale")
    # Long past (去年, 前年 …) carries forward to the following clauses until a recent marker
    # (昨天, 现在, 又 …): "前年从房上摔下来 腰摔断了 现在瘫在炕上".
    # Within one clause a recent marker wins: "之前住过院 现在又住院了", "刚做了手术".
    recent = {id(scan.clause_of(h.start)) for h in scan.hits.get("recent", ())}
    # A completion marker (丧事办完, 都过去了) makes everything before it past as well.
    done = [h.start for h in scan.hits.get("stale", ()) if h.term.key == "done"]
    if done:
        for clause in scan.clauses:
            if clause.start <= max(done):
                clause.stale = True
    carrying = False
    for clause in scan.clauses:
        if id(clause) in recent:
            carrying = False
        elif clause.stale:
            carrying = True
        clause.stale = carrying
    mark("worry", "worried")
    for h in scan.hits.get("generic", ()):
        clause = scan.clause_of(h.start)
        # 我家是监测户 / 我是陵川县的脱贫户: the sender describing themselves, not "households" in general.
        if _SELF_RE.search(scan.text[clause.start : h.start]):
            clause.anchored = True
        else:
            clause.generic = True
    mark("progress", "progress")
    mark("person", "anchored")
    mark("time", "anchored")
    for h in scan.hits.get("hardship", ()):
        clause = scan.clause_of(h.start)
        if not clause.generic and not is_negated(scan, h):
            clause.anchored = True


def is_full(scan: Scan, hit: Hit) -> bool:
    """True when the term reports something that happened (see the module docstring, step 4)."""
    clause = scan.clause_of(hit.start)
    if clause.framed or clause.progress or is_negated(scan, hit):
        return False
    if clause.question and not clause.anchored and not is_perfective(scan, hit):
        return False
    return True


def join_hits(hits: list[Hit]) -> str:
    return "、".join(dict.fromkeys(h.text for h in hits))


def rest_of(scan: Scan, groups: tuple[str, ...]) -> str:
    """The text with every hit of ``groups`` removed."""
    keep = [True] * len(scan.text)
    for group in groups:
        for h in scan.hits.get(group, ()):
            keep[h.start : h.end] = [False] * (h.end - h.start)
    return "".join(ch for ch, k in zip(scan.text, keep, strict=True) if k)


def greeting_only(scan: Scan) -> bool:
    if not scan.hits.get("greeting"):
        return False
    return not re.sub(r"[\W_]+", "", rest_of(scan, ("greeting", "greeting_filler", "filler")))


def filler_only(scan: Scan) -> bool:
    return len(CJK_RE.findall(rest_of(scan, ("filler",)))) < 2


def question_text(scan: Scan, asking: list[Hit], risk_hits: list[Hit]) -> str:
    """The clauses that ask something, with the risk words of the rest prepended for context."""
    clauses: list[Clause] = []
    for h in asking:
        c = scan.clause_of(h.start)
        if c not in clauses:
            clauses.append(c)
    # A bare "多少" needs the clause before it ("住院了 能报多少").
    parts = [scan.text[c.start : c.end] for c in clauses]
    inside = [h for h in risk_hits if any(c.start <= h.start < c.end for c in clauses)]
    if not inside:
        context = list(dict.fromkeys(h.text for h in risk_hits))
        parts = context + parts
    return mask_pii(" ".join(parts))
