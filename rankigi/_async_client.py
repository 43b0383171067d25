"""``AsyncRankigi``: the asyncio client.

It shares ``ClientCore`` with ``Rankigi``. Tracking only snapshots values and
appends to the transport's queue, so the awaitable ``track_*`` methods return
at once. ``flush``, ``close`` and the handshake calls wait in a worker thread,
so the event loop keeps running while they do.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Callable, Optional, TypeVar

from typing_extensions import Self

from rankigi._client import ClientBase

__all__ = ["AsyncRankigi"]

_T = TypeVar("_T")


class AsyncRankigi(ClientBase):
    """Record what an agent does, from asyncio code.

    Takes the same arguments and options as ``Rankigi``; every method is
    awaitable and none blocks the event loop.

    Raises:
        ValueError: An option is missing or invalid; the message names it.
    """

    async def track_tool_call(
        self,
        tool: str,
        input: Any = None,
        output: Any = None,
        severity: str = "info",
    ) -> Optional[str]:
        """Record a tool call; returns the event id, or None if dropped."""
        return self._track_tool_call(tool, input, output, severity)

    async def track_agent_output(
        self, action: str, output: Any = None, severity: str = "info"
    ) -> Optional[str]:
        """Record an output the agent produced."""
        return self._track_agent_output(action, output, severity)

    async def track_error(
        self, tool: Optional[str] = None, error: Any = None, severity: str = "warn"
    ) -> Optional[str]:
        """Record an error: an exception keeps its type, message and traceback."""
        return self._track_error(tool, error, severity)

    async def track_custom_event(
        self,
        action: str,
        tool: Optional[str] = None,
        payload: Any = None,
        severity: str = "info",
    ) -> Optional[str]:
        """Record an event with your own action name and payload object."""
        return self._track_custom_event(action, tool, payload, severity)

    async def flush(self, timeout: Optional[float] = 5.0) -> bool:
        """Wait, off the event loop, until everything tracked so far is done."""
        return await _in_thread(self._core.transport.flush, timeout)

    async def close(self, timeout: Optional[float] = 5.0) -> bool:
        """Flush, then stop the background thread, off the event loop."""
        return await _in_thread(self._core.close, timeout)

    async def initiate_handshake(
        self,
        target_agent_id: str,
        purpose: str,
        metadata: Optional[Mapping[str, Any]] = None,
        *,
        expires_in: float = 900,
    ) -> dict[str, Any]:
        """Propose a handshake to ``target_agent_id``; see ``Rankigi``."""
        return await _in_thread(
            self._core.initiate_handshake,
            target_agent_id,
            purpose,
            metadata,
            expires_in,
        )

    async def complete_handshake(
        self, handshake_id: str, accepted: bool
    ) -> dict[str, Any]:
        """Accept or reject a handshake aimed at this agent; see ``Rankigi``."""
        return await _in_thread(self._core.complete_handshake, handshake_id, accepted)

    async def verify_handshake(self, handshake_id: str) -> dict[str, Any]:
        """Check a handshake against both chains; see ``Rankigi``."""
        return await _in_thread(self._core.verify_handshake, handshake_id)

    async def __aenter__(self) -> Self:
        self._activate()
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        self._deactivate()
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncRankigi({self._core.describe()})"


async def _in_thread(function: Callable[..., _T], *args: Any) -> _T:
    # asyncio.to_thread exists from Python 3.9; the executor keeps context
    # variables out of it, which the SDK's blocking calls do not need.
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(function, *args))
