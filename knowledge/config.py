"""Settings of the knowledge package, read from the environment.

The package never imports the project's settings; the web service passes paths explicitly,
and the CLI and tests use this module. Variables (the project's names):

``HUINONG_CORPUS_DIR``
    folder with ``manifest.json`` and the documents (default: the bundled corpus).
``HUINONG_INSTANCE_DIR``
    instance folder (default ``./instance``); the index lives in ``<instance>/index``.
``HUINONG_EMBEDDING_MODEL``
    a local sentence-transformers folder; empty means the bundled multilingual-e5-small,
    converted once into ``<instance>/models``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = ["KnowledgeConfig", "bundled_corpus_dir"]


def bundled_corpus_dir() -> Path:
    """The corpus shipped inside the package."""
    return Path(str(resources.files("knowledge") / "data" / "corpus"))


@dataclass(frozen=True)
class KnowledgeConfig:
    """Where the corpus, the index and the model cache are."""

    corpus_dir: Path
    instance_dir: Path
    embedding_model: str | None

    @property
    def index_dir(self) -> Path:
        return self.instance_dir / "index"

    @property
    def model_cache_dir(self) -> Path:
        return self.instance_dir / "models"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KnowledgeConfig:
        env = os.environ if environ is None else environ
        corpus = env.get("HUINONG_CORPUS_DIR", "").strip()
        instance = env.get("HUINONG_INSTANCE_DIR", "").strip() or "instance"
        model = env.get("HUINONG_EMBEDDING_MODEL", "").strip() or None
        return cls(
            corpus_dir=Path(corpus).expanduser() if corpus else bundled_corpus_dir(),
            instance_dir=Path(instance).expanduser(),
            embedding_model=model,
        )
