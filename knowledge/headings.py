"""Heading recognition for Chinese government plan documents.

The numbering ladder these documents use, outermost first::

    第X部分 / 第X篇   level 0.5
    第X章             level 1
    第X节             level 2
    一、              level 3
    （一） / (一)     level 4
    专栏X / 专栏X-Y   level 4.5  (a box inside the current section)
    1. / 1、 / 1．    level 5
    （1） / (1)       level 6
    ①                 level 7

Matching is done on a width-normalised copy of the line (full-width digits, brackets and dots
folded to ASCII), so "（一）" and "(一)", "１．" and "1." are the same label.

The classic trap (RAGFlow hit it): body text that merely starts with a number -- "2025年，全县…",
"1.5倍…", "2.4∶1" -- is not a numbered heading. A numeric label must be followed by its
separator and then by text, never by another digit, a unit or a percent sign.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Heading", "match_heading", "normalise_width", "cn_to_int", "TERMINAL"]

CN_DIGITS = "零〇一二两三四五六七八九"
CN_NUMERAL = "零〇一二两三四五六七八九十百"

# Characters that close a sentence or a line; a line ending otherwise is incomplete.
TERMINAL = frozenset("。！？!?；;：:”’」』）)》】…")


def normalise_width(text: str) -> str:
    """Fold full-width ASCII and wide spaces to their narrow forms, keeping the length."""
    out = []
    for ch in text:
        code = ord(ch)
        if 0xFF01 <= code <= 0xFF5E:
            out.append(chr(code - 0xFEE0))
        elif ch in "\u3000\u2002\u2003\u00a0":
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def cn_to_int(numeral: str) -> int | None:
    """Parse a Chinese (or Arabic) numeral up to 999; None if it is not one."""
    if numeral.isdigit():
        return int(numeral)
    values = {c: i for i, c in enumerate("零一二三四五六七八九")}
    values.update({"〇": 0, "两": 2})
    total, current = 0, 0
    for ch in numeral:
        if ch in values:
            current = values[ch]
        elif ch == "十":
            total += (current or 1) * 10
            current = 0
        elif ch == "百":
            total += (current or 1) * 100
            current = 0
        else:
            return None
    return total + current


@dataclass(frozen=True, slots=True)
class Heading:
    """A recognised numbered heading or clause label at the start of a line.

    ``label`` is the canonical label ("第三章", "（二）", "4.", "专栏3-1"); ``number`` its
    ordinal; ``rest`` the text after the label (offset ``rest_at`` in the matched line);
    ``title`` the short title when there is one; ``inline`` is True when body text follows
    the title on the same line (a numbered clause rather than a heading-only line).
    """

    level: float
    kind: str
    label: str
    number: int | None
    rest_at: int
    title: str
    inline: bool


_PATTERNS: list[tuple[float, str, re.Pattern[str]]] = [
    (0.5, "part", re.compile(r"第([一二三四五六七八九十百零〇\d]{1,4})(部分|篇)\s*")),
    (1, "chapter", re.compile(r"第([一二三四五六七八九十百零〇\d]{1,4})章\s*")),
    (2, "section", re.compile(r"第([一二三四五六七八九十百零〇\d]{1,4})节\s*")),
    (4.5, "box", re.compile(r"专栏\s*(\d{1,2}(?:-\d{1,2})?)\s*")),
    (3, "cn", re.compile(r"([一二三四五六七八九十]{1,3})、\s*")),
    (4, "cn_paren", re.compile(r"\(([一二三四五六七八九十]{1,3})\)\s*")),
    (5, "num", re.compile(r"(\d{1,2})[.、](?![\d%])\s*")),
    (6, "num_paren", re.compile(r"\((\d{1,2})\)\s*")),
    (7, "circled", re.compile(r"([\u2460-\u2473])\s*")),
]

# After a label the text must start with something that can begin a title.
_BAD_AFTER = re.compile(r"[\d%.．、，,。）)]")
_TITLE_STOP = re.compile(r"[。：:；;]")
_MAX_TITLE = 40
_MAX_HEADING_LINE = 60


def _label(kind: str, raw: str) -> str:
    if kind == "chapter":
        return f"第{raw}章"
    if kind == "section":
        return f"第{raw}节"
    if kind == "part":
        return f"第{raw}部分"
    if kind == "box":
        return f"专栏{raw}"
    if kind == "cn":
        return f"{raw}、"
    if kind == "cn_paren":
        return f"（{raw}）"
    if kind == "num":
        return f"{raw}."
    if kind == "num_paren":
        return f"（{raw}）"
    return raw


def match_heading(line: str) -> Heading | None:
    """Recognise a numbered heading or clause label at the start of ``line``.

    ``line`` is one cleaned line or paragraph (no leading whitespace or markdown).
    Returns None for ordinary body text, including text that starts with a number.
    """
    norm = normalise_width(line)
    for level, kind, pattern in _PATTERNS:
        m = pattern.match(norm)
        if not m:
            continue
        rest = norm[m.end() :]
        if not rest.strip() and kind not in ("chapter", "section", "part", "box"):
            return None
        if rest and _BAD_AFTER.match(rest):
            return None
        if kind == "cn" and rest[:1] in CN_NUMERAL:
            return None  # "一、二级重度残疾人" is an enumeration inside a sentence
        if kind == "num" and re.match(r"(倍|万|亿|元|个|年|月|日|%|以上|以下)", rest):
            return None
        raw = m.group(1)
        number = cn_to_int(raw.split("-")[0]) if kind != "circled" else ord(raw) - 0x245F
        stop = _TITLE_STOP.search(rest)
        rest = line[m.end() :]  # titles keep the document's own punctuation
        if stop is None:
            inline = False
            title = rest.strip()
            if len(norm) > _MAX_HEADING_LINE and kind not in ("box",):
                # A long label-led line with no full stop is still a clause, not a heading.
                inline = True
                title = ""
        else:
            head = rest[: stop.start()].strip()
            tail = rest[stop.end() :].strip()
            inline = bool(tail)
            title = head if len(head) <= _MAX_TITLE else ""
        return Heading(
            level=level,
            kind=kind,
            label=_label(kind, raw),
            number=number,
            rest_at=m.end(),
            title=title,
            inline=inline,
        )
    return None
