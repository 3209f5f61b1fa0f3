"""One exception tree; each class carries its HTTP status and a stable error code."""

from __future__ import annotations

from typing import Any


class ThinsyncError(Exception):
    """Base of every error we raise on purpose; `message` is a plain sentence for operators."""

    status = 500
    code = "internal"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The public error body `{"error", "message"}` (plus details when there are any)."""
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class BadRequest(ThinsyncError):
    status = 400
    code = "bad_request"


class Unauthorized(ThinsyncError):
    status = 401
    code = "unauthorized"


class Forbidden(ThinsyncError):
    status = 403
    code = "forbidden"


class NotFound(ThinsyncError):
    status = 404
    code = "not_found"


class MethodNotAllowed(ThinsyncError):
    status = 405
    code = "method_not_allowed"


class Conflict(ThinsyncError):
    status = 409
    code = "conflict"


class ReadOnly(ThinsyncError):
    """This server refuses edits (the secondary of a mirrored pair)."""

    status = 409
    code = "read_only"


class PreconditionFailed(ThinsyncError):
    status = 412
    code = "precondition_failed"


class TooLarge(ThinsyncError):
    status = 413
    code = "too_large"


class UnsupportedMediaType(ThinsyncError):
    status = 415
    code = "unsupported_media_type"


class Invalid(ThinsyncError):
    status = 422
    code = "invalid"


class TooManyRequests(ThinsyncError):
    status = 429
    code = "too_many_requests"


class Unavailable(ThinsyncError):
    status = 503
    code = "unavailable"


class PeerError(ThinsyncError):
    status = 502
    code = "peer_error"


class StoreError(ThinsyncError):
    """The data directory cannot be used (missing, locked, newer schema, corrupt)."""

    status = 500
    code = "store_error"
