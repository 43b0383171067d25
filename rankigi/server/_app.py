"""The ASGI application: routes, authentication and error responses.

Routes:

- ``GET /api/health``: no key needed; the version and capabilities.
- ``POST /api/ingest``: one event, or ``{"events": [...]}`` stored all or none.
- ``GET /api/agents/{agent_id}/events``: a page of an agent's records.
- ``GET /api/agents/{agent_id}/verify``: the result of checking the chain.

Every route but health needs ``Authorization: Bearer <key>``. A key only sees
the agents it owns: reading another key's agent returns 404, the same as an
agent that does not exist, and writing it returns 403.
"""

from __future__ import annotations

import contextlib
import functools
import json
import json.encoder
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Callable, Optional

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rankigi import _exceptions as codes
from rankigi._version import __version__
from rankigi.ledger import AppendResult, InvalidEventError, LedgerError
from rankigi.server._body import (
    IngestBody,
    check_content_type,
    drain,
    parse_ingest,
    read_body,
)
from rankigi.server._errors import (
    ApiError,
    auth_failed,
    error_body,
    invalid_request,
    not_found,
)
from rankigi.server._handshakes import handshake_routes
from rankigi.server._keys import KeyRing
from rankigi.server._owners import OwnedByAnotherKey
from rankigi.server._ratelimit import RateLimiter
from rankigi.server._service import LedgerService, PreparedIngest
from rankigi.server._settings import ServerSettings

__all__ = ["CAPABILITIES", "create_app"]

logger = logging.getLogger("rankigi.server")

CAPABILITIES = ("batch", "idempotency", "handshakes")

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# The JSON text of a string with non-ASCII characters escaped, as json.dumps
# writes it by default.
_ascii_string = json.encoder.encode_basestring_ascii
# Bodies up to this size are parsed on the event loop, and batches of up to
# this many events are validated and hashed there too. The SDK's default
# batch of 100 events fits both. Larger ones go to a worker thread, so that
# one big batch does not stall every other request. Preparing 256 events of
# the SDK's shape takes a few milliseconds (about 15 µs each, measured with
# benchmarks/ingest.py on a 2-core AMD EPYC VM).
_INLINE_PARSE_BYTES = 64 * 1024
_INLINE_PREPARE_EVENTS = 256


def create_app(settings: ServerSettings) -> Starlette:
    """Return the server's ASGI app, with the ledger already open.

    Raises:
        LedgerError: the ledger cannot be created or opened.
    """
    api = _Api(settings)
    routes = [
        Route("/api/health", api.health, methods=["GET"]),
        Route("/api/ingest", api.ingest, methods=["POST"]),
        Route("/api/agents/{agent_id:path}/events", api.agent_events, methods=["GET"]),
        Route("/api/agents/{agent_id:path}/verify", api.agent_verify, methods=["GET"]),
        *handshake_routes(api),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: _http_error},
        lifespan=api.lifespan,
    )
    app.state.api = api
    return app


def _endpoint(handler: Callable[[_Api, Request], Awaitable[Response]]) -> Any:
    """Turn ``ApiError`` into its response and any other error into a 500."""

    @functools.wraps(handler)
    async def run(self: _Api, request: Request) -> Response:
        return await _answer(self, request, functools.partial(handler, self))

    return run


def run_endpoint(
    api: _Api, handler: Callable[[Request], Awaitable[Response]]
) -> Callable[[Request], Awaitable[Response]]:
    """The same as ``_endpoint``, for a handler bound to ``api`` already."""

    @functools.wraps(handler)
    async def run(request: Request) -> Response:
        api.stats["requests"] += 1
        return await _answer(api, request, handler)

    return run


async def _answer(
    api: _Api, request: Request, handler: Callable[[Request], Awaitable[Response]]
) -> Response:
    try:
        return await handler(request)
    except ApiError as error:
        api.stats["rejected"] += 1
        return json_response(error.body(), error.status, error.headers)
    except Exception:
        # The traceback names code, not request data, so it is safe to log.
        logger.exception("%s %s failed", request.method, request.url.path)
        body = error_body(
            codes.SERVER_ERROR, "the server failed; see its log, then retry"
        )
        return json_response(body, 500)


class _Api:
    """The state of one app, and its route handlers."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.keys = KeyRing(settings.api_keys)
        self.service = LedgerService(settings.ledger_path)
        self.limiter: Optional[RateLimiter] = None
        if settings.rate_limit is not None:
            self.limiter = RateLimiter(settings.rate_limit, settings.burst)
        self.stats = {"requests": 0, "events": 0, "duplicates": 0, "rejected": 0}
        # One write at a time: the service serializes writes anyway, and this
        # keeps waiting requests out of the thread pool.
        self._write_slot = anyio.CapacityLimiter(1)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        logger.info(
            "serving ledger %s for %d API keys", self.service.path, len(self.keys)
        )
        try:
            yield
        finally:
            # Stores the writes already queued before closing the ledger.
            await anyio.to_thread.run_sync(self.service.close)
            stats = self.stats
            logger.info(
                "server stopped after %d requests: stored %d events, "
                "%d duplicates, %d requests rejected",
                stats["requests"],
                stats["events"],
                stats["duplicates"],
                stats["rejected"],
            )

    @_endpoint
    async def health(self, request: Request) -> Response:
        body = {
            "ok": True,
            "version": __version__,
            "capabilities": list(CAPABILITIES),
            "limits": {
                "max_body_bytes": self.settings.max_body_bytes,
                "max_batch_events": self.settings.max_batch_events,
            },
        }
        return json_response(body)

    @_endpoint
    async def ingest(self, request: Request) -> Response:
        self.stats["requests"] += 1
        try:
            key = self._authenticate(request)
            check_content_type(request.headers.get("content-type"))
        except ApiError:
            # Reading the body first lets the client finish sending it, so it
            # receives this response instead of a reset connection.
            await drain(request.stream(), self.settings.max_body_bytes)
            raise
        raw = await read_body(
            request.stream(),
            request.headers.get("content-length"),
            self.settings.max_body_bytes,
        )
        limit = self.settings.max_batch_events
        if len(raw) <= _INLINE_PARSE_BYTES:
            body = parse_ingest(raw, limit)
        else:
            body = await anyio.to_thread.run_sync(parse_ingest, raw, limit)
        if len(body.events) <= _INLINE_PREPARE_EVENTS:
            pending = self._prepare(key, body)
        else:
            pending = await anyio.to_thread.run_sync(self._prepare, key, body)
        results = await self._store(body, pending)
        duplicates = sum(result.duplicate for result in results)
        self.stats["events"] += len(results) - duplicates
        self.stats["duplicates"] += duplicates
        if body.batch:
            return _json_text_response(results_json(results))
        return json_response(results[0].as_dict())

    @_endpoint
    async def agent_events(self, request: Request) -> Response:
        self.stats["requests"] += 1
        key = self._authenticate(request)
        agent_id = request.path_params["agent_id"]
        after = _query_int(request, "after", None, minimum=0)
        limit = _query_int(request, "limit", DEFAULT_PAGE_SIZE, minimum=1)
        limit = min(limit or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        await self._require_owner(key, agent_id)
        records, next_after = await anyio.to_thread.run_sync(
            self.service.events, agent_id, after, limit
        )
        return json_response({"events": records, "next_after": next_after})

    @_endpoint
    async def agent_verify(self, request: Request) -> Response:
        self.stats["requests"] += 1
        key = self._authenticate(request)
        agent_id = request.path_params["agent_id"]
        await self._require_owner(key, agent_id)
        result = await anyio.to_thread.run_sync(self.service.verify, agent_id)
        return json_response(result.as_dict())

    def authenticate(self, request: Request) -> str:
        """Return the fingerprint of the request's key, or raise a 401 or 429."""
        return self._authenticate(request)

    @property
    def write_slot(self) -> anyio.CapacityLimiter:
        """The limiter that lets one ledger write run at a time."""
        return self._write_slot

    def _authenticate(self, request: Request) -> str:
        """Return the fingerprint of the request's key, or raise a 401 or 429."""
        header = request.headers.get("authorization")
        if not header:
            raise auth_failed(
                "missing Authorization header; send 'Authorization: Bearer <API key>'"
            )
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise auth_failed(
                "the Authorization header is not a Bearer token; send "
                "'Authorization: Bearer <API key>'"
            )
        key = self.keys.identify(credentials.strip())
        if key is None:
            # Never echo the key: the message must be safe to log anywhere.
            raise auth_failed(
                "the API key is not valid for this server; use a key that "
                "`rankigi serve` was started with"
            )
        if self.limiter is not None:
            wait = self.limiter.check(key)
            if wait is not None:
                raise ApiError(
                    429,
                    codes.RATE_LIMITED,
                    f"this API key is over its limit of {self.settings.rate_limit:g} "
                    f"requests per second; retry after {wait} s",
                    headers={"Retry-After": str(wait)},
                )
        return key

    async def _require_owner(self, key: str, agent_id: str) -> None:
        owned = await anyio.to_thread.run_sync(self.service.owns, key, agent_id)
        if not owned:
            raise not_found(f"agent {agent_id!r:.200} not found for this API key")

    def _prepare(self, key: str, body: IngestBody) -> PreparedIngest:
        """Validate and hash the events of ``body``, failures as ``ApiError``."""
        try:
            return self.service.prepare(key, body.events)
        except OwnedByAnotherKey as exc:
            raise _owned_by_another_key(exc) from exc
        except InvalidEventError as exc:
            message = str(exc)
            if not body.batch:
                # "event 0: " would point into a batch the client never sent.
                message = message.split(": ", 1)[-1]
            raise invalid_request(
                message, status=422, field=exc.field, index=exc.index
            ) from exc

    async def _store(
        self, body: IngestBody, pending: PreparedIngest
    ) -> list[AppendResult]:
        """Store prepared events, failures as ``ApiError``."""
        try:
            return await self.service.store(pending)
        except OwnedByAnotherKey as exc:
            raise _owned_by_another_key(exc) from exc
        except LedgerError as exc:
            logger.error("could not store %d events: %s", len(body.events), exc)
            raise ApiError(
                503,
                codes.SERVER_ERROR,
                "the ledger could not store the events (see the server log); "
                "nothing was stored, retry later",
            ) from exc


def _owned_by_another_key(exc: OwnedByAnotherKey) -> ApiError:
    return auth_failed(
        f"agent {exc.agent_id!r:.200} belongs to another API key; write "
        "it with that key, or use a different agent_id",
        status=403,
    )


def results_json(results: list[AppendResult]) -> str:
    """Return the batch response body, as ``json_response`` would write it.

    Formatting the fixed shape directly takes about half the time of
    building dicts for ``json.dumps``, for the same text.
    """
    return '{"ok":true,"results":[' + ",".join(map(_result_json, results)) + "]}"


def _result_json(result: AppendResult) -> str:
    strings = (result.event_id, result.event_hash, result.previous_event_hash)
    if type(result.chain_index) is not int or any(type(s) is not str for s in strings):
        # Only a duplicate read back from a ledger edited outside rankigi has
        # other types here; json.dumps writes them as it always did.
        return json.dumps(result.as_dict(), separators=(",", ":"), allow_nan=False)
    text = (
        f'{{"ok":true,"event_id":{_ascii_string(result.event_id)},'
        f'"chain_index":{result.chain_index},'
        f'"event_hash":{_ascii_string(result.event_hash)},'
        f'"previous_event_hash":{_ascii_string(result.previous_event_hash)}'
    )
    return text + (',"duplicate":true}' if result.duplicate else "}")


def json_response(
    body: Any, status: int = 200, headers: Optional[dict[str, str]] = None
) -> Response:
    """Return ``body`` as compact JSON.

    Non-ASCII text is escaped, so a string the ledger decoded with surrogate
    escapes (from a file edited outside rankigi) still encodes.
    """
    content = json.dumps(body, separators=(",", ":"), allow_nan=False)
    return _json_text_response(content, status, headers)


def _json_text_response(
    content: str, status: int = 200, headers: Optional[dict[str, str]] = None
) -> Response:
    return Response(content, status, headers, media_type="application/json")


async def _http_error(request: Request, exc: Exception) -> Response:
    """Return routing errors (404, 405) as the JSON error body."""
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if status == 404:
        error = not_found(
            f"no route {request.method} {request.url.path!r:.200}; see the "
            "endpoints of the ingest protocol"
        )
    elif status == 405:
        error = invalid_request(
            f"{request.method} is not allowed on {request.url.path!r:.200}",
            status=405,
        )
    else:
        error = invalid_request(str(exc.detail), status=status)
    headers = dict(exc.headers or {})
    headers.update(error.headers)
    return json_response(error.body(), error.status, headers)


def _query_int(
    request: Request, name: str, default: Optional[int], *, minimum: int
) -> Optional[int]:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise invalid_request(
            f"query parameter {name}={text!r:.40} is invalid; pass a whole number "
            f"of {minimum} or more",
            field=name,
        )
    return value
