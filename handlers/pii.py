"""Personal data in free text: find it, mask it, keep it out of logs.

Villagers type their ID-card number and phone into the chat ("身份证61272419800101123X 电话
138 1234 5678"). The report handler stores what :func:`find_pii` returns in the encrypted fields
and keeps only :func:`mask_pii` output in the case description; :class:`PiiMaskingFilter` does the
same for every log record.

- ID numbers: 18 characters, the ISO 7064 MOD 11-2 check character validated (trailing ``X`` or
  ``x``); a single space or dash is allowed between the 6-8-4 groups. 15-digit legacy numbers
  have no check character and are not *reported*, but they are masked.
- Phones: mainland mobiles ``1[3-9]`` + 9 digits, optionally ``+86``/``86``, with spaces or dashes
  anywhere inside.
- Masking errs on the side of privacy: any other run of 15 or more digits (an ID with a typo, a
  bank card) is masked too, although :func:`find_pii` does not report it.

Full-width digits (``１３８…``), which Chinese input methods produce, are treated as digits.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

__all__ = ["PII", "PiiMaskingFilter", "find_pii", "mask_pii", "valid_id_number"]

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"

# Full-width digits, X/x, dash and the ideographic space map one-to-one onto ASCII, so offsets
# found in the translated text are offsets in the original.
_FULLWIDTH = str.maketrans(
    {
        **{chr(0xFF10 + i): str(i) for i in range(10)},
        "\uff38": "X",
        "\uff58": "x",
        "\uff0d": "-",
        "\u2014": "-",
        "\u2013": "-",
        "\u3000": " ",
    }
)

_SEP = r"[ \-]?"
# 6-digit area code, 8-digit birth date, 3-digit sequence, check character; one optional
# separator between the groups, never a digit or letter on either side.
_ID_RE = re.compile(rf"(?<![0-9A-Za-z])([1-9]\d{{5}}){_SEP}(\d{{8}}){_SEP}(\d{{3}}[0-9Xx])(?![0-9A-Za-z])")
_PHONE_RE = re.compile(r"(?<![0-9])(?:\+?86[ \-]?)?(1[3-9](?:[ \-]*\d){9})(?![0-9])")
_LONG_DIGITS_RE = re.compile(r"(?<![0-9])\d(?:[ \-]?\d){14,}(?![0-9])")
_LEGACY_ID_RE = re.compile(r"(?<![0-9A-Za-z])[1-9]\d{14}(?![0-9A-Za-z])")


@dataclass(frozen=True)
class PII:
    """Personal data found in a text, normalised (no separators, upper-case ``X``)."""

    id_numbers: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.id_numbers or self.phones)


def valid_id_number(value: str) -> bool:
    """True when ``value`` is 18 characters whose last one is the correct check character."""
    if len(value) != 18 or not value[:17].isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(value[:17], _WEIGHTS, strict=True))
    return _CHECK[total % 11] == value[17].upper()


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit() or ch in "Xx")


def _spans(text: str) -> tuple[list[tuple[int, int, str]], list[tuple[int, int, str]]]:
    """Return (id spans, phone spans) as (start, end, normalised value), never overlapping."""
    ascii_text = text.translate(_FULLWIDTH)
    ids: list[tuple[int, int, str]] = []
    for m in _ID_RE.finditer(ascii_text):
        value = "".join(m.groups()).upper()
        if valid_id_number(value):
            ids.append((m.start(), m.end(), value))
    phones: list[tuple[int, int, str]] = []
    for m in _PHONE_RE.finditer(ascii_text):
        if any(s < m.end() and m.start() < e for s, e, _ in ids):
            continue
        phones.append((m.start(), m.end(), _digits(m.group(1))))
    return ids, phones


def find_pii(text: str) -> PII:
    """Find valid ID-card numbers and mainland mobile numbers in ``text``.

    >>> find_pii("身份证50023319751203441４，电话138-1234-5678")
    PII(id_numbers=['500233197512034414'], phones=['13812345678'])
    """
    if not text:
        return PII()
    ids, phones = _spans(text)
    return PII(
        id_numbers=list(dict.fromkeys(v for _, _, v in ids)),
        phones=list(dict.fromkeys(v for _, _, v in phones)),
    )


def _mask_id(value: str) -> str:
    return value[:6] + "*" * (len(value) - 10) + value[-4:]


def _mask_phone(value: str) -> str:
    return value[:3] + "****" + value[-4:]


def mask_pii(text: str) -> str:
    """Replace ID numbers, phones and other long digit runs by masked forms.

    >>> mask_pii("身份证61272419800101123x 电话13812345678")
    '身份证612724********123X 电话138****5678'
    """
    if not text:
        return text
    ids, phones = _spans(text)
    replacements = [(s, e, _mask_id(v)) for s, e, v in ids]
    replacements += [(s, e, _mask_phone(v)) for s, e, v in phones]
    ascii_text = text.translate(_FULLWIDTH)
    taken = [(s, e) for s, e, _ in replacements]
    for pattern in (_LEGACY_ID_RE, _LONG_DIGITS_RE):
        for m in pattern.finditer(ascii_text):
            if any(s < m.end() and m.start() < e for s, e in taken):
                continue
            replacements.append((m.start(), m.end(), _mask_id(_digits(m.group(0)))))
            taken.append((m.start(), m.end()))
    if not replacements:
        return text
    out: list[str] = []
    pos = 0
    for s, e, masked in sorted(replacements):
        out.append(text[pos:s])
        out.append(masked)
        pos = e
    out.append(text[pos:])
    return "".join(out)


class PiiMaskingFilter(logging.Filter):
    """A logging filter that masks ID numbers and phones in every record it sees.

    The message is rendered with its arguments first (a phone passed as ``%s`` is masked too),
    then stored back as a plain string. Attach it to handlers, not loggers, so that records
    propagated from child loggers are masked as well::

        handler.addFilter(PiiMaskingFilter())
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: mask what we can, never drop it
            message = str(record.msg)
        masked = mask_pii(message)
        if masked != message or record.args:
            record.msg = masked
            record.args = None
        if record.exc_text:
            record.exc_text = mask_pii(record.exc_text)
        if record.exc_info and not record.exc_text:
            # Render the traceback now so that exception messages are masked too.
            record.exc_text = mask_pii(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = mask_pii(record.stack_info)
        return True
