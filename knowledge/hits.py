"""What a query returns: :class:`Hit`, :class:`SearchResult` and :class:`Answer`.

Made by :class:`knowledge.base.KnowledgeBase` and :func:`knowledge.answer.compose`; the rest of
the project reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Hit", "SearchResult", "Answer"]


@dataclass
class Hit:
    """One retrieved passage with its document's metadata.

    ``text`` is the verbatim slice ``original[start:end]`` of the document file ``doc``;
    ``display`` is the repaired reading text (or, for a table row, the row with its header).
    """

    doc: str
    title: str
    issuer: str
    date: str
    doc_no: str | None
    section: str
    text: str
    start: int
    end: int
    score: float
    region: dict[str, str | None]
    heading: str = ""
    display: str = ""
    kind: str = "clause"
    runs: list[tuple[int, int]] = field(default_factory=list, repr=False)
    index: int = -1

    def to_contract(self) -> dict[str, object]:
        """The batch-contract shape (DESIGN.md §4)."""
        return {
            "doc": self.doc,
            "section": self.section,
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "score": round(float(self.score), 6),
        }


@dataclass
class SearchResult:
    """Ranked passages and the answerability verdict."""

    answerable: bool
    passages: list[Hit]
    probability: float = 0.0
    reason: str = "ok"


@dataclass
class Answer:
    """A reply ready for WeChat (≤ 2,000 bytes of UTF-8) and what it was built from."""

    text: str
    answerable: bool
    passages: list[Hit]
    next_offset: int | None
