"""Offset-preserving text pieces.

Every repair the ingest makes is a *deletion* of source characters (a page-break newline, a
character repeated across a page break, a markdown marker, a stray space). A cleaned piece of
text is therefore a subsequence of the original file, and it is stored as the list of source
runs it is made of. That makes any quote checkable: ``quote == "".join(src[s:s+n] for s, n in
runs)`` and every run lies inside the passage's ``[start, end)`` slice of the original.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["Span", "runs_of", "text_of_runs", "check_runs"]


@dataclass(frozen=True, slots=True)
class Span:
    """A cleaned piece of a source text: ``text[i]`` is ``source[pos[i]]``."""

    text: str
    pos: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.text) != len(self.pos):
            raise ValueError("Span text and positions differ in length")

    @classmethod
    def from_indices(cls, source: str, indices: Sequence[int]) -> Span:
        return cls("".join(source[i] for i in indices), tuple(indices))

    @classmethod
    def empty(cls) -> Span:
        return cls("", ())

    def __len__(self) -> int:
        return len(self.text)

    def __bool__(self) -> bool:
        return bool(self.text)

    def __getitem__(self, item: slice) -> Span:
        if not isinstance(item, slice):
            raise TypeError("Span supports slicing only")
        return Span(self.text[item], self.pos[item])

    def __add__(self, other: Span) -> Span:
        return Span(self.text + other.text, self.pos + other.pos)

    @property
    def start(self) -> int:
        """Offset of the first character in the source."""
        return self.pos[0]

    @property
    def end(self) -> int:
        """Offset one past the last character in the source."""
        return self.pos[-1] + 1

    def strip(self, chars: str | None = None) -> Span:
        """Drop leading and trailing characters (whitespace by default)."""
        text = self.text
        left = len(text) - len(text.lstrip(chars))
        right = len(text.rstrip(chars))
        if right <= left:
            return Span.empty()
        return self[left:right]

    def runs(self) -> list[tuple[int, int]]:
        """The source runs this span is made of, as ``(start, length)`` pairs."""
        return runs_of(self.pos)


def runs_of(positions: Iterable[int]) -> list[tuple[int, int]]:
    """Compress increasing source positions into ``(start, length)`` runs."""
    runs: list[list[int]] = []
    for p in positions:
        if runs and runs[-1][0] + runs[-1][1] == p:
            runs[-1][1] += 1
        else:
            runs.append([p, 1])
    return [(s, n) for s, n in runs]


def text_of_runs(source: str, runs: Iterable[Sequence[int]]) -> str:
    """Rebuild a cleaned text from the source and its runs."""
    return "".join(source[s : s + n] for s, n in runs)


def check_runs(source: str, runs: Sequence[Sequence[int]], start: int, end: int, text: str) -> bool:
    """True when ``text`` is exactly the source runs and every run lies in ``[start, end)``."""
    if not runs:
        return text == ""
    for s, n in runs:
        if s < start or s + n > end or n <= 0:
            return False
    return text_of_runs(source, runs) == text
