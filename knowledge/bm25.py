"""A small Okapi BM25 over pre-tokenised passages.

The tokenizer is the caller's (documents arrive as token lists, queries as weighted terms), the
inverted index is built once when the object is made, and a query touches only the postings of
its own terms, so scoring costs microseconds on this corpus.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy

__all__ = ["BM25"]


class BM25:
    """Okapi BM25 with the Lucene-style non-negative IDF."""

    def __init__(self, documents: Sequence[Sequence[str]], *, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = float(k1)
        self.b = float(b)
        self.size = len(documents)
        lengths = numpy.array([len(d) for d in documents], dtype=numpy.float32)
        self.avg_length = float(lengths.mean()) if self.size and lengths.sum() else 1.0
        norm = self.k1 * (1.0 - self.b + self.b * lengths / self.avg_length)
        postings: dict[str, tuple[list[int], list[float]]] = {}
        for i, doc in enumerate(documents):
            for term, tf in Counter(doc).items():
                ids, tfs = postings.setdefault(term, ([], []))
                ids.append(i)
                tfs.append(float(tf))
        self._postings: dict[str, tuple[numpy.ndarray, numpy.ndarray]] = {}
        self.idf: dict[str, float] = {}
        for term, (ids, tfs) in postings.items():
            id_arr = numpy.array(ids, dtype=numpy.int32)
            tf_arr = numpy.array(tfs, dtype=numpy.float32)
            # Pre-compute the saturated term-frequency part: tf * (k1 + 1) / (tf + norm).
            weight = tf_arr * (self.k1 + 1.0) / (tf_arr + norm[id_arr])
            self._postings[term] = (id_arr, weight.astype(numpy.float32))
            df = len(ids)
            self.idf[term] = math.log(1.0 + (self.size - df + 0.5) / (df + 0.5))

    def scores(self, query: Mapping[str, float]) -> numpy.ndarray:
        """BM25 score of every document for a query given as ``{term: weight}``."""
        out = numpy.zeros(self.size, dtype=numpy.float32)
        for term, weight in query.items():
            posting = self._postings.get(term)
            if posting is None or weight <= 0:
                continue
            ids, tf_part = posting
            out[ids] += (weight * self.idf[term]) * tf_part
        return out

    def max_score(self, query: Mapping[str, float]) -> float:
        """Upper bound of :meth:`scores` for this query (all terms at saturation)."""
        return sum(w * self.idf.get(t, 0.0) * (self.k1 + 1.0) for t, w in query.items() if w > 0)

    def document_frequency(self, term: str) -> int:
        posting = self._postings.get(term)
        return 0 if posting is None else len(posting[0])
