"""Cut repaired documents into passages that keep their heading path and source offsets.

Each numbered clause ("4.夯实医疗救助托底保障。…", "（一）加强组织领导。…") is one unit,
together with the unnumbered paragraphs that continue it; under a heading-only line each
paragraph is a unit of its own. Units longer than :data:`MAX_CHARS` are split on sentence
boundaries into windows that overlap by one short sentence, each keeping the unit's heading
path. Flattened indicator tables become one passage per row (:mod:`knowledge.tables`), and
footnotes ("[1] 其中“2”指…") are attached to the clause that cites them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from knowledge.headings import Heading, match_heading
from knowledge.passage import Passage
from knowledge.repair import Block, is_part_title
from knowledge.spans import Span
from knowledge.tables import table_passages

__all__ = ["Passage", "segment", "SEGMENT_VERSION", "MAX_CHARS", "TARGET_CHARS"]

SEGMENT_VERSION = "4"

# A unit up to MAX_CHARS stays whole; longer ones are cut into windows of about TARGET_CHARS.
MAX_CHARS = 300
TARGET_CHARS = 200
# A sentence this short or shorter is repeated at the head of the next window (overlap).
OVERLAP_CHARS = 90
MIN_TAIL = 60

_SENT_END = re.compile(r"[。！？!?；;](?:[”’」』）)]*)|\n")
_FOOTNOTE = re.compile(r"\[(\d{1,2})\]")


@dataclass
class _Frame:
    level: float
    label: str
    title: str
    number: int | None
    kind: str


@dataclass
class _State:
    doc: str
    src: str
    multi_part: bool
    stack: list[_Frame] = field(default_factory=list)
    unit: list[Span] = field(default_factory=list)
    unit_kind: str = "paragraph"
    unit_frames: list[_Frame] = field(default_factory=list)
    out: list[Passage] = field(default_factory=list)
    seen_heading: bool = False


def _section(frames: list[_Frame], multi_part: bool) -> str:
    labels = []
    for f in frames:
        if f.kind == "part":
            if multi_part:
                labels.append(f.title)
        else:
            labels.append(f.label)
    return " ".join(labels)


def _heading_path(frames: list[_Frame], multi_part: bool) -> str:
    parts = []
    for f in frames:
        if f.kind == "part":
            if multi_part:
                parts.append(f.title)
        elif f.title:
            parts.append(
                f"{f.label}{f.title}"
                if f.kind not in ("chapter", "section", "box")
                else f"{f.label} {f.title}"
            )
        else:
            parts.append(f.label)
    return " › ".join(parts)


def _sentences(span: Span) -> list[Span]:
    pieces, last = [], 0
    for m in _SENT_END.finditer(span.text):
        if m.end() > last:
            pieces.append(span[last : m.end()])
            last = m.end()
    if last < len(span):
        pieces.append(span[last:])
    out = []
    for p in pieces:
        p = p.strip()
        if not p:
            continue
        if len(p) > MAX_CHARS:
            out.extend(_split_long_sentence(p))
        else:
            out.append(p)
    return out


def _split_long_sentence(span: Span) -> list[Span]:
    """Cut an over-long sentence at commas into pieces of about TARGET_CHARS."""
    cuts = [m.end() for m in re.finditer(r"[，,、]", span.text)]
    pieces, last = [], 0
    for c in cuts:
        if c - last >= TARGET_CHARS:
            pieces.append(span[last:c])
            last = c
    pieces.append(span[last:])
    return [p for p in pieces if p]


def chunk(span: Span) -> list[Span]:
    """Split a unit into sentence windows; short units come back whole."""
    span = span.strip()
    if len(span) <= MAX_CHARS:
        return [span] if span else []
    sents = _sentences(span)
    windows: list[list[Span]] = []
    cur: list[Span] = []
    size = 0
    for s in sents:
        closes = size + len(s) > MAX_CHARS or (size + len(s) > TARGET_CHARS and size >= MIN_TAIL)
        if cur and closes:
            windows.append(cur)
            tail = cur[-1]
            cur = [tail] if len(tail) <= OVERLAP_CHARS and len(cur) > 1 else []
            size = sum(len(x) for x in cur)
        cur.append(s)
        size += len(s)
    if cur:
        if windows and size < MIN_TAIL and len(cur) == 1:
            windows[-1].append(cur[0])
        elif not (windows and len(cur) == 1 and cur[0] is windows[-1][-1]):
            windows.append(cur)
    out = []
    for w in windows:
        joined = w[0]
        for s in w[1:]:
            joined = _join(joined, s)
        out.append(joined)
    return out


def _join(a: Span, b: Span) -> Span:
    """Concatenate two spans of one source, dropping any overlap."""
    if b.pos and a.pos and b.pos[0] <= a.pos[-1]:
        k = 0
        while k < len(b) and b.pos[k] <= a.pos[-1]:
            k += 1
        b = b[k:]
    return a + b


def _unit_span(st: _State) -> Span:
    span = st.unit[0]
    for nxt in st.unit[1:]:
        nl = st.src.find("\n", span.end)
        if 0 <= nl < nxt.start:
            span = span + Span("\n", (nl,))
        span = span + nxt
    return span


def _flush(st: _State) -> None:
    if not st.unit:
        return
    frames = st.unit_frames
    section = _section(frames, st.multi_part)
    heading = _heading_path(frames, st.multi_part)
    context = heading.replace(" › ", " ")
    label = frames[-1].label if frames and st.unit_kind == "clause" else ""
    for piece in chunk(_unit_span(st)):
        st.out.append(
            Passage(
                doc=st.doc,
                kind=st.unit_kind,
                section=section,
                heading=heading,
                text=st.src[piece.start : piece.end],
                start=piece.start,
                end=piece.end,
                display=piece.text,
                runs=piece.runs(),
                context=context,
                label=label,
            )
        )
    st.unit = []


def _accept_heading(st: _State, h: Heading) -> bool:
    """Reject numbered labels that break their sibling sequence (likely body text)."""
    if h.kind in ("chapter", "section", "part", "box", "circled"):
        return True
    for f in reversed(st.stack):
        if f.level < h.level:
            break
        if f.level == h.level and f.kind == h.kind and f.number is not None and h.number is not None:
            return h.number == 1 or h.number > f.number
    return True


def _push(st: _State, frame: _Frame) -> None:
    while st.stack and st.stack[-1].level >= frame.level:
        st.stack.pop()
    st.stack.append(frame)


def _attach_footnote(st: _State, span: Span, number: str) -> None:
    marker = f"[{number}]"
    ref = next((p for p in st.out if marker in p.display and p.kind != "footnote"), None)
    body = span.strip()
    section = f"{ref.section} 注{marker}".strip() if ref else f"注{marker}"
    heading = ref.heading if ref else ""
    context = ""
    if ref:
        at = ref.display.index(marker)
        lo = max(ref.display.rfind("。", 0, at) + 1, 0)
        hi = ref.display.find("。", at)
        context = f"{heading.replace(' › ', ' ')} {ref.display[lo : hi if hi > 0 else None]}"
    st.out.append(
        Passage(
            doc=st.doc,
            kind="footnote",
            section=section,
            heading=heading,
            text=st.src[body.start : body.end],
            start=body.start,
            end=body.end,
            display=body.text,
            runs=body.runs(),
            context=context,
            label=f"注{marker}",
        )
    )


def _is_sub_title(text: str) -> bool:
    return is_part_title(text) and "印发" not in text and not text.endswith("通知")


def segment(doc: str, src: str, blocks: list[Block]) -> list[Passage]:
    """Turn one document's repaired blocks into passages (document order)."""
    parts = {b.span.text for b in blocks if b.span is not None and _is_sub_title(b.span.text)}
    st = _State(doc=doc, src=src, multi_part=len(parts) >= 2)
    for block in blocks:
        if block.table is not None:
            _flush(st)
            st.out.extend(
                table_passages(doc, src, block.table, list(st.stack), _section, _heading_path, st.multi_part)
            )
            continue
        span = block.span
        assert span is not None
        text = span.text
        fn = _FOOTNOTE.match(text)
        if fn and st.seen_heading:
            _flush(st)
            _attach_footnote(st, span[fn.end() :], fn.group(1))
            continue
        if is_part_title(text):
            _flush(st)
            if not _is_sub_title(text):
                # The issuing notice ("关于印发《…》的通知") belongs to the front matter.
                st.unit, st.unit_kind, st.unit_frames = [span], "front", []
                _flush(st)
                continue
            st.stack = [_Frame(0, text, text, None, "part")]
            st.seen_heading = True
            continue
        h = match_heading(text)
        if h is not None and _accept_heading(st, h):
            _flush(st)
            st.seen_heading = True
            _push(st, _Frame(h.level, h.label, h.title, h.number, h.kind))
            if h.inline:
                st.unit = [span]
                st.unit_kind = "clause"
                st.unit_frames = list(st.stack)
            continue
        if st.unit and st.unit_kind == "clause":
            st.unit.append(span)  # a paragraph continuing the numbered clause
            continue
        _flush(st)
        st.unit = [span]
        st.unit_kind = "paragraph" if st.seen_heading else "front"
        st.unit_frames = list(st.stack)
    _flush(st)
    return st.out
