"""jieba tokenisation with the bundled domain dictionary.

The tokenizer owns a private :class:`jieba.Tokenizer` (the global one is left alone for other
callers) loaded with ``data/userdict.txt``: policy terms such as 两不愁三保障, 监测对象,
小额信贷, 雨露计划, 公益岗位, 易地搬迁, 风险消除 stay whole. Search mode also emits the parts
of long words, so "小额信贷" matches a query about "信贷". Text is normalised first: full-width
forms folded, lower-cased, and traditional characters mapped to simplified ones (one part of
one corpus file was converted in traditional script).

``version`` changes whenever the dictionary, the stop words, the character map or this code
changes; the index manifest records it and refuses a mismatch.
"""

from __future__ import annotations

import hashlib
import logging
import re
from functools import cached_property
from importlib import resources

import jieba

from knowledge.headings import normalise_width

__all__ = ["Tokenizer", "TOKENIZER_CODE_VERSION"]

TOKENIZER_CODE_VERSION = "2"
_KEEP = re.compile(r"[\u4e00-\u9fff0-9a-z]")
_DATA = resources.files("knowledge") / "data"


def _read(name: str) -> str:
    path = _DATA / name
    return path.read_text("utf-8") if path.is_file() else ""


class Tokenizer:
    """Domain-aware jieba tokenizer; build once and reuse (loading takes about a second)."""

    def __init__(self) -> None:
        self._userdict = _read("userdict.txt")
        self._stopwords_text = _read("stopwords.txt")
        self._t2s_text = _read("t2s.txt")
        self.stopwords = frozenset(w.strip() for w in self._stopwords_text.split("\n") if w.strip())
        self._t2s = self._load_t2s(self._t2s_text)
        jieba.setLogLevel(logging.WARNING)
        self._jieba = jieba.Tokenizer()
        self._jieba.initialize()
        for line in self._userdict.split("\n"):
            parts = line.split()
            if parts and not line.startswith("#"):
                freq = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
                tag = parts[2] if len(parts) > 2 else None
                self._jieba.add_word(parts[0], freq, tag)

    @staticmethod
    def _load_t2s(text: str) -> dict[int, str]:
        table: dict[int, str] = {}
        for line in text.split("\n"):
            if line.startswith("#") or "\t" not in line:
                continue
            trad, simp = line.split("\t", 1)
            if len(trad) == 1 and len(simp.strip()) == 1:
                table[ord(trad)] = simp.strip()
        return table

    @cached_property
    def version(self) -> str:
        digest = hashlib.sha256()
        for part in (
            TOKENIZER_CODE_VERSION,
            jieba.__version__,
            self._userdict,
            self._stopwords_text,
            self._t2s_text,
        ):
            digest.update(part.encode("utf-8") + b"\0")
        return f"jieba-{jieba.__version__}+{digest.hexdigest()[:12]}"

    def normalise(self, text: str) -> str:
        """Width-folded, lower-cased, simplified-script text of the same length."""
        return normalise_width(text).lower().translate(self._t2s)

    def is_word(self, word: str) -> bool:
        """Whether ``word`` is in the dictionary (general or domain)."""
        return self._jieba.FREQ.get(word, 0) > 0

    def words(self, text: str) -> list[str]:
        """Plain jieba words of the normalised text (no stop-word filtering)."""
        return [w for w in self._jieba.cut(self.normalise(text)) if w.strip()]

    def tokens(self, text: str) -> list[str]:
        """Search-mode tokens for indexing and querying: stop words and punctuation dropped."""
        out = []
        for w in self._jieba.cut_for_search(self.normalise(text)):
            w = w.strip()
            if w and w not in self.stopwords and _KEEP.search(w):
                out.append(w)
        return out
