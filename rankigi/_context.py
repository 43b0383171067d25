"""Context variables and client lookup shared by the client and the decorators.

A decorated call or a ``track_*`` call finds its client in this order: the
``client=`` passed to the decorator, the client active in the current context
(set by ``with client:`` or ``rankigi.use(client)``), then the process default
set by ``rankigi.init()``. Context variables follow ``await``, asyncio tasks
and ``contextvars.copy_context().run``, and a new thread starts with an empty
context unless the context is copied into it.
"""

from __future__ import annotations

import logging
import threading
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from rankigi._client import ClientBase, Rankigi

__all__ = [
    "Links",
    "RunInfo",
    "active_client",
    "current_event_id",
    "current_links",
    "current_run",
    "default_client",
    "get_client",
    "init",
    "reset_var",
    "set_default_client",
    "suppress_recording",
]

logger = logging.getLogger("rankigi.context")

# (run_id, run_name) of the innermost ``rankigi.run()`` scope.
RunInfo = tuple[str, str]
# (parent_event_id, run) as an event records them.
Links = tuple[Optional[str], Optional[RunInfo]]

# Set on the transport's own thread so instrumented HTTP libraries never
# record the SDK's own requests.
suppress_recording: ContextVar[bool] = ContextVar(
    "rankigi_suppress_recording", default=False
)

active_client: ContextVar[Optional[ClientBase]] = ContextVar(
    "rankigi_active_client", default=None
)

# The event id of the innermost decorated call running in this context, which
# becomes the parent_event_id of the events recorded inside it.
current_event_id: ContextVar[Optional[str]] = ContextVar(
    "rankigi_current_event_id", default=None
)

current_run: ContextVar[Optional[RunInfo]] = ContextVar(
    "rankigi_current_run", default=None
)


class _DefaultClient:
    """The process-wide default client, one attribute read on the hot path."""

    __slots__ = ("client", "lock")

    def __init__(self) -> None:
        self.client: Optional[ClientBase] = None
        self.lock = threading.Lock()


default_client = _DefaultClient()


def current_links() -> Links:
    """Return the parent event id and run of the current context."""
    return current_event_id.get(), current_run.get()


def get_client(client: Optional[ClientBase] = None) -> Optional[ClientBase]:
    """Return the client that would record here, or None.

    The order is ``client`` itself, then the client active in this context
    (``with client:`` or ``rankigi.use(client)``), then the process default
    that ``rankigi.init()`` set.
    """
    if client is not None:
        return client
    active = active_client.get()
    if active is not None:
        return active
    return default_client.client


def set_default_client(client: Optional[ClientBase]) -> Optional[ClientBase]:
    """Make ``client`` the process default and return the previous default.

    The previous default is neither flushed nor closed; the caller decides.
    """
    with default_client.lock:
        previous = default_client.client
        default_client.client = client
    return previous


def init(
    api_key: Optional[str] = None, agent_id: Optional[str] = None, **options: Any
) -> Rankigi:
    """Create the process default client and return it.

    Decorated functions and integrations record through it wherever no client
    is passed explicitly or active in the context. Calling ``init`` again
    builds a new default and closes the previous one, which flushes what it
    had queued. The arguments are those of ``Rankigi``.

    Raises:
        ValueError: an option is missing or invalid, as for ``Rankigi``; the
            previous default then stays in place.
    """
    from rankigi._client import Rankigi

    client = Rankigi(api_key, agent_id, **options)
    previous = set_default_client(client)
    if previous is not None and previous is not client:
        # Through the core, which closes synchronously for either client.
        previous._core.close(5.0)
    return client


def reset_var(var: ContextVar[Any], token: Token[Any]) -> None:
    """Restore ``var``, whose default is None, to its value before ``token``.

    A token only resets in the context that made it. When a scope ends in
    another context (an async generator finalized by the event loop, say),
    the old value is set instead, which restores the same value there. A
    token used twice changes nothing.
    """
    try:
        var.reset(token)
    except ValueError:
        old = token.old_value
        var.set(None if old is Token.MISSING else old)
    except RuntimeError:
        logger.debug("a context token was reset twice; ignoring the second reset")
