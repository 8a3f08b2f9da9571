"""Errors raised by use cases. Each carries a stable code, a Chinese message for the person who
sees it, the offending field (when there is one) and the HTTP status an edge should use."""

from __future__ import annotations


class HandlerError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "field": self.field}


class ValidationError(HandlerError):
    status = 400
    code = "invalid"


class NotFound(HandlerError):
    status = 404
    code = "not_found"


class Forbidden(HandlerError):
    status = 403
    code = "forbidden"


class Unauthorized(HandlerError):
    status = 401
    code = "unauthorized"


class PayloadTooLarge(HandlerError):
    status = 413
    code = "too_large"


class UnsupportedMediaType(HandlerError):
    status = 415
    code = "unsupported_media_type"


class ServiceUnavailable(HandlerError):
    status = 503
    code = "unavailable"


class Conflict(HandlerError):
    status = 409
    code = "conflict"


class RateLimited(HandlerError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after
