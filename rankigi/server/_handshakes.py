"""Handshake routes: two agents agree on a task, and both chains record it.

- ``POST /api/handshakes``: the key must own ``initiator_agent_id`` (an agent
  with no events yet is claimed for the key); the target may belong to any
  key, since handshakes are how agents of different parties meet.
- ``POST /api/handshakes/{id}/complete``: the key must own ``agent_id``, and
  the ledger checks that it is the handshake's target.
- ``GET /api/handshakes/{id}/verify``: the key must own either party; to
  anyone else the handshake does not exist.

The rules themselves (one completion, expiry, verification) live in
``rankigi.ledger``, shared with the embedded client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rankigi.ledger import (
    HandshakeError,
    complete_handshake,
    get_handshake,
    initiate_handshake,
    verify_handshake,
)
from rankigi.server._body import check_content_type, read_body
from rankigi.server._errors import ApiError, auth_failed, invalid_request, not_found

if TYPE_CHECKING:
    from rankigi.server._app import _Api

__all__ = ["handshake_routes"]

_MAX_BODY_BYTES = 64 * 1024


def handshake_routes(api: _Api) -> list[Route]:
    """Return the handshake routes bound to ``api``."""
    from rankigi.server._app import json_response, run_endpoint

    async def initiate(request: Request) -> Response:
        key = api.authenticate(request)
        body = await _json_object(request)
        initiator = _text(body, "initiator_agent_id")
        await _claim_or_require(api, key, initiator)
        expires_in = body.get("expires_in", 900)
        handshake = await _write(
            api,
            initiate_handshake,
            initiator,
            body.get("target_agent_id"),
            body.get("purpose"),
            body.get("metadata"),
            expires_in,
        )
        return json_response(handshake, 201)

    async def complete(request: Request) -> Response:
        key = api.authenticate(request)
        body = await _json_object(request)
        agent_id = _text(body, "agent_id")
        await _claim_or_require(api, key, agent_id)
        handshake_id = request.path_params["handshake_id"]
        result = await _write(
            api, complete_handshake, handshake_id, agent_id, body.get("accepted")
        )
        return json_response(result)

    async def verify(request: Request) -> Response:
        key = api.authenticate(request)
        handshake_id = request.path_params["handshake_id"]
        handshake = await _write(api, get_handshake, handshake_id)
        parties = (handshake["initiator_agent_id"], handshake["target_agent_id"])
        owned = [
            await anyio.to_thread.run_sync(api.service.owns, key, agent)
            for agent in parties
        ]
        if not any(owned):
            raise not_found(
                f"handshake {handshake_id!r:.80} not found for this API key"
            )
        return json_response(await _write(api, verify_handshake, handshake_id))

    return [
        Route("/api/handshakes", run_endpoint(api, initiate), methods=["POST"]),
        Route(
            "/api/handshakes/{handshake_id}/complete",
            run_endpoint(api, complete),
            methods=["POST"],
        ),
        Route(
            "/api/handshakes/{handshake_id}/verify",
            run_endpoint(api, verify),
            methods=["GET"],
        ),
    ]


async def _write(api: _Api, operation: Any, *args: Any) -> dict[str, Any]:
    """Run a ledger handshake call on the writer, one write at a time."""

    def call() -> dict[str, Any]:
        try:
            result: dict[str, Any] = operation(api.service.writer, *args)
            return result
        except HandshakeError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from exc

    return await anyio.to_thread.run_sync(call, limiter=api.write_slot)


async def _claim_or_require(api: _Api, key: str, agent_id: str) -> None:
    """Let ``key`` act for ``agent_id``: claim it if unowned, else check it."""
    owned = await anyio.to_thread.run_sync(
        api.service.claim, key, agent_id, limiter=api.write_slot
    )
    if not owned:
        raise auth_failed(
            f"agent {agent_id!r:.200} belongs to another API key; act for it "
            "with that key",
            status=403,
        )


async def _json_object(request: Request) -> dict[str, Any]:
    import json

    check_content_type(request.headers.get("content-type"))
    raw = await read_body(
        request.stream(), request.headers.get("content-length"), _MAX_BODY_BYTES
    )
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise invalid_request(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise invalid_request(
            f"the body must be a JSON object, not {type(body).__name__}"
        )
    return body


def _text(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value.strip():
        raise invalid_request(
            f"{field} {value!r:.80} is invalid; pass a non-empty string", field=field
        )
    return value
