"""Rule-based message understanding: report or question, which risk types, how urgent, and why.

How a message is read:

1. ID numbers and phones are masked and dropped (their digits are not words: the 120 inside an
   ID number is no ambulance). The text is normalised (NFKC, lower case), dialect aliases are
   applied (莫得 → 没得, 啷个 → 怎么), and it is cut into clauses at punctuation and spaces,
   because villagers separate thoughts with spaces ("房子昨晚塌了一间 娃没地方住").
2. Every group of the vocabulary table is found in one pass. A risk, urgency, hardship or report
   term is *negated* when a negator stands right before it in its clause (没有住院, 不是塌, 没被冲).
3. A clause is *framed* when it is conditional or merely "about" something (如果/万一/关于 …),
   *a question clause* when it holds an interrogative (怎么, 多少, 吗 …; a plea such as 咋办 or
   能不能帮帮 is not one, nor is the 啥 of 没啥收入), *stale* when the event is past (去年,
   前阵子, 做了手术; carried forward until a recent marker, and backward from 丧事办完),
   *worried* (怕, 担心).
4. A term counts as something that happened ("full") unless it is negated or framed, or it sits in
   a question clause without an anchor: a family word (我爸, 娃, 家里), a time word (昨晚, 前天),
   a perfective right after it (住院了), or a hardship phrase (交不起). So "怎么申报住院报销"
   only mentions 住院 as a topic, while "我爸住院能报多少" reports it. "我家是监测户" describes the
   sender; "监测户怎么认定" asks about households in general.
5. Scores: report = urgency 3 + explicit wish to report 3 + hardship 2 + the best risk term
   (1, a topic noun 0.5, an everyday activity such as 打工 0; +0.5 with a family word, +1 anchored
   in time or perfective); question = interrogative 2 + plea 1 + policy words (≤ 2) + framing 1
   + a generic subject 1. Progress queries and greetings are recognised first. A report needs 2.5
   (an adverse event told of one's own family: "我家猪死了一半"), or ≥ 1 and at least the question
   score. Backoff: a message with no question at all that tells of distress (伤, 断, 饿, 没钱 …) is a
   report too. A report that also holds an interrogative is flagged ``also_question``.
6. Urgent: a full urgency signal outside stale or worried clauses. A grave diagnosis (癌, 脑梗,
   查出) is urgent only when recent (昨天, 突然) or money has run out for it; a fear of imminent
   collapse (怕是要塌了) is urgent although worried.
7. Risk types: every type a full term names, as staff file them (an injury still in hospital is
   因意外事故 and 因病; 俩娃上学 adds 因学; funeral costs are 其他). A ``defer`` row gives way to a
   more specific type (瘫痪 to a named illness, 没收成 to a disaster); an everyday word inside a
   longer phrase of another type does not count (the 打工 of 出不去打工). With no term, single-
   character cues pick the type; with none of those the report is filed under 其他.

Every decision is recorded in ``reasons`` in Chinese, so staff can see why a case was flagged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from storage.enums import RiskType

from ..pii import mask_pii
from .clauses import (
    CJK_RE,
    Scan,
    filler_only,
    greeting_only,
    is_full,
    is_negated,
    is_perfective,
    join_hits,
    mark_clauses,
    question_text,
    scan_text,
)
from .vocabulary import Hit, Vocabulary, load_vocabulary, normalize

__all__ = ["Intent", "Understanding", "classify"]


class Intent(str, Enum):
    """What the sender wants."""

    REPORT = "report"
    QUESTION = "question"
    PROGRESS = "progress"
    GREETING = "greeting"
    OTHER = "other"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Understanding:
    """The classifier's reading of one message."""

    intent: Intent
    risk_types: tuple[RiskType, ...] = ()
    urgent: bool = False
    reasons: tuple[str, ...] = ()
    #: A report that also asks something: answer ``question_text`` as well as filing the case.
    also_question: bool = False
    #: What to send to the policy search (PII masked); set for questions and ``also_question``.
    question_text: str | None = None
    #: Risk types merely mentioned (e.g. the topic of a question); a hint for retrieval.
    topics: tuple[RiskType, ...] = ()
    report_score: float = 0.0
    question_score: float = 0.0

    @property
    def is_report(self) -> bool:
        return self.intent is Intent.REPORT

    def to_json(self) -> dict:
        """The batch contract's fields plus the explanation."""
        return {
            "intent": self.intent.value,
            "risk_types": [r.value for r in self.risk_types],
            "urgent": self.urgent,
            "also_question": self.also_question,
            "question_text": self.question_text,
            "reasons": list(self.reasons),
        }


# "How do I report …" is a question about reporting, not a report.
_ASKING_HOW_RE = re.compile(r"(?:怎么|怎样|如何|咋|哪里|在哪|能不能|可以|可不可以)[^,。!?\s]{0,2}$")
_PII_RUN_RE = re.compile(r"[0-9*]{7,}[Xx]?")

_URGENT_LABELS = {
    "medical": "就医",
    "collapse": "房屋倒塌或无处居住",
    "disaster": "灾害",
    "fire": "火灾",
    "death": "家人去世",
    "hunger": "断粮",
    "dropout": "辍学",
    "injury": "意外受伤",
    "water": "断水",
    "despair": "求救",
    "imminent": "房屋随时可能倒塌",
    "severe": "重病且无钱医治",
}

_RISK_ORDER = {r: i for i, r in enumerate(RiskType)}


def _risk_types(hits: list[Hit]) -> list[RiskType]:
    """Risk types of the given risk hits; a deferred match is dropped when its target is present.

    Every aspect a report names counts (a report of an injury that also says 还在医院 is 因意外事故
    and 因病; 俩娃上学 in a hardship report adds 因学), as staff file them.
    """
    strong = {h.term.key for h in hits if not h.term.defer}
    types = {RiskType(h.term.key) for h in hits if not (h.term.defer & strong)}
    return sorted(types, key=_RISK_ORDER.__getitem__)


def _cue_types(scan: Scan, reasons: list[str]) -> list[RiskType]:
    """When no term names a type, the most frequent single-character cues (摔 → 因意外事故,
    窑 → 住房安全) pick one; with no cue at all the report is filed under 其他."""
    counts: dict[str, list[Hit]] = {}
    for h in scan.hits.get("cue", ()):
        if not is_negated(scan, h):
            counts.setdefault(h.term.key, []).append(h)
    if not counts:
        return [RiskType.OTHER]
    best = max(len(v) for v in counts.values())
    types = sorted((RiskType(k) for k, v in counts.items() if len(v) == best), key=_RISK_ORDER.__getitem__)
    reasons.append("按字面线索推断：" + "；".join(f"{t.label}（{join_hits(counts[t.value])}）" for t in types))
    return types


def classify(text: str, *, vocabulary: Vocabulary | None = None) -> Understanding:
    """Read one message: intent, risk types, urgency, and the reasons for each.

    >>> u = classify("我爸脑梗住院了 押金交不起")
    >>> u.intent.value, [r.value for r in u.risk_types], u.urgent
    ('report', ['illness'], True)
    >>> classify("怎么申报住院报销").intent.value
    'question'
    """
    vocab = vocabulary or load_vocabulary()
    # ID numbers and phones carry no meaning here, and their digits must not be read as words
    # (the 120 inside an ID number is no ambulance): mask them, then drop the masked runs.
    norm = vocab.rewrite(normalize(_PII_RUN_RE.sub(" ", mask_pii(text or ""))).strip())
    if not norm:
        return Understanding(Intent.OTHER, reasons=("空消息",))
    scan = scan_text(norm, vocab)
    mark_clauses(scan)
    reasons: list[str] = []

    risk_hits = scan.hits.get("risk", [])
    # An everyday word inside a longer phrase of another type means that phrase: the 打工 of
    # 出不去打工 (缺劳动力) is not 因务工就业不稳.
    risk_hits = [
        h
        for h in risk_hits
        if not (
            h.term.neutral
            and any(
                o is not h and o.start <= h.start and h.end <= o.end and o.end - o.start > h.end - h.start
                for o in risk_hits
            )
        )
    ]
    full_risk = [h for h in risk_hits if is_full(scan, h)]
    mentioned = [h for h in risk_hits if not is_negated(scan, h) and not scan.clause_of(h.start).progress]
    negated = [h for h in risk_hits + scan.hits.get("urgent", []) if is_negated(scan, h)]
    if negated:
        reasons.append(f"否定，未计入：{join_hits(negated)}")

    # ---- report score
    report = 0.0
    urgent_hits: list[Hit] = []
    calm: list[Hit] = []
    hardship = [h for h in scan.hits.get("hardship", []) if is_full(scan, h)]
    hardship = [h for h in hardship if not scan.clause_of(h.start).generic]
    money_trouble = any(h.term.money for h in hardship)
    sudden = any(h.term.key == "sudden" for h in scan.hits.get("recent", ()))
    for h in scan.hits.get("urgent", []):
        if not is_full(scan, h):
            continue
        clause = scan.clause_of(h.start)
        # A grave diagnosis (癌, 脑梗, 查出) is sudden severe hardship when it is recent (昨天,
        # 突然) or money has run out for it; a known condition alone is a report, not an emergency.
        if h.term.key == "severe" and not (money_trouble or sudden):
            calm.append(h)
            continue
        # A worry about imminent collapse (怕是要塌了) is still urgent; other worries are not.
        muted = clause.stale or (clause.worried and h.term.key != "imminent")
        (calm if muted else urgent_hits).append(h)
    if urgent_hits:
        report += 3
    if calm:
        reasons.append(f"已过去、仅是担心或未到急需，不计紧急：{join_hits(calm)}")
    asks = [
        h
        for h in scan.hits.get("report_ask", [])
        if is_full(scan, h)
        and not scan.text.startswith("的", h.end)  # 我申报的事: a reference, not a wish
        and not _ASKING_HOW_RE.search(scan.text[scan.clause_of(h.start).start : h.start])
    ]
    if asks:
        report += 3
        reasons.append(f"申报意愿：{join_hits(asks)}")
    if hardship:
        report += 2
        reasons.append(f"困难表述：{join_hits(hardship)}")
    has_person = bool(scan.hits.get("person"))
    best = 0.0
    for h in full_risk:
        clause = scan.clause_of(h.start)
        timed = any(clause.start <= t.start < clause.end for t in scan.hits.get("time", ()))
        if h.term.neutral:  # 打工, 上学: names the type, proves no hardship
            continue
        score = (0.5 if h.term.topic else 1.0) + (0.5 if has_person else 0.0)
        score += 1.0 if (timed or is_perfective(scan, h)) else 0.0
        best = max(best, score)
    report += best

    # ---- question score
    asking = [h for h in scan.hits.get("asking", []) if not scan.clause_of(h.start).progress]
    pleas = scan.hits.get("plea", [])
    policy = scan.hits.get("policy", [])
    frames = scan.hits.get("frame", [])
    generic = scan.hits.get("generic", [])
    question = (2.0 if asking else 0.0) + (1.0 if pleas else 0.0)
    question += min(2, len({h.text for h in policy})) + (1.0 if frames else 0.0) + (1.0 if generic else 0.0)
    if asking:
        reasons.append(f"提问：{join_hits(asking)}")
    if pleas:
        reasons.append(f"求助语气：{join_hits(pleas)}")
    if policy:
        reasons.append(f"政策词：{join_hits(policy)}")
    if frames or generic:
        reasons.append(f"假设或泛指：{join_hits(frames + generic)}")

    def done(intent: Intent, **kw) -> Understanding:
        return Understanding(
            intent,
            reasons=tuple(reasons),
            topics=tuple(_risk_types(mentioned)),
            report_score=report,
            question_score=question,
            **kw,
        )

    # ---- decide
    progress = scan.hits.get("progress", [])
    if progress and report < 3:
        reasons.append(f"进度查询：{join_hits(progress)}")
        return done(Intent.PROGRESS)
    thanks = [h for h in scan.hits.get("greeting", ()) if "谢" in h.text or "感" in h.text]
    if greeting_only(scan) or (
        # 谢谢你们帮我家修房子: thanks with some words around it, but nothing to act on
        thanks and report == 0 and question == 0 and not risk_hits and not scan.hits.get("distress")
    ):
        reasons.append(f"问候：{join_hits(scan.hits['greeting'])}")
        return done(Intent.GREETING)

    # Backoff for phrasings the table does not know: a narrative with distress words and no
    # question at all ("老汉上山砍柴滚下来 肋骨断了三根") is someone telling of their trouble.
    narrative = False
    if report < 1 and question == 0 and not progress and not scan.hits.get("greeting"):
        distress = [h for h in scan.hits.get("distress", []) if not is_negated(scan, h)]
        if len(distress) >= 2 or (distress and len(CJK_RE.findall(norm)) >= 10):
            narrative = True
            reasons.append(f"叙述困难且无提问：{join_hits(distress)}")

    if narrative or report >= 2.5 or (report >= 1 and report >= question):
        types = _risk_types(full_risk) or _risk_types(mentioned) or _cue_types(scan, reasons)
        chosen = set(types)
        by_type: dict[RiskType, list[Hit]] = {}
        for h in full_risk or mentioned:
            rt = RiskType(h.term.key)
            if rt in chosen:
                by_type.setdefault(rt, []).append(h)
        risk_reasons = [f"{rt.label}：{join_hits(by_type[rt])}" for rt in types if rt in by_type]
        if types == [RiskType.OTHER] and not by_type:
            risk_reasons = ["其他：未见具体风险类别词"]
        for family in dict.fromkeys(h.term.key for h in urgent_hits):
            label = _URGENT_LABELS.get(family, family)
            risk_reasons.append(f"紧急（{label}）：{join_hits([h for h in urgent_hits if h.term.key == family])}")
        reasons[:0] = risk_reasons
        reasons.append(
            "判定：申报（未见提问的困难叙述）"
            if narrative
            else f"判定：申报（申报分 {report:g} ≥ 提问分 {question:g}）"
            if report >= question
            else f"判定：申报（申报分 {report:g} ≥ 2.5）"
        )
        also = bool(asking)
        return done(
            Intent.REPORT,
            risk_types=tuple(types),
            urgent=bool(urgent_hits),
            also_question=also,
            question_text=question_text(scan, asking, risk_hits) if also else None,
        )

    has_words = bool(CJK_RE.search(norm))
    if has_words and (
        question > 0 or risk_hits or len(CJK_RE.findall(norm)) >= 3 and not filler_only(scan)
    ):
        reasons.append(f"判定：提问（提问分 {question:g}，申报分 {report:g}）")
        return done(Intent.QUESTION, question_text=mask_pii(text.strip()))
    reasons.append("判定：其他（无可识别内容）")
    return done(Intent.OTHER)
