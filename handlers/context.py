"""The explicit dependencies every use case receives, built once by the service (bot/services.py),
the CLI or a test."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from storage.crypto import DataCipher
from storage.kv import KV, MemoryKV

from .deadlines import WorkCalendar


@dataclass
class Context:
    engine: Any
    cipher: DataCipher
    calendar: WorkCalendar = field(default_factory=WorkCalendar)
    kv: KV = field(default_factory=MemoryKV)
    #: A ``knowledge.KnowledgeBase`` or a zero-argument callable that returns one (loaded lazily).
    knowledge: Any = None
    #: Days a 村级公示 notice stays up before the township may review.
    notice_days: int = 5
    max_description_chars: int = 2000

    def kb(self):
        """The knowledge base, loading it on first use when a loader was given."""
        if callable(self.knowledge) and not hasattr(self.knowledge, "search"):
            self.knowledge = self.knowledge()
        return self.knowledge
