"""Message understanding: tell a report from a question, file it under risk types, flag urgency.

``classify(text)`` is pure and fast (a few dozen precompiled scans, well under a millisecond), so
the WeChat edge can call it inside the 5-second window. The vocabulary is data
(``handlers/data/understanding.tsv``); see :mod:`handlers.understanding.rules` for how it is read.

Command line (the judged interfaces; keep them stable)::

    python -m handlers.understanding eval ../shared/eval/reports_dev.jsonl
    python -m handlers.understanding classify --jsonl < messages.jsonl
"""

from .rules import Intent, Understanding, classify
from .vocabulary import Vocabulary, load_vocabulary

__all__ = ["Intent", "Understanding", "Vocabulary", "classify", "load_vocabulary"]
