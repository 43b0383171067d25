"""``rankigi.instrument()`` and ``rankigi.uninstrument()``.

``instrument()`` sets up the process default client and patches each
supported library that is installed: a library's modules that are already
imported at once, the others when the application first imports them,
through ``wrapt`` post-import hooks. It imports none of the libraries.

The hooks cannot be unregistered (``wrapt`` has no call for it), so each one
carries the generation of the ``instrument()`` call that registered it, and
does nothing once ``uninstrument()`` has started a new generation.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Optional, Union, cast

from rankigi._context import default_client, init, set_default_client
from rankigi._decorators._recording import check_client
from rankigi.integrations import (
    INTEGRATIONS,
    Integration,
    installed_version,
    parse_version,
)
from rankigi.integrations._patching import Patches

if TYPE_CHECKING:
    from rankigi._async_client import AsyncRankigi
    from rankigi._client import Rankigi

    AnyClient = Union[Rankigi, AsyncRankigi]

__all__ = ["DISABLED_ENV", "instrument", "instrumented", "uninstrument"]

logger = logging.getLogger("rankigi.instrument")

DISABLED_ENV = "RANKIGI_DISABLED_INTEGRATIONS"

_NAMES = tuple(integration.name for integration in INTEGRATIONS)

PatchFunction = Callable[[ModuleType, Patches], None]


class _Active:
    """An integration that this generation started."""

    def __init__(self, integration: Integration, version: str) -> None:
        self.integration = integration
        self.version = version
        self.patches = Patches(integration.name)
        self.patched_modules: set[str] = set()
        self.failed = False


class _State:
    def __init__(self) -> None:
        # Reentrant, because registering a hook for a module that is
        # already imported runs the hook at once, on this thread.
        self.lock = threading.RLock()
        self.generation = 0
        self.instrumented = False
        self.active: dict[str, _Active] = {}
        self.warned: set[str] = set()


_state = _State()


def instrument(
    api_key: Optional[str] = None,
    agent_id: Optional[str] = None,
    *,
    client: Optional[AnyClient] = None,
    only: Optional[Iterable[str]] = None,
    skip: Optional[Iterable[str]] = None,
    **options: Any,
) -> AnyClient:
    """Record calls of the supported libraries, and return the default client.

    The client is ``client`` if given, else a new one built from the
    arguments, else the existing process default, else one built from the
    ``RANKIGI_*`` environment variables (with no API key, it records into the
    embedded ledger). It becomes the process default, which the transport
    flushes when the interpreter exits. The integrations are ``anthropic``,
    ``langchain``, ``mcp`` and ``openai``. Each one whose library is
    installed in a supported version is applied now, or when the library is
    imported.

    Calling ``instrument()`` again while instrumented keeps the client and
    the patches; it only adds integrations that ``only`` or ``skip`` left
    out before.

    Args:
        api_key: As for ``rankigi.Rankigi``.
        agent_id: As for ``rankigi.Rankigi``.
        client: A client to use instead of building one.
        only: The names of the integrations to apply; all by default.
        skip: The names of integrations not to apply.
        **options: Further options of ``rankigi.Rankigi``.

    Raises:
        ValueError: An integration name is unknown (in ``only``, ``skip`` or
            ``RANKIGI_DISABLED_INTEGRATIONS``), ``client`` is combined with
            other client options, or a client option is invalid.
    """
    selected = _select(only, skip)
    with _state.lock:
        result = _take_client(client, api_key, agent_id, options)
        _state.instrumented = True
        generation = _state.generation
        for integration in INTEGRATIONS:
            if integration.name in selected and integration.name not in _state.active:
                _start(integration, generation)
    return result


def uninstrument() -> None:
    """Restore every patched method and cancel the hooks still waiting.

    The default client stays in place, so decorated functions keep
    recording; ``rankigi.init()`` or closing it is the caller's choice.
    """
    with _state.lock:
        _state.generation += 1
        _state.instrumented = False
        for active in _state.active.values():
            active.patches.restore()
        _state.active.clear()
        _state.warned.clear()


def instrumented() -> dict[str, str]:
    """Return the integrations now applied or waiting for an import, with versions."""
    with _state.lock:
        return {
            name: active.version
            for name, active in _state.active.items()
            if not active.failed
        }


# -- choosing the client and the integrations ----------------------------


def _take_client(
    client: Optional[AnyClient],
    api_key: Optional[str],
    agent_id: Optional[str],
    options: dict[str, Any],
) -> AnyClient:
    wants_new = api_key is not None or agent_id is not None or bool(options)
    if client is not None and wants_new:
        raise ValueError(
            "client= cannot be combined with api_key, agent_id or other client "
            "options; pass either a client or the options to build one"
        )
    # The default is a Rankigi or an AsyncRankigi, the only ClientBase types.
    current = cast("Optional[AnyClient]", default_client.client)
    if _state.instrumented and current is not None:
        if (client is not None and client is not current) or wants_new:
            logger.warning(
                "rankigi.instrument() was already called, so the new client "
                "options were ignored; call rankigi.uninstrument() first to "
                "change them"
            )
        return current
    if client is not None:
        check_client(client)
        set_default_client(client)
        return client
    if wants_new or current is None:
        return init(api_key, agent_id, **options)
    return current


def _select(only: Optional[Iterable[str]], skip: Optional[Iterable[str]]) -> set[str]:
    selected = set(_NAMES) if only is None else _names("only", only)
    if skip is not None:
        selected -= _names("skip", skip)
    disabled = os.environ.get(DISABLED_ENV, "")
    names = [name.strip() for name in disabled.split(",") if name.strip()]
    if names:
        selected -= _names(DISABLED_ENV, names)
    return selected


def _names(option: str, names: Iterable[str]) -> set[str]:
    if isinstance(names, str):
        raise ValueError(
            f"{option}={names!r} is invalid; pass a list of integration names, "
            f"such as [{names!r}]"
        )
    chosen = set(names)
    unknown = sorted(str(name) for name in chosen - set(_NAMES))
    if unknown:
        raise ValueError(
            f"{option} names unknown integrations {', '.join(unknown)}; the "
            f"integrations are {', '.join(_NAMES)}"
        )
    return chosen


# -- applying an integration ---------------------------------------------


def _start(integration: Integration, generation: int) -> None:
    version = installed_version(integration.distribution)
    if version is None:
        return  # not installed, so it cannot be imported either
    if not integration.supports(parse_version(version)):
        _warn_once(
            integration.name,
            "rankigi does not instrument %s %s: the supported versions are %s; "
            "the library is left unpatched",
            integration.distribution,
            version,
            integration.describe_range(),
        )
        return
    # Our module imports only rankigi and wrapt, never the library.
    module = importlib.import_module(integration.module)
    import wrapt

    active = _Active(integration, version)
    _state.active[integration.name] = active
    for target, function_name in integration.targets.items():
        patch: PatchFunction = getattr(module, function_name)
        hook = _make_hook(generation, active, target, patch)
        wrapt.register_post_import_hook(hook, target)


def _make_hook(
    generation: int, active: _Active, target: str, patch: PatchFunction
) -> Callable[[ModuleType], None]:
    def hook(module: ModuleType) -> None:
        # A hook that raises would make the application's import fail.
        try:
            with _state.lock:
                if _state.generation != generation or active.failed:
                    return
                if target in active.patched_modules:
                    return
                _apply(active, target, module, patch)
        except Exception:
            logger.debug("the import hook for %s failed", target, exc_info=True)

    return hook


def _apply(
    active: _Active, target: str, module: ModuleType, patch: PatchFunction
) -> None:
    try:
        patch(module, active.patches)
    except Exception as exc:
        # Leave the whole library untouched rather than half patched.
        active.failed = True
        active.patches.restore()
        integration = active.integration
        _warn_once(
            integration.name,
            "rankigi could not instrument %s %s and left it unpatched: "
            "patching %s failed with %r",
            integration.distribution,
            active.version,
            target,
            exc,
        )
        return
    active.patched_modules.add(target)
    logger.debug("instrumented %s (%s)", target, active.version)


def _warn_once(name: str, message: str, *args: Any) -> None:
    if name in _state.warned:
        return
    _state.warned.add(name)
    logger.warning(message, *args)
