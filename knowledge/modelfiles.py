"""What the embedders and the model converter share: the error, the default progress logger,
the manifest that marks a finished model folder, and the JSON writer for its files.

Imports only the standard library, so every embedding module can depend on it.
"""

from __future__ import annotations

import json
import pathlib
import sys
from collections.abc import Callable

__all__ = ["MANIFEST_NAME", "EmbedderError", "Log", "print_to_stderr", "write_json"]

# Files written next to a converted model; their presence marks a complete conversion.
MANIFEST_NAME = "huinong-embedder.json"

Log = Callable[[str], None]


class EmbedderError(Exception):
    """Raised when an embedding model cannot be found, verified, converted or loaded.

    The message always says what went wrong and what to do about it.
    """


def print_to_stderr(message: str) -> None:
    """Default progress logger: one line on stderr."""
    print(message, file=sys.stderr, flush=True)


def write_json(path: pathlib.Path, obj: object) -> None:
    """Write ``obj`` as indented UTF-8 JSON, creating the parent folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
