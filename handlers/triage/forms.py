"""The fields of the case-page forms: plain strings in, checked values out, Chinese messages on refusal."""

from __future__ import annotations

import re
from typing import Any

from storage.enums import AssistanceKind

from .. import triage_texts as T
from ..errors import ValidationError

MAX_NOTE = 1000
MAX_EVIDENCE = 300
MAX_REASON = 200
MAX_AMOUNT = 1_000_000


def checked_text(value: Any, key: str, *, limit: int, label: str, required: bool = False) -> str:
    """A free-text field: trimmed, at most ``limit`` characters, no control characters but newline and tab."""
    value = str(value or "").strip()
    value = value.replace("\r\n", "\n")
    if required and not value:
        raise ValidationError(T.FIELD_REQUIRED.format(label=label), field=key)
    if len(value) > limit:
        raise ValidationError(T.FIELD_TOO_LONG.format(label=label, limit=limit), field=key)
    if any(ord(ch) < 32 and ch not in "\n\t" for ch in value):
        raise ValidationError(T.FIELD_BAD_CHARS.format(label=label), field=key)
    return value


def checked_note(value: Any, *, required: bool = False) -> str:
    return checked_text(value, "note", limit=MAX_NOTE, label=T.LABEL_NOTE, required=required)


def checked_amount(value: Any) -> int | None:
    """An amount in whole yuan, or None when left empty."""
    raw = str(value or "").strip()
    if not raw:
        return None
    if not re.fullmatch(r"\d{1,7}", raw) or int(raw) > MAX_AMOUNT:
        raise ValidationError(T.BAD_AMOUNT, field="amount")
    return int(raw)


def checked_kind(value: Any) -> str:
    try:
        return AssistanceKind.parse(str(value or "")).value
    except ValueError as exc:
        raise ValidationError(T.BAD_KIND, field="kind") from exc


def checked_id(value: Any, message: str, key: str) -> int:
    """A numeric id posted as text."""
    raw = str(value or "")
    if not raw.isdigit():
        raise ValidationError(message, field=key)
    return int(raw)


def field(form: dict[str, Any], key: str) -> str:
    """One posted value as a string ('' when missing)."""
    return str(form.get(key) or "")


def listed(form: dict[str, Any], key: str) -> list[str]:
    """A posted multi-value field (checkboxes) as a list."""
    values = form.get(key) or []
    return [values] if isinstance(values, str) else list(values)
