"""Rebuild flattened indicator tables into rows that carry their header.

Two flattenings occur in the corpus:

* separator style (Shaanxi): each cell on its own line, cells of a row separated by a line
  holding only a tab, rows separated by a blank line;
* tab-cell style (Chengkou): every cell is a line starting with a tab ("\\t" alone is an empty
  cell, i.e. a merged cell continued from the row above), rows separated by a blank line.

A row with more cells than the header has sub-category cells before the indicator (a merged
"类别" column): they are folded into the indicator ("医疗保障巩固—农村人口基本医保参保率（%）").
Empty leading cells inherit the row above (merged cells). Each row becomes one passage whose
``text`` is the verbatim source slice covering its cells and whose ``display`` renders it with
the header: "指标：…；2020年：…；2025年：…；属性：约束性".
"""

from __future__ import annotations

from collections.abc import Callable

from knowledge.passage import Passage
from knowledge.repair import TableBlock
from knowledge.spans import Span

__all__ = ["parse_rows", "table_passages"]

_STRIP = " \t\r\u2002\u2003\u3000\u00a0\ufeff"


def _cell(src: str, a: int, b: int) -> Span:
    return Span.from_indices(src, range(a, b)).strip(_STRIP)


def parse_rows(src: str, table: TableBlock) -> list[list[Span]]:
    """The table's rows as lists of cell spans (an empty span is an empty cell)."""
    rows: list[list[Span]] = []
    cur: list[Span] = []
    if table.tab_cells:
        for a, b in table.lines:
            raw = src[a:b]
            if raw.startswith("\t"):
                cur.append(_cell(src, a, b))
            elif not raw.strip(_STRIP) and cur:
                rows.append(cur)
                cur = []
        if cur:
            rows.append(cur)
        return rows
    after_sep = False
    for a, b in table.lines:
        raw = src[a:b]
        content = raw.strip(_STRIP)
        if content:
            cur.append(_cell(src, a, b))
            after_sep = False
        elif "\t" in raw:
            after_sep = True
        elif not after_sep and cur:
            rows.append(cur)
            cur = []
    if cur:
        rows.append(cur)
    return rows


def _header_name(name: str) -> str:
    # "指标属性" reads better as "属性" once the row already says "指标：…".
    if name.startswith("指标") and len(name) > 2:
        return name[2:]
    return name


def table_passages(
    doc: str,
    src: str,
    table: TableBlock,
    frames: list,
    section_of: Callable[[list, bool], str],
    heading_of: Callable[[list, bool], str],
    multi_part: bool,
) -> list[Passage]:
    """One passage per data row, rendered with the header and the table's caption."""
    rows = parse_rows(src, table)
    if len(rows) < 2:
        return []
    header = [c.text for c in rows[0]]
    n = len(header)
    section = section_of(frames, multi_part)
    heading = heading_of(frames, multi_part)
    out: list[Passage] = []
    prev_number, prev_category = "", ""
    for cells in rows[1:]:
        texts = [c.text for c in cells]
        if len(texts) < 3 or not any(texts):
            continue
        extra = max(0, len(texts) - n)
        number = texts[0] or prev_number
        category_cells = texts[1 : 1 + extra]
        if extra and not any(category_cells):
            category = prev_category
        else:
            category = "—".join(t for t in category_cells if t)
        indicator = texts[1 + extra] if len(texts) > 1 + extra else ""
        values = texts[2 + extra :]
        names = [_header_name(h) for h in header[2:]]
        parts = [
            f"{_header_name(header[1]) if n > 1 else '指标'}：{'—'.join(x for x in (category, indicator) if x)}"
        ]
        for name, value in zip(names, values, strict=False):
            parts.append(f"{name}：{value or '—'}")
        display = "；".join(parts)
        filled = [c for c in cells if c]
        start, end = filled[0].start, filled[-1].end
        # The number cell is covered by the slice but not shown; every shown cell is a run.
        runs = [r for c in cells[1:] if c for r in c.runs()]
        out.append(
            Passage(
                doc=doc,
                kind="table_row",
                section=f"{section} 序号{number}".strip(),
                heading=heading,
                text=src[start:end],
                start=start,
                end=end,
                display=display,
                runs=runs,
                context=heading.replace(" › ", " "),
                label=f"序号{number}",
            )
        )
        prev_number = number
        if extra:
            prev_category = category
    return out
