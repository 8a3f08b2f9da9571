"""What no response may contain: a stack trace, an exception's name, an SQL fragment, a path of the
machine, or someone else's personal data. Used by the fuzz, leak and authorisation tests."""

from __future__ import annotations

import re
from collections.abc import Iterable

#: Each pattern names what it catches (case-sensitive: HTML's lowercase <select> is not SQL).
LEAK_PATTERNS: dict[str, re.Pattern[str]] = {
    "traceback": re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\", line \d+"),
    "exception name": re.compile(
        r"\b(KeyError|ValueError|TypeError|AttributeError|IndexError|RecursionError|ExpatError|ParseError"
        r"|IntegrityError|OperationalError|ProgrammingError|DataError|DatabaseError|InterfaceError"
        r"|UnicodeDecodeError|UnicodeEncodeError|StaleIndexError|WeChatClientException|InvalidSignatureException"
        r"|DefusedXmlException|EntitiesForbidden|DTDForbidden)\b"),
    "SQL": re.compile(r"\bSELECT\b[^<>]{0,200}\bFROM\b|\bINSERT INTO\b|\bUPDATE\b \S+ \bSET\b|\bDELETE FROM\b"
                      r"|\[SQL: |\[parameters: |Background on this error"),
    "driver": re.compile(r"sqlalchemy|psycopg|sqlite3\.|pg_catalog|redis\.exceptions"),
    "machine path": re.compile(r"site-packages|/\.venv/|/usr/lib/python|/tmp/pytest-of-|/home/\w+/"),
}


def leaks(text: str) -> list[str]:
    """The names of the patterns ``text`` matches, with the match."""
    found = []
    for name, pattern in LEAK_PATTERNS.items():
        m = pattern.search(text)
        if m:
            found.append(f"{name}: {m.group(0)[:80]!r}")
    return found


def assert_no_leak(text: str, *, where: str = "", foreign: Iterable[str] = ()) -> None:
    """``text`` has no trace, SQL or path, and none of the ``foreign`` strings (another user's
    name, phone, ID number, reference …)."""
    problems = leaks(text)
    problems += [f"another user's data: {s!r}" for s in foreign if s and s in text]
    assert not problems, f"{where}: {problems}\n{text[:1500]}"
