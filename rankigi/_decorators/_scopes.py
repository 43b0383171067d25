"""``use`` and ``run``: context settings as ``with`` blocks and as decorators.

As a decorator, a scope applies for the whole call of a plain or async
function, and for each step of a generator or async generator, so that the
consumer's code between items runs without it.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

from typing_extensions import ParamSpec

from rankigi._context import (
    RunInfo,
    active_client,
    current_run,
    get_client,
    reset_var,
)
from rankigi._decorators._drivers import DRIVERS
from rankigi._decorators._kinds import function_kind
from rankigi._decorators._recording import check_client
from rankigi._ids import uuid7

if TYPE_CHECKING:
    from rankigi._client import ClientBase

__all__ = ["ClientScope", "Run", "RunScope", "run", "use"]

P = ParamSpec("P")
R = TypeVar("R")


class _Setting:
    """A driver observer that sets one context variable while code runs."""

    __slots__ = ("value", "var")

    def __init__(self, var: ContextVar[Any], value: Any) -> None:
        self.var = var
        self.value = value

    def enter(self) -> Any:
        return self.var.set(self.value)

    def exit(self, token: Any) -> None:
        reset_var(self.var, token)

    def returned(self, value: Any) -> None:
        pass

    def yielded(self, value: Any) -> None:
        pass

    def ended(self, closed: bool) -> None:
        pass

    def failed(self, exc: BaseException) -> None:
        pass


class _Scope:
    """Set a context variable for a ``with`` block or each decorated call.

    One object can be entered again while already entered (the tokens form a
    stack), but one ``with`` block must start and end in the same thread.
    """

    def __init__(self, var: ContextVar[Any]) -> None:
        self._var = var
        self._tokens: list[Token[Any]] = []

    def _value(self) -> Any:
        """Return the value to set for one block or one call."""
        raise NotImplementedError

    def _enter(self) -> Any:
        value = self._value()
        self._tokens.append(self._var.set(value))
        return value

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        if self._tokens:
            reset_var(self._var, self._tokens.pop())

    def _decorate(self, func: Callable[P, R]) -> Callable[P, R]:
        drive = DRIVERS[function_kind(func)]
        var = self._var
        value_for_call = self._value

        def handler(
            wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> Any:
            return drive(_Setting(var, value_for_call()), wrapped, args, kwargs)

        # Imported here, so that importing rankigi does not import wrapt.
        from rankigi._decorators._wrapper import wrap

        wrapper: Callable[P, R] = wrap(func, handler)
        return wrapper


class ClientScope(_Scope):
    """The object ``use(client)`` returns."""

    def __init__(self, client: Optional[ClientBase]) -> None:
        super().__init__(active_client)
        self.client = check_client(client)

    def _value(self) -> Optional[ClientBase]:
        return self.client

    def __enter__(self) -> Optional[ClientBase]:
        client: Optional[ClientBase] = self._enter()
        return client

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        return self._decorate(func)


def use(client: Optional[ClientBase]) -> ClientScope:
    """Make ``client`` the active client in a ``with`` block or decorated function.

    Decorated functions and ``track_*`` calls inside record through it unless
    they name a client themselves. ``use(None)`` leaves no active client, so
    the process default applies. On exit the previous active client is back,
    whatever it was.

    Raises:
        ValueError: ``client`` is neither a client nor None.
    """
    return ClientScope(client)


@dataclass(frozen=True)
class Run:
    """One run: the events recorded inside it carry ``run_id`` and ``run_name``."""

    name: str
    run_id: str


class RunScope(_Scope):
    """The object ``run(name)`` returns."""

    def __init__(self, name: str, run_id: Optional[str]) -> None:
        super().__init__(current_run)
        if not isinstance(name, str) or not name.strip():
            raise ValueError(
                f"run name {name!r} is invalid; pass a non-empty string such as "
                "'refund_flow'"
            )
        if run_id is not None and (not isinstance(run_id, str) or not run_id):
            raise ValueError(
                f"run_id={run_id!r} is invalid; pass a non-empty string, or "
                "leave it out to get a new id for each run"
            )
        self.name = name
        self.run_id = run_id

    def _value(self) -> RunInfo:
        return (self.run_id or _new_run_id(), self.name)

    def __enter__(self) -> Run:
        run_id, name = self._enter()
        return Run(name=name, run_id=run_id)

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        return self._decorate(func)


def run(name: str, *, run_id: Optional[str] = None) -> RunScope:
    """Group the events recorded inside a ``with`` block or decorated call.

    Each entry of the block and each call of a decorated function starts a
    new run with a new id, unless ``run_id`` fixes one. An inner run replaces
    the outer one until it ends.

    Raises:
        ValueError: ``name`` or ``run_id`` is not a non-empty string.
    """
    return RunScope(name, run_id)


def _new_run_id() -> str:
    # The client's id source, so fixed ids from rankigi.testing apply too.
    client = get_client()
    if client is None:
        return uuid7()
    return client._core.factory.new_id()
