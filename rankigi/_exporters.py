"""Where finished events go: the RANKIGI HTTP API, the embedded ledger, memory.

An exporter sends one list of events and either returns or raises
``ExportError``; the transport owns batching, retries and drop accounting.
``batch_limit`` is the maximum number of events one request may carry.
"""

from __future__ import annotations

import email.utils
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Optional

from rankigi import _exceptions as codes
from rankigi._version import __version__

if TYPE_CHECKING:
    import httpx

    from rankigi.ledger import Ledger

__all__ = [
    "ExportError",
    "Exporter",
    "HttpExporter",
    "LedgerExporter",
    "MemoryExporter",
]

logger = logging.getLogger("rankigi.exporters")

_USER_AGENT = f"rankigi-python/{__version__}"
_HEALTH_TIMEOUT_S = 5.0


class ExportError(Exception):
    """A failed send, classified for the transport's retry decision."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status_code: Optional[int] = None,
        retryable: bool = False,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status_code = status_code
        self.retryable = retryable
        self.retry_after = retry_after


class Exporter:
    """Base exporter: subclasses override ``export``."""

    description = "exporter"

    def batch_limit(self, timeout: float) -> Optional[int]:
        """Return the most events one ``export`` call may take, or None for any."""
        return None

    def export(self, events: list[dict[str, Any]], timeout: float) -> None:
        raise NotImplementedError

    def after_fork(self) -> None:
        """Drop connections inherited from the parent process."""

    def close(self) -> None:
        """Release connections and files."""


class MemoryExporter(Exporter):
    """Keep events in a list, for tests."""

    description = "memory"

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def export(self, events: list[dict[str, Any]], timeout: float) -> None:
        with self._lock:
            self.events.extend(events)

    def after_fork(self) -> None:
        self._lock = threading.Lock()
        self.events = []


class LedgerExporter(Exporter):
    """Append events to the embedded SQLite ledger."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.description = f"the embedded ledger at {path}"
        self._ledger: Optional[Ledger] = None

    def export(self, events: list[dict[str, Any]], timeout: float) -> None:
        from rankigi.ledger import InvalidEventError, LedgerError

        try:
            if self._ledger is None:
                from rankigi.ledger import Ledger

                self._ledger = Ledger(self.path)
            self._ledger.append(events)
        except InvalidEventError as exc:
            raise ExportError(codes.INVALID_REQUEST, str(exc)) from exc
        except (LedgerError, OSError) as exc:
            # A locked, full or unwritable file may recover, so retry.
            raise ExportError(codes.LEDGER_ERROR, str(exc), retryable=True) from exc
        except Exception as exc:  # sqlite3 errors and anything unforeseen
            raise ExportError(
                codes.LEDGER_ERROR, f"{type(exc).__name__}: {exc}", retryable=True
            ) from exc

    def after_fork(self) -> None:
        # A SQLite connection must not cross a fork; the child opens its own.
        self._ledger = None

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None


class HttpExporter(Exporter):
    """Send events to ``POST {base_url}/api/ingest`` over one pooled connection."""

    def __init__(
        self, base_url: str, api_key: str, batch_size: int, timeout: float
    ) -> None:
        # Imported here, in the thread that builds the client, not on the
        # worker's first send. A fork() while the worker held the import lock
        # would leave that lock taken in the child, whose worker would then
        # wait on the same import forever.
        import httpcore  # noqa: F401
        import httpx  # noqa: F401

        self.base_url = base_url
        self.description = f"{base_url}/api/ingest"
        self._api_key = api_key
        self._batch_size = batch_size
        self._timeout = timeout
        self._http: Optional[httpx.Client] = None
        self._batching: Optional[bool] = None

    def batch_limit(self, timeout: float) -> Optional[int]:
        if self._batching is None:
            self._batching = self._probe_batching(timeout)
        return self._batch_size if self._batching else 1

    def export(self, events: list[dict[str, Any]], timeout: float) -> None:
        if len(events) == 1 and not self._batching:
            body: Any = events[0]
        else:
            body = {"events": events}
        response = self._request("POST", "/api/ingest", body, timeout)
        if response.status_code >= 300:
            raise _classify(response)

    def after_fork(self) -> None:
        # The pool's sockets belong to the parent; never close them from here.
        self._http = None

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def _client(self) -> httpx.Client:
        if self._http is None:
            import httpx

            self._http = httpx.Client(
                headers={
                    "Authorization": f"Bearer {self._api_key}",
                    "User-Agent": _USER_AGENT,
                },
                timeout=self._timeout,
                follow_redirects=False,
            )
        return self._http

    def _request(
        self, method: str, path: str, body: Any, timeout: float
    ) -> httpx.Response:
        import httpx

        content = None
        headers = {}
        if body is not None:
            content = json.dumps(body, ensure_ascii=False, allow_nan=False).encode()
            headers["Content-Type"] = "application/json"
        try:
            return self._client().request(
                method,
                self.base_url + path,
                content=content,
                headers=headers,
                timeout=timeout,
            )
        except httpx.TimeoutException as exc:
            raise ExportError(
                codes.NETWORK_ERROR,
                f"{method} {path} timed out after {timeout:.1f} s",
                retryable=True,
            ) from exc
        except httpx.HTTPError as exc:
            raise ExportError(
                codes.NETWORK_ERROR,
                f"{method} {path} failed: {type(exc).__name__}: {exc}",
                retryable=True,
            ) from exc

    def _probe_batching(self, timeout: float) -> bool:
        """Ask ``/api/health`` whether the server takes batches.

        A server that cannot be reached raises, so the next attempt probes
        again; any answer that does not announce ``batch`` means one event
        per request, as the hosted service's public API documents.
        """
        response = self._request("GET", "/api/health", None, min(timeout, 5.0))
        if response.status_code >= 500 or response.status_code == 429:
            # A passing outage reveals nothing about the server's
            # capabilities, so this attempt fails and the next one probes.
            raise _classify(response)
        try:
            capabilities = response.json().get("capabilities", [])
        except (ValueError, AttributeError):
            capabilities = []
        batching = response.status_code == 200 and "batch" in capabilities
        logger.debug(
            "server at %s %s batches", self.base_url, "takes" if batching else "lacks"
        )
        return batching


def _classify(response: httpx.Response) -> ExportError:
    status = response.status_code
    message = _error_message(response)
    if status in (401, 403):
        return ExportError(codes.AUTH_FAILED, message, status_code=status)
    if status == 413:
        return ExportError(codes.PAYLOAD_TOO_LARGE, message, status_code=status)
    if status == 429:
        return ExportError(
            codes.RATE_LIMITED,
            message,
            status_code=status,
            retryable=True,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    if status >= 500:
        return ExportError(
            codes.SERVER_ERROR, message, status_code=status, retryable=True
        )
    return ExportError(codes.INVALID_REQUEST, message, status_code=status)


def _error_message(response: httpx.Response) -> str:
    status = response.status_code
    try:
        error = response.json().get("error", {})
        detail = error.get("message") if isinstance(error, dict) else str(error)
    except (ValueError, AttributeError):
        detail = None
    if not detail:
        detail = response.reason_phrase or "no error message"
    return f"server answered {status}: {str(detail)[:200]}"


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """Return the seconds a ``Retry-After`` header requests, or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    return max(0.0, moment.timestamp() - time.time())
