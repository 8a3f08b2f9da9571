"""Retrieval over the policy documents: ingest, index, search and answer.

The rest of the project uses::

    from knowledge import KnowledgeBase, StaleIndexError
    kb = KnowledgeBase.open_or_build(corpus_dir, index_dir, embedder)
    kb.search(question, region=None, k=5)   # SearchResult(answerable, passages: list[Hit])
    kb.answer(question, region=None, offset=0)  # Answer(text, answerable, passages, next_offset)

This package imports nothing from the rest of the project. Importing it is cheap: jieba,
faiss and the embedding model load only when a knowledge base is built or loaded.
"""

from knowledge.base import KnowledgeBase
from knowledge.hits import Answer, Hit, SearchResult
from knowledge.index import StaleIndexError

__all__ = ["KnowledgeBase", "StaleIndexError", "Hit", "SearchResult", "Answer"]
