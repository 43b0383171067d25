"""The logic that the sync and async clients share.

``ClientCore`` owns the options, the event factory and the transport. The
public clients are thin shells over it, so there is one copy of every rule.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Any, Callable, Optional

from rankigi import _exceptions as codes
from rankigi._config import Config
from rankigi._events import EventFactory
from rankigi._exceptions import RankigiError
from rankigi._exporters import Exporter, HttpExporter, LedgerExporter
from rankigi._handshake import HandshakeBackend, HttpHandshakes, LedgerHandshakes
from rankigi._transport import Transport

__all__ = ["ClientCore", "ErrorHandler"]

logger = logging.getLogger("rankigi")

ErrorHandler = Callable[[RankigiError], Any]

_announced: set[str] = set()
_announce_lock = threading.Lock()


class ClientCore:
    """Capture events and hand them to the transport; never raises."""

    def __init__(
        self,
        config: Config,
        on_error: Optional[ErrorHandler] = None,
        exporter: Optional[Exporter] = None,
    ) -> None:
        self.config = config
        self.on_error = on_error
        self.factory = EventFactory(config)
        self.exporter = exporter or _make_exporter(config)
        self.transport = Transport(config, self.exporter, self.report)
        self._handshakes: Optional[HandshakeBackend] = None
        self._handshakes_lock = threading.Lock()
        if exporter is None and config.enabled:
            _announce(config, self.exporter)

    def record(self, build: Callable[..., dict[str, Any]], *args: Any) -> Optional[str]:
        """Build an event with ``build(*args)`` and queue it.

        Returns the event id, or None when the event was dropped.
        """
        if not self.config.enabled:
            return None
        try:
            event = build(*args)
        except Exception as exc:
            # The serializer never raises, so this is a bug in the SDK; it
            # still must not reach the caller.
            logger.debug("capturing an event failed", exc_info=True)
            self.transport.count_drop(codes.CAPTURE_FAILED, 1)
            self.report(
                RankigiError(
                    codes.CAPTURE_FAILED,
                    f"dropped 1 event: capturing it failed with {exc!r}",
                    event_count=1,
                )
            )
            return None
        if self.transport.enqueue(event):
            return str(event["event_id"])
        return None

    def report(self, error: RankigiError) -> None:
        """Pass ``error`` to ``on_error``; an exception it raises is logged."""
        callback = self.on_error
        if callback is None:
            return
        try:
            callback(error)
        except Exception:
            logger.debug("on_error callback raised; ignoring it", exc_info=True)

    def initiate_handshake(
        self,
        target_agent_id: str,
        purpose: str,
        metadata: Optional[Mapping[str, Any]],
        expires_in: float,
    ) -> dict[str, Any]:
        """Start a handshake from this client's agent; raises ``RankigiError``."""
        self._check_open()
        # Events tracked before the handshake go into the chain before its
        # event, so the chain order matches what the agent did.
        self.transport.flush(self.config.request_timeout_ms / 1000)
        if metadata is not None:
            # The same snapshot, limits and redaction as tracked values, so
            # no secret-looking key reaches the ledger or the server.
            metadata = self.factory.capture(metadata)
        return self.handshakes().initiate(
            self.config.agent_id, target_agent_id, purpose, metadata, expires_in
        )

    def complete_handshake(self, handshake_id: str, accepted: bool) -> dict[str, Any]:
        """Accept or reject a handshake aimed at this client's agent."""
        self._check_open()
        self.transport.flush(self.config.request_timeout_ms / 1000)
        return self.handshakes().complete(handshake_id, self.config.agent_id, accepted)

    def verify_handshake(self, handshake_id: str) -> dict[str, Any]:
        """Check a handshake against both agents' chains."""
        self._check_open()
        return self.handshakes().verify(handshake_id)

    def _check_open(self) -> None:
        if self.transport.closed:
            raise RankigiError(
                codes.CLIENT_CLOSED,
                "the client is closed; make handshake calls before close() "
                "or create a new client",
            )

    def handshakes(self) -> HandshakeBackend:
        with self._handshakes_lock:
            if self._handshakes is None:
                self._handshakes = _make_handshakes(self.config, self.exporter)
            return self._handshakes

    def close(self, timeout: Optional[float]) -> bool:
        """Close the transport and the handshake connection."""
        done = self.transport.close(timeout)
        with self._handshakes_lock:
            if self._handshakes is not None:
                self._handshakes.close()
                self._handshakes = None
        return done

    def describe(self) -> str:
        return f"agent_id={self.config.agent_id!r}, sink={self.exporter.description!r}"


def _make_exporter(config: Config) -> Exporter:
    if config.uses_ledger:
        return LedgerExporter(os.path.abspath(config.ledger_path))
    assert config.api_key is not None
    return HttpExporter(
        config.base_url,
        config.api_key,
        config.batch_size,
        config.request_timeout_ms / 1000,
    )


def _make_handshakes(config: Config, exporter: Exporter) -> HandshakeBackend:
    if isinstance(exporter, LedgerExporter):
        return LedgerHandshakes(exporter.path)
    if config.uses_ledger:
        return LedgerHandshakes(os.path.abspath(config.ledger_path))
    assert config.api_key is not None
    return HttpHandshakes(
        config.base_url, config.api_key, config.request_timeout_ms / 1000
    )


def _announce(config: Config, exporter: Exporter) -> None:
    """Say once per process and destination where events are going."""
    with _announce_lock:
        if exporter.description in _announced:
            return
        _announced.add(exporter.description)
    if config.uses_ledger:
        logger.info(
            "no API key set: recording events into %s; "
            "run `rankigi verify` to check it",
            exporter.description,
        )
    else:
        logger.info("sending events to %s", exporter.description)
