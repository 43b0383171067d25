"""The error responses of the server.

Every error body has the shape ``{"ok": false, "error": {"code", "message"}}``,
with the codes the ingest protocol defines. A rejection caused by one field of
one event also names them in ``"field"`` and ``"index"``.
"""

from __future__ import annotations

from typing import Any, Optional

from rankigi import _exceptions as codes

__all__ = [
    "ApiError",
    "auth_failed",
    "error_body",
    "invalid_request",
    "not_found",
    "payload_too_large",
]


class ApiError(Exception):
    """A request the server rejects with ``status`` and an error body.

    ``headers`` are added to the response, such as ``Retry-After`` on a 429.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: Optional[str] = None,
        index: Optional[int] = None,
        headers: Optional[dict[str, str]] = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.index = index
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """Return the JSON body of the error response."""
        return error_body(self.code, self.message, field=self.field, index=self.index)


def error_body(
    code: str,
    message: str,
    *,
    field: Optional[str] = None,
    index: Optional[int] = None,
) -> dict[str, Any]:
    """Return ``{"ok": false, "error": {...}}`` for ``code`` and ``message``."""
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    if index is not None:
        error["index"] = index
    return {"ok": False, "error": error}


def invalid_request(message: str, status: int = 400, **details: Any) -> ApiError:
    """Return a 400 (or ``status``) ``INVALID_REQUEST`` error."""
    return ApiError(status, codes.INVALID_REQUEST, message, **details)


def auth_failed(message: str, status: int = 401) -> ApiError:
    """Return a 401 (or ``status``) ``AUTH_FAILED`` error.

    A 401 also carries ``WWW-Authenticate: Bearer``, as RFC 6750 requires.
    """
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return ApiError(status, codes.AUTH_FAILED, message, headers=headers)


def not_found(message: str) -> ApiError:
    """Return a 404 ``NOT_FOUND`` error."""
    return ApiError(404, codes.NOT_FOUND, message)


def payload_too_large(message: str) -> ApiError:
    """Return a 413 ``PAYLOAD_TOO_LARGE`` error."""
    return ApiError(413, codes.PAYLOAD_TOO_LARGE, message)
