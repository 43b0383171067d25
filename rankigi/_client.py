"""``Rankigi``: the synchronous client."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import Token
from types import TracebackType
from typing import Any, Optional

from typing_extensions import Self, Unpack

from rankigi._config import ClientOptions, Config
from rankigi._context import active_client, reset_var
from rankigi._core import ClientCore, ErrorHandler
from rankigi._exporters import Exporter

__all__ = ["ClientBase", "Rankigi"]


class ClientBase:
    """Base of both clients: options, the core, tracking and activation.

    The public ``track_*`` methods live on the subclasses, because the async
    client's are coroutines; both call the ``_track_*`` helpers here.
    """

    def __init__(
        self,
        api_key: Optional[str] = None,
        agent_id: Optional[str] = None,
        *,
        on_error: Optional[ErrorHandler] = None,
        _exporter: Optional[Exporter] = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        config = Config.load(api_key=api_key, agent_id=agent_id, **options)
        self._core = ClientCore(config, on_error, _exporter)
        self._context_tokens: list[Token[Optional[ClientBase]]] = []

    @property
    def agent_id(self) -> str:
        """The agent whose chain this client appends to."""
        return self._core.config.agent_id

    @property
    def config(self) -> Config:
        """The validated options."""
        return self._core.config

    @property
    def on_error(self) -> Optional[ErrorHandler]:
        """Callback for dropped events and delivery failures."""
        return self._core.on_error

    @on_error.setter
    def on_error(self, callback: Optional[ErrorHandler]) -> None:
        self._core.on_error = callback

    def stats(self) -> dict[str, Any]:
        """Return counts: enqueued, sent, retried, dropped and dropped by reason."""
        return self._core.transport.stats()

    def _track_tool_call(
        self, tool: str, input: Any, output: Any, severity: str
    ) -> Optional[str]:
        core = self._core
        return core.record(core.factory.tool_call, tool, input, output, severity)

    def _track_agent_output(
        self, action: str, output: Any, severity: str
    ) -> Optional[str]:
        core = self._core
        return core.record(core.factory.agent_output, action, output, severity)

    def _track_error(self, tool: Any, error: Any, severity: str) -> Optional[str]:
        if error is None and isinstance(tool, BaseException):
            tool, error = None, tool
        core = self._core
        return core.record(core.factory.error, tool, error, severity)

    def _track_custom_event(
        self, action: str, tool: Optional[str], payload: Any, severity: str
    ) -> Optional[str]:
        core = self._core
        return core.record(core.factory.custom, action, tool, payload, severity)

    def _activate(self) -> None:
        # A with-block also makes this the active client, so decorated
        # functions called inside it record here; _deactivate restores the
        # previous one.
        self._context_tokens.append(active_client.set(self))

    def _deactivate(self) -> None:
        if self._context_tokens:
            reset_var(active_client, self._context_tokens.pop())


class Rankigi(ClientBase):
    """Record what an agent does into a tamper-evident audit trail.

    With an API key, events go to the RANKIGI API at ``base_url``; without
    one, into the embedded SQLite ledger at ``ledger_path``. Every option can
    also come from a ``RANKIGI_*`` environment variable (see the README).
    Tracking never raises: failures reach ``on_error`` as ``RankigiError``.

    Args:
        api_key: The RANKIGI API key (``RANKIGI_API_KEY``).
        agent_id: The agent whose chain the events join (``RANKIGI_AGENT_ID``).
        on_error: Called with a ``RankigiError`` whenever events are dropped.
        **options: Transport, capture and destination options.

    Raises:
        ValueError: An option is missing or invalid; the message names it.
    """

    def track_tool_call(
        self,
        tool: str,
        input: Any = None,
        output: Any = None,
        severity: str = "info",
    ) -> Optional[str]:
        """Record a tool call with its input and output.

        Returns the event id, or None if the event was dropped.
        """
        return self._track_tool_call(tool, input, output, severity)

    def track_agent_output(
        self, action: str, output: Any = None, severity: str = "info"
    ) -> Optional[str]:
        """Record an output the agent produced, such as a reply or a report."""
        return self._track_agent_output(action, output, severity)

    def track_error(
        self,
        tool: Optional[str] = None,
        error: Any = None,
        severity: str = "warn",
    ) -> Optional[str]:
        """Record an error: an exception keeps its type, message and traceback.

        ``track_error(exc)`` works too, as in the 1.0.0 client.
        """
        return self._track_error(tool, error, severity)

    def track_custom_event(
        self,
        action: str,
        tool: Optional[str] = None,
        payload: Any = None,
        severity: str = "info",
    ) -> Optional[str]:
        """Record an event with your own action name and payload object."""
        return self._track_custom_event(action, tool, payload, severity)

    def flush(self, timeout: Optional[float] = 5.0) -> bool:
        """Wait until every event tracked so far is delivered or dropped.

        Returns False if ``timeout`` seconds passed first (None waits forever).
        """
        return self._core.transport.flush(timeout)

    def close(self, timeout: Optional[float] = 5.0) -> bool:
        """Flush, then stop the background thread. Safe to call twice.

        Events still queued after ``timeout`` seconds are dropped and
        reported. Returns whether everything was delivered or dropped in time.
        """
        return self._core.close(timeout)

    def initiate_handshake(
        self,
        target_agent_id: str,
        purpose: str,
        metadata: Optional[Mapping[str, Any]] = None,
        *,
        expires_in: float = 900,
    ) -> dict[str, Any]:
        """Propose a handshake from this agent to ``target_agent_id``.

        Appends ``handshake.initiated`` to this agent's chain and returns the
        pending handshake, whose ``id`` the target needs to complete it.

        Raises:
            RankigiError: ``INVALID_REQUEST``, ``AUTH_FAILED``,
                ``NETWORK_ERROR`` and the other codes of the README.
        """
        return self._core.initiate_handshake(
            target_agent_id, purpose, metadata, expires_in
        )

    def complete_handshake(self, handshake_id: str, accepted: bool) -> dict[str, Any]:
        """Accept or reject a handshake; only its target agent may.

        Raises:
            RankigiError: ``NOT_FOUND``, ``AUTH_FAILED`` (not the target),
                ``CONFLICT`` (already completed) or ``EXPIRED``.
        """
        return self._core.complete_handshake(handshake_id, accepted)

    def verify_handshake(self, handshake_id: str) -> dict[str, Any]:
        """Check a handshake against both chains.

        Returns a dict whose ``valid`` is true only for an accepted handshake
        whose two chain events exist, hash correctly and agree; ``reason``
        names the failed check otherwise.
        """
        return self._core.verify_handshake(handshake_id)

    def __enter__(self) -> Self:
        self._activate()
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self._deactivate()
        self.close()

    def __repr__(self) -> str:
        return f"Rankigi({self._core.describe()})"
