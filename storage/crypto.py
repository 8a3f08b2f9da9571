"""Encryption of personal data at rest (ID numbers, phones) and blind indexes to find them.

Values are sealed with AES-256-GCM under a key derived from ``HUINONG_DATA_KEY``; each value
gets a fresh random nonce, so the same ID number encrypts differently every time. To look a
value up without decrypting every row, a keyed HMAC of its normalised form (the "blind index")
is stored beside it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["DataCipher", "DataKeyError", "generate_data_key", "mask_id_number", "mask_phone"]

_PREFIX = "v1:"


class DataKeyError(ValueError):
    """The data key is missing or malformed, or a stored value cannot be decrypted with it."""


def generate_data_key() -> str:
    """A new random key in the format ``HUINONG_DATA_KEY`` expects (urlsafe base64, 32 bytes)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")


class DataCipher:
    def __init__(self, key: str):
        try:
            raw = base64.urlsafe_b64decode(key.encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise DataKeyError("HUINONG_DATA_KEY is not urlsafe base64") from exc
        if len(raw) != 32:
            raise DataKeyError(
                "HUINONG_DATA_KEY must decode to 32 bytes; generate one with "
                "`huinong check-config --generate-key`"
            )
        self._aead = AESGCM(hashlib.sha256(b"huinong-enc" + raw).digest())
        self._mac_key = hashlib.sha256(b"huinong-idx" + raw).digest()

    def encrypt(self, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, value.encode("utf-8"), None)
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, token: str | None) -> str | None:
        if not token:
            return None
        if not token.startswith(_PREFIX):
            raise DataKeyError("stored value is not in the expected encrypted format")
        blob = base64.urlsafe_b64decode(token[len(_PREFIX):].encode("ascii"))
        try:
            return self._aead.decrypt(blob[:12], blob[12:], None).decode("utf-8")
        except Exception as exc:  # cryptography raises InvalidTag
            raise DataKeyError("cannot decrypt a stored value: was HUINONG_DATA_KEY changed?") from exc

    def blind_index(self, value: str | None) -> str | None:
        """A keyed hash of the value with spaces and dashes removed and letters upper-cased."""
        if not value:
            return None
        norm = "".join(ch for ch in value if ch not in " -\u3000").upper()
        return hmac.new(self._mac_key, norm.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def mask_id_number(value: str | None) -> str:
    """``612724198305121236`` → ``612724********1236`` (what lists, logs and exports show)."""
    if not value:
        return ""
    if len(value) <= 8:
        return "*" * len(value)
    return value[:6] + "*" * (len(value) - 10) + value[-4:]


def mask_phone(value: str | None) -> str:
    """``13812345678`` → ``138****5678``."""
    if not value:
        return ""
    if len(value) < 7:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 7) + value[-4:]
