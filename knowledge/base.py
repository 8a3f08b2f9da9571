"""The public face of the package: :class:`KnowledgeBase`.

::

    kb = KnowledgeBase.open_or_build(corpus_dir, index_dir, embedder)
    res = kb.search("住院能不能先看病后交钱", region="神木市", k=5)
    ans = kb.answer("住院能不能先看病后交钱", region="神木市")     # WeChat-ready text
    ans2 = kb.answer(question, region, offset=ans.next_offset)      # "更多"

Build once (``build`` / ``open_or_build``), then query many times: the tokenizer, BM25 and the
vectors live in memory; a query costs one jieba pass, two postings walks and one query
embedding.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from knowledge.answer import compose
from knowledge.answerability import (
    FEATURE_NAMES,
    Calibration,
    Decision,
    features,
    load_calibrations,
    personal_reason,
)
from knowledge.corpus import Document, corpus_hash, load_corpus
from knowledge.expansion import Expander
from knowledge.hits import Answer, Hit, SearchResult
from knowledge.index import (
    IndexData,
    StaleIndexError,
    build_index,
    build_lock,
    load_index,
    read_manifest,
    save_index,
    staleness,
)
from knowledge.regions import Gazetteer
from knowledge.search import Retriever
from knowledge.tokenize import Tokenizer

if TYPE_CHECKING:  # pragma: no cover
    from knowledge.embedder import Embedder

__all__ = ["KnowledgeBase", "Hit", "SearchResult", "Answer", "StaleIndexError"]

log = logging.getLogger(__name__)

_TOKENIZER: Tokenizer | None = None
QUERY_CACHE_SIZE = 1024


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Encode a single query on one thread.

    One short query gains nothing from intra-op parallelism, but on a busy 2-core host torch's
    worker threads wait on each other: measured here under load, p50 fell from 565 ms to 84 ms.
    The setting is process-wide, so it is restored straight after.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def shared_tokenizer() -> Tokenizer:
    """One tokenizer per process (loading jieba's dictionary takes about a second)."""
    global _TOKENIZER
    if _TOKENIZER is None:
        _TOKENIZER = Tokenizer()
    return _TOKENIZER


class KnowledgeBase:
    """Policy-document retrieval and answers over one index."""

    def __init__(
        self,
        data: IndexData,
        embedder: Embedder,
        *,
        tokenizer: Tokenizer | None = None,
        calibrations: dict[str, Calibration] | None = None,
        expander: Expander | None = None,
    ) -> None:
        self.data = data
        self.embedder = embedder
        self.tokenizer = tokenizer or shared_tokenizer()
        self.calibrations = calibrations or load_calibrations()
        docs = [
            Document(
                file=str(d["file"]),
                title=str(d["title"]),
                issuer=str(d["issuer"]),
                doc_no=d.get("doc_no"),  # type: ignore[arg-type]
                date=str(d["date"]),
                level=str(d.get("level", "")),
                region=dict(d["region"]),  # type: ignore[arg-type]
                text=data.sources[str(d["file"])],
            )
            for d in data.documents
        ]
        self.documents = {d.file: d for d in docs}
        self.gazetteer = Gazetteer(docs)
        self.retriever = Retriever(data, self.tokenizer, expander or Expander(), self.gazetteer)
        self._vectors: dict[str, object] = {}
        self._vectors_lock = threading.Lock()
        self._token_sets = [
            set(b) | set(c) for b, c in zip(data.body_tokens, data.context_tokens, strict=True)
        ]

    # -- construction -------------------------------------------------------------------

    @classmethod
    def load(
        cls, index_dir: str | Path, embedder: Embedder, *, corpus_dir: str | Path | None = None
    ) -> KnowledgeBase:
        """Load a built index.

        :raises StaleIndexError: if it is missing or was built by other code, tokenizer, model
            or (when ``corpus_dir`` is given) another corpus; the message names the fix.
        """
        tokenizer = shared_tokenizer()
        current = corpus_hash(load_corpus(corpus_dir)) if corpus_dir is not None else None
        return cls(load_index(index_dir, embedder, tokenizer, current), embedder, tokenizer=tokenizer)

    @classmethod
    def build(
        cls, corpus_dir: str | Path, index_dir: str | Path, embedder: Embedder, *, progress: bool = True
    ) -> KnowledgeBase:
        """Ingest the corpus, build the index, save it to ``index_dir`` and return it loaded."""
        tokenizer = shared_tokenizer()
        docs = load_corpus(corpus_dir)
        data = build_index(docs, embedder, tokenizer, progress=progress, log=log.info)
        save_index(data, index_dir)
        return cls(data, embedder, tokenizer=tokenizer)

    @classmethod
    def open_or_build(
        cls,
        corpus_dir: str | Path,
        index_dir: str | Path,
        embedder: Embedder,
        *,
        progress: bool = True,
        notify: Callable[[str], None] | None = None,
    ) -> KnowledgeBase:
        """Load the index, building it first when it is missing or stale.

        Several processes starting together build it once: the build holds a lock file next
        to the index, and a process that waited for the lock finds a fresh index and loads it.
        """
        tokenizer = shared_tokenizer()
        docs = load_corpus(corpus_dir)
        current = corpus_hash(docs)

        def try_load() -> tuple[KnowledgeBase | None, str | None]:
            why = staleness(read_manifest(index_dir), embedder, tokenizer, current)
            if why is not None:
                return None, why
            try:
                return cls(load_index(index_dir, embedder, tokenizer), embedder, tokenizer=tokenizer), None
            except StaleIndexError as exc:
                return None, str(exc)

        kb, why = try_load()
        if kb is not None:
            return kb
        with build_lock(index_dir):
            kb, why = try_load()
            if kb is not None:
                return kb
            if notify:
                notify(f"building the index in {index_dir}: {why}")
            data = build_index(docs, embedder, tokenizer, progress=progress, log=log.info)
            save_index(data, index_dir)
        return cls(data, embedder, tokenizer=tokenizer)

    # -- queries ------------------------------------------------------------------------

    def _hit(self, i: int, score: float) -> Hit:
        p = self.data.passages[i]
        d = self.documents[p.doc]
        return Hit(
            doc=p.doc,
            title=d.title,
            issuer=d.issuer,
            date=d.date,
            doc_no=d.doc_no,
            section=p.section,
            text=p.text,
            start=p.start,
            end=p.end,
            score=float(score),
            region=dict(d.region),
            heading=p.heading,
            display=p.display,
            kind=p.kind,
            runs=list(p.runs),
            index=i,
        )

    def _query_vector(self, question: str):
        """The question's embedding; recent questions are cached ("更多" asks again)."""
        vector = self._vectors.get(question)
        if vector is None:
            with _one_thread():
                vector = self.embedder.encode_queries([question])[0]
            with self._vectors_lock:
                if len(self._vectors) >= QUERY_CACHE_SIZE:
                    self._vectors.pop(next(iter(self._vectors)))
                self._vectors[question] = vector
        return vector

    def clear_cache(self) -> None:
        """Forget cached query embeddings (the evaluation measures cold questions)."""
        with self._vectors_lock:
            self._vectors.clear()

    def rank(self, question: str, region: str | None = None, *, method: str = "weighted"):
        """Analyse and rank (no answerability decision); returns ``(query, ranking)``."""
        q = self.retriever.analyse(question)
        vector = None
        if method != "bm25":
            vector = self._query_vector(question)
        return q, self.retriever.rank(q, vector, asker_region=region, method=method)

    def features(self, q, ranking) -> list[float]:
        """Answerability features of an analysed, ranked question."""
        top = ranking.order[:3]
        bm = self.retriever.body
        return features(
            own_terms=q.own_terms,
            idf=bm.idf,
            top_tokens=[self._token_sets[i] for i in top],
            top_texts=[self.data.passages[i].display for i in top],
            lexical_strength=float(ranking.lexical[top[0]]) / max(1e-6, bm.max_score(q.terms))
            if top
            else 0.0,
            dense_scores=[float(ranking.dense[i]) for i in ranking.order[:20]],
            question=q.norm,
            stands_for=q.stands_for,
        )

    @staticmethod
    def rule_decline(q) -> str | None:
        """The hard rule that declines a question before any scoring, if one applies."""
        if personal_reason(q.norm):
            return "personal"
        if q.unknown_places:
            return "unknown_place"
        if not q.own_terms:
            return "no_content"
        return None

    def decide(self, q, ranking, method: str = "weighted") -> Decision:
        """Answerability for an analysed, ranked question."""
        rule = self.rule_decline(q)
        if rule is not None:
            return Decision(False, 0.0, rule)
        if not ranking.order:
            return Decision(False, 0.0, "no_content")
        cal = self.calibrations.get(method) or self.calibrations.get("weighted") or Calibration.default()
        x = self.features(q, ranking)
        if cal.model and cal.model != self.data.manifest.get("model") and "bm25" in self.calibrations:
            # Fitted for another embedding model: fall back to the lexical-only calibration.
            cal = self.calibrations["bm25"]
            x = [0.0 if name.startswith("dense") else v for name, v in zip(FEATURE_NAMES, x, strict=True)]
        p = cal.probability(x)
        ok = p >= cal.threshold
        return Decision(ok, p, "ok" if ok else "low_confidence")

    def search(
        self, question: str, region: str | None = None, k: int = 5, *, method: str = "weighted"
    ) -> SearchResult:
        """The ``k`` best passages and whether they answer the question."""
        q, ranking = self.rank(question, region, method=method)
        decision = self.decide(q, ranking, method)
        hits = [self._hit(i, float(ranking.fused[i])) for i in ranking.order[: max(0, k)]]
        return SearchResult(decision.answerable, hits, decision.probability, decision.reason)

    def answer(self, question: str, region: str | None = None, offset: int = 0):
        """A WeChat-ready reply quoting the best passage (``offset`` pages through "更多")."""
        res = self.search(question, region, k=max(offset + 2, 6))
        return compose(self, question, res, offset)

    def clauses_for(self, query_terms: list[str], k: int = 3, region: str | None = None) -> list[Hit]:
        """Passages most relevant to a case's risk types (for the staff console).

        ``query_terms`` are words such as the Chinese labels of the case's risk types
        ("因病", "住房安全"); ``region`` (the household's county, say) prefers its documents.
        """
        question = " ".join(t for t in query_terms if t and t.strip())
        if not question:
            return []
        return self.search(question, region, k=k).passages

    def status(self) -> dict[str, object]:
        """Index facts for /healthz."""
        m = self.data.manifest
        return {
            "documents": m.get("documents"),
            "passages": m.get("passages"),
            "model": m.get("model"),
            "built_at": m.get("built_at"),
            "corpus_hash": m.get("corpus_hash"),
        }

    def source(self, doc: str) -> str:
        """The original text of document ``doc`` (what offsets refer to)."""
        return self.data.sources[doc]
