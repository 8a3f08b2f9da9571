"""Integration: the real bundled e5-small model finds a clause from a Chinese question."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from knowledge import KnowledgeBase
from knowledge.config import bundled_corpus_dir

LINGCHUAN = "lingchuan-county-2021-implementation-plan.txt"

# Shares the run's conversion of the bundled model (``converted``) with tests/test_embedder.py.
pytestmark = pytest.mark.xdist_group("model")


@pytest.mark.slow
def test_real_model_finds_the_clause(tmp_path_factory, request):
    from knowledge.embedder import load_embedder

    # Reuse a converted model when the developer points at one; otherwise the run's own conversion.
    if os.environ.get("HUINONG_INSTANCE_DIR") or os.environ.get("HUINONG_EMBEDDING_MODEL"):
        cache = Path(os.environ.get("HUINONG_INSTANCE_DIR") or tmp_path_factory.mktemp("instance"))
        embedder = load_embedder(os.environ.get("HUINONG_EMBEDDING_MODEL") or None, cache)
    else:
        embedder = request.getfixturevalue("converted")[1]
    corpus = tmp_path_factory.mktemp("corpus")
    shutil.copy(bundled_corpus_dir() / LINGCHUAN, corpus / LINGCHUAN)
    manifest = json.loads((bundled_corpus_dir() / "manifest.json").read_text("utf-8"))
    entry = next(d for d in manifest["documents"] if d["file"] == LINGCHUAN)
    (corpus / "manifest.json").write_text(json.dumps({"documents": [entry]}, ensure_ascii=False), "utf-8")
    kb = KnowledgeBase.build(corpus, tmp_path_factory.mktemp("index") / "index", embedder, progress=False)

    # Dense retrieval alone must find the clause: the question shares almost no words with it.
    res = kb.search("家里有人瘫痪在床，还能单独吃低保吗？", k=3, method="dense")
    assert any("单人保" in h.text for h in res.passages), [h.display[:40] for h in res.passages]
    full = kb.search("陵川县对易返贫致贫人口多久排查一次？", k=3)
    assert "乡村两级每月组织一次排查核查" in full.passages[0].text
