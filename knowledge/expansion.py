"""Colloquial-to-policy query expansion, driven by ``data/expansions.tsv``.

Villagers write "看病", "娃上学", "贷款", "房子漏雨", "吃水", "打工"; the plans say 医疗/医保,
教育资助, 小额信贷, 住房安全/危房改造, 饮水安全, 就业/务工. The glossary is data, not code:
each line is a phrase, a tab, and the policy terms it stands for. A phrase applies when it
occurs anywhere in the (normalised) question; its terms are added to the lexical query with a
lower weight than the asker's own words.
"""

from __future__ import annotations

import hashlib
from importlib import resources

__all__ = ["Expander"]


class Expander:
    """Phrase → policy terms lookup."""

    def __init__(self, text: str | None = None) -> None:
        if text is None:
            text = (resources.files("knowledge") / "data" / "expansions.tsv").read_text("utf-8")
        self.version = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
        self.rules: list[tuple[str, list[str]]] = []
        for line in text.split("\n"):
            if not line.strip() or line.startswith("#") or "\t" not in line:
                continue
            phrase, terms = line.split("\t", 1)
            phrase = phrase.strip()
            if phrase:
                self.rules.append((phrase, terms.split()))
        # Longer phrases first so that "看门诊" is seen before "门诊".
        self.rules.sort(key=lambda r: len(r[0]), reverse=True)

    def expand(self, question: str) -> list[str]:
        """Policy terms for every glossary phrase found in ``question`` (each term once)."""
        out: list[str] = []
        seen: set[str] = set()
        for phrase, terms in self.rules:
            if phrase in question:
                for t in terms:
                    if t not in seen:
                        seen.add(t)
                        out.append(t)
        return out

    def rules_in(self, question: str) -> list[tuple[str, list[str]]]:
        """The ``(phrase, policy terms)`` rules whose phrase occurs in ``question``."""
        return [(p, terms) for p, terms in self.rules if p in question]

    def matched(self, question: str) -> list[str]:
        """The glossary phrases that occur in ``question`` (diagnostics)."""
        return [p for p, _ in self.rules if p in question]
