"""Agent-to-agent handshakes over HTTP or against the embedded ledger.

Both backends are synchronous and raise ``RankigiError``; the async client
runs them in a worker thread, so the rules live in one place.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import quote

from rankigi import _exceptions as codes
from rankigi._exceptions import RankigiError
from rankigi._version import __version__

if TYPE_CHECKING:
    import httpx

    from rankigi.ledger import Ledger

__all__ = ["HandshakeBackend", "HttpHandshakes", "LedgerHandshakes"]

_CODES_BY_STATUS = {
    400: codes.INVALID_REQUEST,
    401: codes.AUTH_FAILED,
    403: codes.AUTH_FAILED,
    404: codes.NOT_FOUND,
    409: codes.CONFLICT,
    410: codes.EXPIRED,
    413: codes.PAYLOAD_TOO_LARGE,
    422: codes.INVALID_REQUEST,
    429: codes.RATE_LIMITED,
}


class HandshakeBackend:
    """Initiate, complete and verify handshakes; every failure raises."""

    def initiate(
        self,
        initiator: str,
        target: str,
        purpose: str,
        metadata: Optional[Mapping[str, Any]],
        expires_in: float,
    ) -> dict[str, Any]:
        raise NotImplementedError

    def complete(
        self, handshake_id: str, agent_id: str, accepted: bool
    ) -> dict[str, Any]:
        raise NotImplementedError

    def verify(self, handshake_id: str) -> dict[str, Any]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection or file."""


class LedgerHandshakes(HandshakeBackend):
    """Handshakes between agents that share one ledger file."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._ledger: Optional[Ledger] = None

    def initiate(
        self,
        initiator: str,
        target: str,
        purpose: str,
        metadata: Optional[Mapping[str, Any]],
        expires_in: float,
    ) -> dict[str, Any]:
        from rankigi.ledger import initiate_handshake

        return self._call(
            initiate_handshake, initiator, target, purpose, metadata, expires_in
        )

    def complete(
        self, handshake_id: str, agent_id: str, accepted: bool
    ) -> dict[str, Any]:
        from rankigi.ledger import complete_handshake

        return self._call(complete_handshake, handshake_id, agent_id, accepted)

    def verify(self, handshake_id: str) -> dict[str, Any]:
        from rankigi.ledger import verify_handshake

        return self._call(verify_handshake, handshake_id)

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    def _call(self, operation: Any, *args: Any) -> dict[str, Any]:
        from rankigi.ledger import HandshakeError, Ledger, LedgerError

        try:
            if self._ledger is None:
                self._ledger = Ledger(self._path)
            result: dict[str, Any] = operation(self._ledger, *args)
            return result
        except HandshakeError as exc:
            raise RankigiError(exc.code, exc.message, exc.status) from exc
        except LedgerError as exc:
            raise RankigiError(codes.LEDGER_ERROR, str(exc)) from exc


class HttpHandshakes(HandshakeBackend):
    """Handshakes through a RANKIGI-compatible server."""

    def __init__(self, base_url: str, api_key: str, timeout: float) -> None:
        self._base_url = base_url
        self._api_key = api_key
        self._timeout = timeout
        self._http: Optional[httpx.Client] = None

    def initiate(
        self,
        initiator: str,
        target: str,
        purpose: str,
        metadata: Optional[Mapping[str, Any]],
        expires_in: float,
    ) -> dict[str, Any]:
        body = {
            "initiator_agent_id": initiator,
            "target_agent_id": target,
            "purpose": purpose,
            "metadata": dict(metadata or {}),
            "expires_in": expires_in,
        }
        return self._request("POST", "/api/handshakes", body)

    def complete(
        self, handshake_id: str, agent_id: str, accepted: bool
    ) -> dict[str, Any]:
        path = f"/api/handshakes/{_segment(handshake_id)}/complete"
        return self._request("POST", path, {"agent_id": agent_id, "accepted": accepted})

    def verify(self, handshake_id: str) -> dict[str, Any]:
        return self._request("GET", f"/api/handshakes/{_segment(handshake_id)}/verify")

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def _request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        import httpx

        if self._http is None:
            self._http = httpx.Client(
                headers={
                    "Authorization": f"Bearer {self._api_key}",
                    "User-Agent": f"rankigi-python/{__version__}",
                },
                timeout=self._timeout,
            )
        content = None
        if body is not None:
            try:
                content = json.dumps(body, allow_nan=False).encode("utf-8")
            except (TypeError, ValueError) as exc:
                raise RankigiError(
                    codes.INVALID_REQUEST,
                    f"the {method} {path} request cannot be sent as JSON: {exc}; "
                    "pass strings, numbers, lists and dicts",
                ) from exc
        headers = {"Content-Type": "application/json"} if content else {}
        try:
            response = self._http.request(
                method, self._base_url + path, content=content, headers=headers
            )
        except httpx.HTTPError as exc:
            raise RankigiError(
                codes.NETWORK_ERROR,
                f"{method} {path} failed: {type(exc).__name__}: {exc}",
            ) from exc
        return _parse(response, method, path)


def _segment(handshake_id: Any) -> str:
    if not isinstance(handshake_id, str) or not handshake_id:
        raise RankigiError(
            codes.INVALID_REQUEST,
            f"handshake_id {handshake_id!r:.80} is invalid; pass the id that "
            "initiate_handshake returned",
        )
    return quote(handshake_id, safe="")


def _parse(response: httpx.Response, method: str, path: str) -> dict[str, Any]:
    status = response.status_code
    try:
        body = response.json()
    except (ValueError, json.JSONDecodeError):
        body = None
    if status < 300 and isinstance(body, dict):
        return body
    message = f"{method} {path} returned {status}"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        message = str(error["message"])[:500]
    code = _CODES_BY_STATUS.get(status, codes.SERVER_ERROR)
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        code = error["code"]
    raise RankigiError(code, message, status)
