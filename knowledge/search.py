"""Ranking: lexical BM25 and dense vectors, fused, with region preference.

For a question the retriever

1. analyses it once (:class:`Query`): normalised text, weighted BM25 terms (the asker's own
   words at weight 1, glossary expansions from :mod:`knowledge.expansion` lower), places named
   in it, provinces the corpus does not cover;
2. scores every passage lexically (BM25 over the passage text plus a lighter BM25 over its
   heading path) and densely (cosine of the e5 vectors, via faiss);
3. fuses the two (weighted sum of normalised scores by default; reciprocal-rank fusion is
   available and measured by ``python -m knowledge eval``);
4. applies region preference: a place named in the question puts that place's documents (and
   the plans directly above or below it) strictly first; the asker's own region only nudges;
5. drops windows that mostly repeat a better-ranked window of the same clause.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy

from knowledge.bm25 import BM25
from knowledge.expansion import Expander
from knowledge.index import IndexData
from knowledge.regions import Gazetteer, Place
from knowledge.tokenize import Tokenizer

__all__ = ["Query", "Retriever", "Ranking", "FUSION_METHODS"]

FUSION_METHODS = ("weighted", "rrf", "bm25", "dense")

# Weights, chosen on the project's own calibration questions (data/calibration.jsonl), never
# on the evaluation samples.
CONTEXT_WEIGHT = 0.35  # heading-path BM25 relative to passage-text BM25
EXPANSION_WEIGHT = 0.45  # a glossary term relative to the asker's own word
LEXICAL_WEIGHT = 0.55  # weighted fusion: share of the lexical score
RRF_K = 60.0
FRONT_PENALTY = 0.1
# A named place: documents of other provinces rank after it; within, each tier costs this much.
NAMED_TIER_PENALTY = (0.0, 0.1, 0.3, 0.5)
# Nudge for the asker's own region (not named in the question), in fused-score units.
ASKER_REGION_BONUS = (0.06, 0.04, 0.0, -0.04)


@dataclass
class Query:
    """A question analysed once."""

    text: str
    norm: str
    terms: dict[str, float]
    own_terms: list[str]
    expansions: list[str]
    places: list[Place]
    unknown_places: list[str]
    # For a word of the question inside a glossary phrase: the policy tokens standing for it.
    stands_for: dict[str, set[str]] = field(default_factory=dict)


@dataclass
class Ranking:
    """Scores of every passage for one query, and the final order."""

    order: list[int]
    fused: numpy.ndarray
    lexical: numpy.ndarray  # raw BM25 (text + weighted heading path)
    lexical_norm: numpy.ndarray
    dense: numpy.ndarray  # cosine
    place: Place | None = None
    tiers: dict[int, int] = field(default_factory=dict)


class Retriever:
    """Lexical + dense retrieval over one loaded index (build once, query many times)."""

    def __init__(
        self, data: IndexData, tokenizer: Tokenizer, expander: Expander, gazetteer: Gazetteer
    ) -> None:
        import faiss

        self.data = data
        self.tokenizer = tokenizer
        self.expander = expander
        self.gazetteer = gazetteer
        self.body = BM25(data.body_tokens, k1=1.2, b=0.6)
        self.context = BM25(data.context_tokens, k1=1.2, b=0.3)
        self.n = len(data.passages)
        self.faiss = faiss.IndexFlatIP(data.vectors.shape[1])
        if self.n:
            self.faiss.add(data.vectors)
        self.doc_of = [p.doc for p in data.passages]
        # Issuing notices and signatures are never the answer to a question.
        self.kind_penalty = numpy.array(
            [FRONT_PENALTY if p.kind == "front" else 0.0 for p in data.passages], dtype=numpy.float32
        )

    # -- analysis -----------------------------------------------------------------------

    def analyse(self, question: str) -> Query:
        norm = self.tokenizer.normalise(question)
        places = self.gazetteer.find(norm)
        # A named place is handled by region preference; as a search word it would only pull
        # in the passages that repeat the name (titles, issuing notices).
        place_tokens = {
            t for pl in places for alias in self.gazetteer.aliases(pl) for t in self.tokenizer.tokens(alias)
        }
        own = [t for t in self.tokenizer.tokens(question) if t not in place_tokens]
        terms: dict[str, float] = {}
        for t in own:
            terms[t] = terms.get(t, 0.0) + 1.0
        expansions = self.expander.expand(norm)
        for term in expansions:
            for t in self.tokenizer.tokens(term):
                if t not in terms:
                    terms[t] = EXPANSION_WEIGHT
        stands_for: dict[str, set[str]] = {}
        for phrase, policy in self.expander.rules_in(norm):
            policy_tokens = {t for term in policy for t in self.tokenizer.tokens(term)}
            for t in self.tokenizer.tokens(phrase):
                stands_for.setdefault(t, set()).update(policy_tokens)
        return Query(
            text=question,
            norm=norm,
            terms=terms,
            own_terms=own,
            expansions=expansions,
            places=places,
            unknown_places=self.gazetteer.unknown_places(norm),
            stands_for=stands_for,
        )

    # -- scoring ------------------------------------------------------------------------

    def lexical_scores(self, q: Query) -> numpy.ndarray:
        return self.body.scores(q.terms) + CONTEXT_WEIGHT * self.context.scores(q.terms)

    def dense_scores(self, query_vector: numpy.ndarray) -> numpy.ndarray:
        out = numpy.zeros(self.n, dtype=numpy.float32)
        if not self.n:
            return out
        sims, ids = self.faiss.search(query_vector.reshape(1, -1).astype(numpy.float32), self.n)
        out[ids[0]] = sims[0]
        return out

    @staticmethod
    def _rrf(*rankings: numpy.ndarray) -> numpy.ndarray:
        fused = numpy.zeros(len(rankings[0]), dtype=numpy.float32)
        for scores in rankings:
            order = numpy.argsort(-scores, kind="stable")
            ranks = numpy.empty(len(scores), dtype=numpy.float32)
            ranks[order] = numpy.arange(1, len(scores) + 1, dtype=numpy.float32)
            fused += 1.0 / (RRF_K + ranks)
        return fused

    def rank(
        self,
        q: Query,
        query_vector: numpy.ndarray | None,
        *,
        asker_region: str | None = None,
        method: str = "weighted",
    ) -> Ranking:
        lexical = self.lexical_scores(q)
        top_lex = float(lexical.max()) if self.n else 0.0
        lexical_norm = lexical / top_lex if top_lex > 0 else lexical
        dense = (
            self.dense_scores(query_vector)
            if query_vector is not None
            else numpy.zeros(self.n, numpy.float32)
        )
        if method == "bm25" or query_vector is None:
            fused = lexical_norm.copy()
        elif method == "dense":
            fused = dense.copy()
        elif method == "rrf":
            fused = self._rrf(lexical, dense) * 30.0  # scaled to about 0..1 for the region nudge
        else:
            hi = float(dense.max())
            lo = float(numpy.percentile(dense, 50)) if self.n else 0.0
            dense_norm = numpy.clip((dense - lo) / (hi - lo), 0.0, 1.0) if hi > lo else dense * 0
            fused = LEXICAL_WEIGHT * lexical_norm + (1.0 - LEXICAL_WEIGHT) * dense_norm
        fused = fused - self.kind_penalty
        place = q.places[0] if q.places else None
        named = place is not None
        if place is None:
            place = self.gazetteer.most_specific(asker_region)
        tiers: dict[int, int] = {}
        group = numpy.zeros(self.n, dtype=numpy.int8)
        if place is not None:
            tier_of_doc = {d["file"]: self.gazetteer.tier(str(d["file"]), place) for d in self.data.documents}
            # A question naming several places prefers every one of them.
            for extra in q.places[1:] if named else []:
                for d in self.data.documents:
                    f = str(d["file"])
                    tier_of_doc[f] = min(tier_of_doc[f], self.gazetteer.tier(f, extra))
            doc_tier = numpy.array([tier_of_doc[d] for d in self.doc_of], dtype=numpy.int8)
            if named:
                group = (doc_tier > 1).astype(numpy.int8)
                fused = fused - numpy.array(NAMED_TIER_PENALTY, dtype=numpy.float32)[doc_tier]
            else:
                bonus = numpy.array(ASKER_REGION_BONUS, dtype=numpy.float32)
                fused = fused + bonus[doc_tier]
            tiers = {i: int(t) for i, t in enumerate(doc_tier)}
        order = numpy.lexsort((-fused, group)).tolist()
        return Ranking(
            order=self._dedupe(order),
            fused=fused,
            lexical=lexical,
            lexical_norm=lexical_norm,
            dense=dense,
            place=place if named else None,
            tiers=tiers,
        )

    def _dedupe(self, order: list[int], limit: int = 60) -> list[int]:
        """Drop windows that mostly overlap a better-ranked window of the same document."""
        kept: list[int] = []
        spans: dict[str, list[tuple[int, int]]] = {}
        for i in order:
            p = self.data.passages[i]
            overlaps = spans.setdefault(p.doc, [])
            length = max(1, p.end - p.start)
            if any(min(e, p.end) - max(s, p.start) > 0.6 * length for s, e in overlaps):
                continue
            overlaps.append((p.start, p.end))
            kept.append(i)
            if len(kept) >= limit:
                break
        return kept
