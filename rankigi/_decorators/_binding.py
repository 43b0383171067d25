"""Map call arguments to parameter names without ``inspect`` on each call.

``make_binder`` reads the signature once and compiles a function with the
same parameters that returns them as a dict, so CPython's own argument
parsing applies defaults, keyword arguments, ``*args`` and ``**kwargs``.
A call that does not fit the signature, or a callable without one, is
recorded as ``{"args": [...], "kwargs": {...}}``.
"""

from __future__ import annotations

import inspect
import keyword
import logging
from typing import Any, Callable, Optional

from rankigi._decorators._kinds import underlying_function

__all__ = ["Binder", "make_binder"]

logger = logging.getLogger("rankigi.decorators")

# binder(instance, args, kwargs) -> {parameter name: value}
Binder = Callable[[Any, tuple[Any, ...], dict[str, Any]], dict[str, Any]]

_POSITIONAL = (
    inspect.Parameter.POSITIONAL_ONLY,
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
)
# The receiver names that are never recorded as arguments.
_RECEIVERS = ("self", "cls")


def make_binder(target: Any) -> Binder:
    """Build the binder for calls of ``target``.

    ``instance`` is what ``wrapt`` passes: the object or class a method is
    bound to. For functions and classmethods it is the first parameter,
    which is bound and then left out of the result.
    """
    function = target
    if isinstance(target, (classmethod, staticmethod)):
        function = target.__func__
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        # Some builtins and C callables publish no signature.
        return _bind_raw
    takes_instance = isinstance(target, classmethod) or (
        inspect.isfunction(function) and not isinstance(target, staticmethod)
    )
    skip_receiver = _declared_in_class(function) and _first_is_receiver(parameters)
    plain = _compile(parameters, skip_first=skip_receiver)
    method = None
    if takes_instance and parameters and parameters[0].kind in _POSITIONAL:
        method = _compile(parameters, skip_first=True)
    if plain is None:
        return _bind_raw
    return _binder(plain, method)


def _binder(
    plain: Callable[..., dict[str, Any]],
    method: Optional[Callable[..., dict[str, Any]]],
) -> Binder:
    def bind(
        instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            if instance is not None and method is not None:
                return method(instance, *args, **kwargs)
            return plain(*args, **kwargs)
        except TypeError:
            # The arguments do not fit the signature, so the call itself
            # raises the same TypeError, which is recorded with these.
            return _bind_raw(instance, args, kwargs)

    return bind


def _bind_raw(
    instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    return {"args": args, "kwargs": kwargs}


def _compile(
    parameters: list[inspect.Parameter], skip_first: bool
) -> Optional[Callable[..., dict[str, Any]]]:
    """Compile ``def bind(<parameters>): return {<name>: <name>, ...}``.

    Returns None when a parameter name is not a Python identifier, which
    only a hand-made ``__signature__`` can produce.
    """
    namespace: dict[str, Any] = {}
    specs: list[str] = []
    entries: list[str] = []
    star_written = False
    for index, parameter in enumerate(parameters):
        name = parameter.name
        if not name.isidentifier() or keyword.iskeyword(name):
            return None
        kind = parameter.kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            spec = f"*{name}"
            star_written = True
        elif kind is inspect.Parameter.VAR_KEYWORD:
            spec = f"**{name}"
        else:
            if kind is inspect.Parameter.KEYWORD_ONLY and not star_written:
                specs.append("*")
                star_written = True
            spec = name
            if parameter.default is not inspect.Parameter.empty:
                # Defaults are read from the namespace when ``def`` runs, so
                # a parameter cannot shadow these names.
                default_name = f"_default_{index}"
                namespace[default_name] = parameter.default
                spec = f"{name}={default_name}"
        specs.append(spec)
        following = parameters[index + 1] if index + 1 < len(parameters) else None
        if kind is inspect.Parameter.POSITIONAL_ONLY and (
            following is None or following.kind is not kind
        ):
            specs.append("/")
        if not (skip_first and index == 0):
            entries.append(f"{name!r}: {name}")
    source = f"def bind({', '.join(specs)}):\n    return {{{', '.join(entries)}}}\n"
    try:
        exec(compile(source, "<rankigi binder>", "exec"), namespace)
    except SyntaxError:
        logger.debug("could not compile an argument binder", exc_info=True)
        return None
    bind: Callable[..., dict[str, Any]] = namespace["bind"]
    return bind


def _declared_in_class(function: Any) -> bool:
    qualname = getattr(underlying_function(function), "__qualname__", "")
    if not isinstance(qualname, str):
        return False
    owner = qualname.rpartition(".")[0]
    return bool(owner) and not owner.endswith("<locals>")


def _first_is_receiver(parameters: list[inspect.Parameter]) -> bool:
    return (
        bool(parameters)
        and parameters[0].kind in _POSITIONAL
        and parameters[0].name in _RECEIVERS
    )
