"""The unit of retrieval: :class:`Passage`, made by :mod:`knowledge.segment` and
:mod:`knowledge.tables`, stored and loaded by :mod:`knowledge.index`."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Passage"]


@dataclass
class Passage:
    """One retrievable passage.

    ``text`` is the verbatim source slice ``original[start:end]``. ``display`` is what a reader
    sees: for clauses the repaired text, made only of the source runs in ``runs``; for table
    rows the row rendered with its header ("指标：…；2025年：…"), each cell one of ``runs``.
    ``context`` is heading text indexed with the passage but not part of it.
    """

    doc: str
    kind: str  # "clause" | "paragraph" | "table_row" | "footnote" | "front"
    section: str
    heading: str
    text: str
    start: int
    end: int
    display: str
    runs: list[tuple[int, int]]
    context: str = ""
    label: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "doc": self.doc,
            "kind": self.kind,
            "section": self.section,
            "heading": self.heading,
            "start": self.start,
            "end": self.end,
            "display": self.display,
            "runs": self.runs,
            "context": self.context,
            "label": self.label,
        }

    @classmethod
    def from_json(cls, data: dict[str, object], source: str) -> Passage:
        start, end = int(data["start"]), int(data["end"])  # type: ignore[arg-type]
        return cls(
            doc=str(data["doc"]),
            kind=str(data["kind"]),
            section=str(data["section"]),
            heading=str(data["heading"]),
            text=source[start:end],
            start=start,
            end=end,
            display=str(data["display"]),
            runs=[(int(s), int(n)) for s, n in data["runs"]],  # type: ignore[union-attr]
            context=str(data.get("context", "")),
            label=str(data.get("label", "")),
        )
