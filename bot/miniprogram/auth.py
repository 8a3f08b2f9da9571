"""Mini-program session tokens.

A token is 32 random bytes from ``secrets`` (``hnmp_`` + urlsafe base64), given to the client
once at login. The database keeps only its SHA-256 (``ApiSession.token_hash``): a copy of the
database lets nobody act as a villager. Tokens expire after ``HUINONG_SESSION_HOURS`` and are
revoked by ``POST /api/v1/logout``. WeChat's ``session_key`` is stored encrypted with the data
key and never returned.
"""

from __future__ import annotations

import hashlib
import re

from flask import g, request

from handlers import miniprogram as mp
from handlers import miniprogram_texts as T

TOKEN_PREFIX = "hnmp_"
_TOKEN_RE = re.compile(r"^hnmp_[A-Za-z0-9_-]{43}$")


def new_token() -> tuple[str, str]:
    """``(token, hash)``: the token goes to the client, the hash to the database."""
    import secrets

    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def bearer_token(*, required: bool = True) -> str | None:
    """The well-formed bearer token of this request; ``Unauthorized`` when it is missing or malformed."""
    header = request.headers.get("Authorization", "")
    if not header:
        if required:
            raise mp.Unauthorized(T.LOGIN_REQUIRED, code="login_required")
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not _TOKEN_RE.match(token):
        raise mp.Unauthorized(T.TOKEN_INVALID, code="invalid_token")
    return token


def current_user(ctx, *, required: bool = True) -> mp.MpUser | None:
    """Authenticate once per request and keep the user in ``g``."""
    if "mp_user" not in g:
        token = bearer_token(required=required)
        g.mp_token_hash = hash_token(token) if token else None
        g.mp_user = mp.authenticate(ctx, g.mp_token_hash) if token else None
    return g.mp_user

