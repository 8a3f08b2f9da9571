"""The reviewed vocabulary table and its compiled matchers.

The table lives in ``handlers/data/understanding.tsv`` (columns: group, key, term, flags, note) so
that a domain reviewer can add a dialect word or a common misspelling without touching code. Each
(group, key) pair is indexed once: literal terms by their first character, regular-expression rows
compiled per pair, so one pass over a message finds every term of every group.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

__all__ = ["Term", "Hit", "Vocabulary", "load_vocabulary", "normalize", "GROUPS"]

#: Every group the classifier knows; a row with another group is a typo and refused.
GROUPS = frozenset(
    {
        "risk",
        "urgent",
        "hardship",
        "report_ask",
        "person",
        "time",
        "alias",
        "stale",
        "recent",
        "frame",
        "worry",
        "question",
        "policy",
        "generic",
        "progress",
        "greeting",
        "greeting_filler",
        "filler",
        "distress",
        "cue",
    }
)


def normalize(text: str) -> str:
    """NFKC (full-width digits and punctuation to ASCII) and lower case; terms get the same."""
    return unicodedata.normalize("NFKC", text).lower()


@dataclass(frozen=True)
class Term:
    """One row of the table."""

    group: str
    key: str
    term: str
    topic: bool = False
    neutral: bool = False
    money: bool = False
    alias_to: str = ""
    defer: frozenset[str] = frozenset()
    note: str = ""
    line: int = 0

    @property
    def is_regex(self) -> bool:
        return self.term.startswith("re:")

    @property
    def pattern(self) -> str:
        return normalize(self.term[3:]) if self.is_regex else re.escape(normalize(self.term))


@dataclass(frozen=True)
class Hit:
    """A term found in a text: offsets into the normalised text, and the row that matched."""

    term: Term
    start: int
    end: int
    text: str


class Vocabulary:
    """The table, indexed for one pass over a text.

    Literal terms are indexed by their first character, so a scan costs one dictionary look-up
    and a few ``startswith`` calls per character instead of one regular-expression alternation
    per group; the few regular-expression rows are compiled per (group, key). Within one
    (group, key) hits never overlap: leftmost first, then longest (没地方住 rather than 住).
    """

    def __init__(self, terms: list[Term]):
        self.terms = terms
        self._pairs: list[tuple[str, str]] = list(dict.fromkeys((t.group, t.key) for t in terms))
        self._aliases = sorted(
            ((normalize(t.term), normalize(t.alias_to)) for t in terms if t.group == "alias"),
            key=lambda a: -len(a[0]),
        )
        by_literal: dict[str, list[Term]] = {}
        regex_rows: dict[tuple[str, str], list[Term]] = {}
        for t in terms:
            if t.group == "alias":
                continue
            if t.is_regex:
                regex_rows.setdefault((t.group, t.key), []).append(t)
            else:
                by_literal.setdefault(normalize(t.term), []).append(t)
        self._index: dict[str, list[tuple[str, list[Term]]]] = {}
        for literal, rows in by_literal.items():
            if literal:
                self._index.setdefault(literal[0], []).append((literal, rows))
        for entries in self._index.values():
            entries.sort(key=lambda e: -len(e[0]))
        self._regexes: list[tuple[re.Pattern, list[Term]]] = []
        for rows in regex_rows.values():
            branches = "|".join(f"(?P<t{i}>{t.pattern})" for i, t in enumerate(rows))
            self._regexes.append((re.compile(branches), rows))

    def keys(self, group: str) -> list[str]:
        return [k for g, k in self._pairs if g == group]

    def rewrite(self, text: str) -> str:
        """Apply the dialect aliases (莫得 → 没得, 啷个 → 怎么); lengths are kept."""
        for old, new in self._aliases:
            if old in text:
                text = text.replace(old, new)
        return text

    def scan(self, text: str) -> dict[str, list[Hit]]:
        """Every hit in ``text`` (already normalised), by group, in text order."""
        found: dict[tuple[str, str], list[Hit]] = {}
        index = self._index
        for pos, ch in enumerate(text):
            entries = index.get(ch)
            if not entries:
                continue
            for literal, rows in entries:
                if text.startswith(literal, pos):
                    end = pos + len(literal)
                    for t in rows:
                        found.setdefault((t.group, t.key), []).append(Hit(t, pos, end, literal))
        for regex, rows in self._regexes:
            for m in regex.finditer(text):
                t = rows[int(m.lastgroup[1:])]
                found.setdefault((t.group, t.key), []).append(Hit(t, m.start(), m.end(), m.group(0)))
        by_group: dict[str, list[Hit]] = {}
        for (group, _key), hits in found.items():
            hits.sort(key=lambda h: (h.start, h.start - h.end))
            kept = by_group.setdefault(group, [])
            last_end = -1
            for h in hits:
                if h.start >= last_end and h.end > h.start:
                    kept.append(h)
                    last_end = h.end
        for hits in by_group.values():
            hits.sort(key=lambda h: h.start)
        return by_group

    @classmethod
    def parse(cls, text: str, *, source: str = "<vocabulary>") -> Vocabulary:
        """Parse the TSV text; raise ``ValueError`` naming the line of any bad row."""
        terms: list[Term] = []
        header_seen = False
        for lineno, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip() or raw.startswith("#"):
                continue
            cols = raw.split("\t")
            if not header_seen and cols[0] == "group":
                header_seen = True
                continue
            if len(cols) < 3:
                raise ValueError(f"{source}:{lineno}: expected group, key, term[, flags, note]")
            group, key, term = (c.strip() for c in cols[:3])
            flags = cols[3].strip() if len(cols) > 3 else "-"
            note = cols[4].strip() if len(cols) > 4 else ""
            if group not in GROUPS:
                raise ValueError(f"{source}:{lineno}: unknown group {group!r}")
            topic = neutral = money = False
            alias_to = ""
            defer: frozenset[str] = frozenset()
            for flag in filter(None, (f.strip() for f in flags.split(","))):
                if flag == "-":
                    continue
                if flag == "topic":
                    topic = True
                elif flag == "neutral":
                    neutral = True
                elif flag == "money":
                    money = True
                elif flag.startswith("to="):
                    alias_to = flag[len("to=") :]
                elif flag.startswith("defer="):
                    defer = frozenset(flag[len("defer=") :].split("|"))
                else:
                    raise ValueError(f"{source}:{lineno}: unknown flag {flag!r}")
            if group == "alias" and len(normalize(alias_to)) != len(normalize(term)):
                # Offsets in reasons refer to the rewritten text; equal lengths keep them valid.
                raise ValueError(
                    f"{source}:{lineno}: an alias must keep the length ({term!r} -> {alias_to!r})"
                )
            row = Term(group, key, term, topic, neutral, money, alias_to, defer, note, lineno)
            if row.is_regex:
                try:
                    compiled = re.compile(row.pattern)
                except re.error as exc:
                    raise ValueError(f"{source}:{lineno}: bad regular expression: {exc}") from None
                if compiled.groups:
                    raise ValueError(f"{source}:{lineno}: use (?:...) groups, not capturing ones")
            terms.append(row)
        return cls(terms)


_DEFAULT = "understanding.tsv"


@lru_cache(maxsize=4)
def load_vocabulary(path: str | Path | None = None) -> Vocabulary:
    """Load and compile the table (the packaged one by default); cached per path."""
    if path is None:
        text = resources.files("handlers").joinpath("data", _DEFAULT).read_text(encoding="utf-8")
        return Vocabulary.parse(text, source=_DEFAULT)
    p = Path(path)
    return Vocabulary.parse(p.read_text(encoding="utf-8"), source=p.name)
