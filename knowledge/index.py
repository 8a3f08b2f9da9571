"""Build, save and load the retrieval index.

An index folder holds::

    manifest.json   what built it: model name and dimension, corpus hash, tokenizer and
                    dictionary version, segmenter code version, build time, counts
    sources.json    the original text of every document (offsets refer to it)
    passages.json   the passages with their lexical tokens
    vectors.faiss   IndexFlatIP over L2-normalised passage vectors (inner product = cosine)

:func:`load_index` refuses a folder whose manifest does not match the running code, the
tokenizer or the embedder, raising :class:`StaleIndexError` with the command that fixes it.
A build writes into a temporary folder and swaps it in, so readers never see half an index.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy

from knowledge.corpus import Document, corpus_hash
from knowledge.passage import Passage
from knowledge.repair import REPAIR_VERSION, repair
from knowledge.segment import SEGMENT_VERSION, segment
from knowledge.tokenize import Tokenizer

if TYPE_CHECKING:  # pragma: no cover
    from knowledge.embedder import Embedder

__all__ = ["StaleIndexError", "IndexData", "build_index", "save_index", "load_index", "CODE_VERSION"]

FORMAT_VERSION = "1"
CODE_VERSION = f"repair-{REPAIR_VERSION}.segment-{SEGMENT_VERSION}.format-{FORMAT_VERSION}"
FIX_COMMAND = "`huinong build-index` (or `python -m knowledge build`)"
_BATCH = 32


class StaleIndexError(Exception):
    """The index on disk is missing, damaged or built by other code, corpus or model.

    The message says what differs and which command rebuilds the index.
    """


@dataclass
class IndexData:
    """Everything a :class:`~knowledge.base.KnowledgeBase` needs, in memory."""

    manifest: dict[str, object]
    documents: list[dict[str, object]]
    sources: dict[str, str]
    passages: list[Passage]
    body_tokens: list[list[str]]
    context_tokens: list[list[str]]
    vectors: numpy.ndarray  # (n, dim) float32, rows L2-normalised


def index_text(p: Passage) -> str:
    """What the dense model reads for a passage: its heading path, then the passage."""
    return f"{p.context}\n{p.display}" if p.context else p.display


def _progress(label: str, done: int, total: int, enabled: bool) -> None:
    if not enabled:
        return
    width = 30
    filled = int(width * done / total) if total else width
    bar = "#" * filled + "-" * (width - filled)
    end = "\n" if done >= total else ""
    print(f"\r{label:<10} [{bar}] {done}/{total}", end=end, file=sys.stderr, flush=True)


def _meta(d: Document) -> dict[str, object]:
    return {
        "file": d.file,
        "title": d.title,
        "issuer": d.issuer,
        "doc_no": d.doc_no,
        "date": d.date,
        "level": d.level,
        "region": d.region,
    }


def ingest(docs: list[Document], tokenizer: Tokenizer, progress: bool = False) -> list[Passage]:
    """Repair and segment every document (document order, then passage order)."""
    out: list[Passage] = []
    for i, d in enumerate(docs):
        out.extend(segment(d.file, d.text, repair(d.text, tokenizer.is_word)))
        _progress("ingest", i + 1, len(docs), progress)
    return out


def build_index(
    docs: list[Document],
    embedder: Embedder,
    tokenizer: Tokenizer,
    *,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> IndexData:
    """Ingest, tokenise and embed the corpus."""
    started = time.monotonic()
    passages = ingest(docs, tokenizer, progress)
    body, ctx = [], []
    for i, p in enumerate(passages):
        body.append(tokenizer.tokens(p.display))
        ctx.append(tokenizer.tokens(p.context))
        if progress and (i + 1 == len(passages) or i % 100 == 0):
            _progress("tokenise", i + 1, len(passages), progress)
    texts = [index_text(p) for p in passages]
    # Batches of similar length waste less time on padding; the order is restored below.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    vectors = numpy.zeros((len(texts), embedder.dimension), dtype=numpy.float32)
    for i in range(0, len(order), _BATCH):
        ids = order[i : i + _BATCH]
        vectors[ids] = embedder.encode_passages([texts[j] for j in ids])
        _progress("embed", min(i + _BATCH, len(texts)), len(texts), progress)
    if vectors.shape != (len(passages), embedder.dimension):
        raise ValueError(
            f"embedder returned shape {vectors.shape}, expected ({len(passages)}, {embedder.dimension})"
        )
    manifest: dict[str, object] = {
        "format": FORMAT_VERSION,
        "code_version": CODE_VERSION,
        "model": embedder.name,
        "dimension": int(embedder.dimension),
        "corpus_hash": corpus_hash(docs),
        "tokenizer": tokenizer.version,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(time.monotonic() - started, 2),
        "documents": len(docs),
        "passages": len(passages),
    }
    if log:
        log(f"indexed {len(passages)} passages from {len(docs)} documents in {manifest['build_seconds']} s")
    return IndexData(
        manifest=manifest,
        documents=[_meta(d) for d in docs],
        sources={d.file: d.text for d in docs},
        passages=passages,
        body_tokens=body,
        context_tokens=ctx,
        vectors=vectors,
    )


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, separators=(",", ":")), "utf-8")


def save_index(data: IndexData, index_dir: str | Path) -> None:
    """Write the index atomically (a temporary folder swapped into place)."""
    import faiss

    target = Path(index_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    _write_json(tmp / "sources.json", {"documents": data.documents, "texts": data.sources})
    _write_json(
        tmp / "passages.json",
        [
            {**p.to_json(), "tokens": t, "context_tokens": c}
            for p, t, c in zip(data.passages, data.body_tokens, data.context_tokens, strict=True)
        ],
    )
    flat = faiss.IndexFlatIP(int(data.manifest["dimension"]))  # type: ignore[arg-type]
    if len(data.vectors):
        flat.add(numpy.ascontiguousarray(data.vectors, dtype=numpy.float32))
    faiss.write_index(flat, str(tmp / "vectors.faiss"))
    # The manifest goes last: a folder without one is never taken for an index.
    (tmp / "manifest.json").write_text(json.dumps(data.manifest, ensure_ascii=False, indent=2), "utf-8")
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        target.rename(old)
    try:
        tmp.rename(target)
    except OSError:
        # Another process put a fresh index there in the meantime; keep theirs.
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def build_lock(index_dir: str | Path) -> Iterator[None]:
    """An exclusive lock (a lock file beside the index) held while one process builds."""
    target = Path(index_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(f".{target.name}.lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_manifest(index_dir: str | Path) -> dict[str, object] | None:
    """The manifest of an index folder, or None if there is no readable one."""
    path = Path(index_dir) / "manifest.json"
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None


def staleness(
    manifest: dict[str, object] | None,
    embedder: Embedder,
    tokenizer: Tokenizer,
    corpus_hash_now: str | None = None,
) -> str | None:
    """Why an index with this manifest cannot be used (None when it can)."""
    if manifest is None:
        return "no index has been built yet"
    checks = [
        ("code_version", CODE_VERSION, "the segmenter code changed"),
        ("model", embedder.name, "it was built with another embedding model"),
        ("dimension", int(embedder.dimension), "its vectors have another dimension"),
        ("tokenizer", tokenizer.version, "the tokenizer or its dictionary changed"),
    ]
    if corpus_hash_now is not None:
        checks.append(("corpus_hash", corpus_hash_now, "the corpus changed"))
    for key, want, why in checks:
        have = manifest.get(key)
        if have != want:
            return f"{why} (index has {key}={have!r}, expected {want!r})"
    return None


def load_index(
    index_dir: str | Path,
    embedder: Embedder,
    tokenizer: Tokenizer,
    corpus_hash_now: str | None = None,
) -> IndexData:
    """Load an index folder, refusing one that is stale.

    :raises StaleIndexError: if the folder is missing, damaged, or built by other code,
        another tokenizer, another model or (when ``corpus_hash_now`` is given) another corpus.
    """
    import faiss

    folder = Path(index_dir)
    manifest = read_manifest(folder)
    why = staleness(manifest, embedder, tokenizer, corpus_hash_now)
    if why is not None:
        raise StaleIndexError(f"the index in {folder} cannot be used: {why}; rebuild it with {FIX_COMMAND}")
    assert manifest is not None
    try:
        src = json.loads((folder / "sources.json").read_text("utf-8"))
        rows = json.loads((folder / "passages.json").read_text("utf-8"))
        flat = faiss.read_index(str(folder / "vectors.faiss"))
    except (OSError, ValueError, RuntimeError) as exc:
        raise StaleIndexError(
            f"the index in {folder} is damaged ({type(exc).__name__}: {exc}); rebuild it with {FIX_COMMAND}"
        ) from exc
    texts: dict[str, str] = src["texts"]
    passages = [Passage.from_json(r, texts[r["doc"]]) for r in rows]
    vectors = flat.reconstruct_n(0, flat.ntotal) if flat.ntotal else numpy.zeros((0, flat.d), numpy.float32)
    if len(passages) != flat.ntotal or flat.d != int(manifest["dimension"]):  # type: ignore[arg-type]
        raise StaleIndexError(f"the index in {folder} is inconsistent; rebuild it with {FIX_COMMAND}")
    return IndexData(
        manifest=manifest,
        documents=src["documents"],
        sources=texts,
        passages=passages,
        body_tokens=[r["tokens"] for r in rows],
        context_tokens=[r["context_tokens"] for r in rows],
        vectors=numpy.ascontiguousarray(vectors, dtype=numpy.float32),
    )
