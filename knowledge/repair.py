"""Repair the artefacts of PDF/Word/web conversion, keeping exact source offsets.

What is repaired (all by deleting source characters, see :mod:`knowledge.spans`):

* paragraphs broken at page ends ("…全县经济实力显\\n\\n著增强…") are joined;
* a character or word repeated across the break ("服务\\n\\n务，", "（责\\n\\n责任单位",
  "社会主义思想\\n\\n主义思想的") is kept once;
* headings broken over two lines ("第五章 有序推进…成果同\\n乡村振兴有效衔接") are joined;
* stray page-break markers (form feeds, "- 12 -", "第3页", horizontal rules, web page chrome
  such as "A A A" / "分享:") are dropped;
* markdown heading marks and ``**`` emphasis are dropped; wide and stray spaces next to CJK
  characters are dropped.

Flattened tables are recognised here (one cell per line after a "序号" header) and handed on
whole as :class:`TableBlock` so the segmenter can rebuild their rows.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from knowledge.headings import TERMINAL, match_heading
from knowledge.spans import Span

__all__ = ["Block", "TableBlock", "repair", "REPAIR_VERSION"]

# Bump when the output of this module changes for the same input: the index records it.
REPAIR_VERSION = "3"

_STRIP = " \t\r\u2002\u2003\u3000\u00a0\ufeff\u200b\f"
_INNER_SPACE = " \t\u2002\u2003\u3000\u00a0\u200b"
_MARKDOWN_HEAD = re.compile(r"#{1,6}\s+")
_RULE = re.compile(r"[-*_=—]{3,}")
_PAGE_MARK = re.compile(
    r"(?:[-—–]\s*\d{1,3}\s*[-—–]|第\s*\d{1,3}\s*页(?:\s*[,，/]?\s*共\s*\d{1,3}\s*页)?|\d{1,3}\s*/\s*\d{1,3})"
)
# Web-page chrome left by "save as text" of a government site.
_CHROME = re.compile(
    r"(?:[A-Za-z](?:\s+[A-Za-z]){1,3}|分享[:：]?|打印|关闭|【打印】|【关闭】|字号[:：].*|返回顶部)"
)
_TITLE_SUFFIX = re.compile(r"(方案|规划|要点|意见|通知|办法|细则|计划)(（[^（）]{0,20}）)?$")
_OPENERS = "（(《"
_CLOSERS = "）)》"
_STARTS_CONTINUATION = set("，,、。；;：:）)》”’")


@dataclass
class TableBlock:
    """A flattened table: the raw lines from its "序号" header to its last row."""

    lines: list[tuple[int, int]]  # (start, end) of each raw line, end excludes "\n"
    tab_cells: bool  # True when every cell is a line starting with a tab


@dataclass
class Block:
    """One paragraph (``span``) or one table (``table``) in document order."""

    span: Span | None = None
    table: TableBlock | None = None
    line_count: int = 1
    notes: list[str] = field(default_factory=list)


def _is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf"


def _raw_lines(src: str) -> list[tuple[int, int]]:
    lines, start = [], 0
    for i, ch in enumerate(src):
        if ch == "\n":
            lines.append((start, i))
            start = i + 1
    lines.append((start, len(src)))
    return lines


def _clean_line(src: str, a: int, b: int) -> Span:
    """Line-level repairs: trim, markdown marks, emphasis, spaces next to CJK."""
    idx = list(range(a, b))
    while idx and src[idx[0]] in _STRIP:
        idx.pop(0)
    while idx and src[idx[-1]] in _STRIP:
        idx.pop()
    text = "".join(src[i] for i in idx)
    m = _MARKDOWN_HEAD.match(text)
    if m:
        idx = idx[m.end() :]
        text = text[m.end() :]
    keep = [True] * len(idx)
    for m in re.finditer(r"\*{2,}|_{2,}", text):
        for k in range(m.start(), m.end()):
            keep[k] = False
    idx = [i for i, k in zip(idx, keep, strict=True) if k]
    text = "".join(src[i] for i in idx)
    keep = [True] * len(idx)
    for k, ch in enumerate(text):
        if ch in _INNER_SPACE:
            left = text[k - 1] if k else ""
            right = text[k + 1] if k + 1 < len(text) else ""
            if (
                _is_cjk(left)
                or _is_cjk(right)
                or ch != " "
                or not left
                or not right
                or left in _INNER_SPACE
                or not right.isascii()
                or not left.isascii()
            ):
                keep[k] = False
    idx = [i for i, k in zip(idx, keep, strict=True) if k]
    span = Span.from_indices(src, idx).strip(_STRIP)
    return span


def _is_junk(text: str) -> bool:
    return bool(_RULE.fullmatch(text) or _PAGE_MARK.fullmatch(text) or _CHROME.fullmatch(text))


def _find_tables(src: str, lines: list[tuple[int, int]]) -> dict[int, TableBlock]:
    """Map the index of each table's first line to the table."""
    tables: dict[int, TableBlock] = {}
    i = 0
    while i < len(lines):
        a, b = lines[i]
        raw = src[a:b]
        if raw.strip(_STRIP) != "序号":
            i += 1
            continue
        tab_cells = raw.startswith("\t")
        j = _table_end(src, lines, i, tab_cells)
        if j - i >= 8:
            tables[i] = TableBlock(lines=lines[i:j], tab_cells=tab_cells)
            i = j
        else:
            i += 1
    return tables


def _table_end(src: str, lines: list[tuple[int, int]], first: int, tab_cells: bool) -> int:
    """Index one past the last line of the table that starts at ``first``."""
    if tab_cells:
        j = first
        while j < len(lines):
            raw = src[lines[j][0] : lines[j][1]]
            if raw.startswith("\t") or not raw.strip(_STRIP):
                j += 1
            else:
                break
        while j > first and not src[lines[j - 1][0] : lines[j - 1][1]].strip(_STRIP):
            j -= 1
        return j
    # Separator style: cells are separated by a line holding only a tab; a blank line that
    # does not follow such a separator ends a row. Each row after the header must start
    # with a number (or the table has ended).
    j, row_start, after_sep, header_done = first, first, False, False
    last_good = first
    while j < len(lines):
        raw = src[lines[j][0] : lines[j][1]]
        content = raw.strip(_STRIP)
        if content:
            if row_start == j and header_done and not re.fullmatch(r"\d{1,3}", content):
                break
            after_sep = False
        elif "\t" in raw:
            after_sep = True
        elif not after_sep:
            if j > row_start:
                header_done = True
                last_good = j
            row_start = j + 1
        j += 1
    else:
        last_good = j
    return last_good


def _incomplete(text: str) -> bool:
    return bool(text) and text[-1] not in TERMINAL


def _unbalanced(text: str) -> bool:
    depth = 0
    for ch in text:
        if ch in _OPENERS:
            depth += 1
        elif ch in _CLOSERS:
            depth = max(0, depth - 1)
    return depth > 0


def is_part_title(text: str) -> bool:
    """A stand-alone document or sub-plan title line ("白河县…工作实施方案")."""
    return (
        8 <= len(text) <= 60
        and not any(ch in text for ch in "。；，")
        and bool(_TITLE_SUFFIX.search(text))
        and match_heading(text) is None
    )


def _overlap(prev: str, nxt: str, is_word: Callable[[str], bool]) -> int:
    """How many leading characters of ``nxt`` repeat the end of ``prev`` across a break."""
    for k in range(min(8, len(prev), len(nxt)), 1, -1):
        if prev[-k:] == nxt[:k] and any(_is_cjk(c) for c in nxt[:k]):
            return k
    if prev and nxt and prev[-1] == nxt[0] and _is_cjk(nxt[0]):
        left = prev[-2:] if len(prev) >= 2 else ""
        right = nxt[:2]
        left_word = bool(left) and is_word(left)
        right_word = len(right) == 2 and is_word(right)
        # "服务|务，" or "（责|责任": one side only makes a word, so the character is doubled.
        # "支持|持续": both sides are words, so the text is fine as it is.
        if left_word != right_word:
            return 1
        if right[1:] and right[1] in TERMINAL | set("，、"):
            return 1
    return 0


def _should_join(cur: str, last: str, nxt: str, line_gap: int) -> bool:
    """Whether the paragraph ``cur`` (whose last line is ``last``) continues on ``nxt``."""
    if not cur or not nxt:
        return False
    if nxt[0] in _STARTS_CONTINUATION:
        return True
    if match_heading(nxt) is not None:
        return False
    if _unbalanced(cur) and not is_part_title(cur):
        return True
    if _incomplete(cur) and len(last) < 40 and not is_part_title(cur) and is_part_title(cur + nxt):
        return True  # a title broken over lines
    if is_part_title(nxt):
        return False
    ch = match_heading(cur)
    if ch is not None and not ch.inline:
        # A heading broken over lines: the tail is short and carries no sentence.
        return (
            _incomplete(cur)
            and len(nxt) <= 30
            and not any(c in nxt for c in "。；，：")
            and (ch.kind in ("chapter", "section", "box", "part") or len(cur) >= 12)
        )
    if is_part_title(cur) and not _unbalanced(cur):
        return False
    if _unbalanced(cur):
        return True
    if not _incomplete(cur):
        return False
    if len(last) >= 20:
        return True
    # A short line with no final punctuation joins only a short line like it (a title
    # broken over lines), never a body paragraph.
    return len(nxt) <= 40 and _incomplete(nxt) and line_gap <= 2


def repair(src: str, is_word: Callable[[str], bool]) -> list[Block]:
    """Split ``src`` into repaired paragraphs and flattened tables, in order.

    ``is_word`` answers whether a two-character string is a dictionary word; it decides
    whether a single character repeated across a page break is an artefact.
    """
    lines = _raw_lines(src)
    tables = _find_tables(src, lines)
    blocks: list[Block] = []
    cur: Span | None = None
    last = ""
    cur_lines = 0
    pending_gap = 0
    i = 0

    def flush() -> None:
        nonlocal cur, cur_lines
        if cur:
            blocks.append(Block(span=cur, line_count=cur_lines))
        cur, cur_lines = None, 0

    while i < len(lines):
        if i in tables:
            flush()
            table = tables[i]
            blocks.append(Block(table=table, line_count=len(table.lines)))
            i += len(table.lines)
            continue
        a, b = lines[i]
        span = _clean_line(src, a, b)
        i += 1
        if not span:
            pending_gap += 1
            continue
        if _is_junk(span.text):
            continue
        gap, pending_gap = pending_gap, 0
        if cur is not None and _should_join(cur.text, last, span.text, gap):
            k = _overlap(cur.text, span.text, is_word)
            cur = cur + span[k:]
            last = span.text
            cur_lines += 1
            continue
        flush()
        cur, cur_lines, last = span, 1, span.text
    flush()
    return blocks
