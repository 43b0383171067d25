"""Replace methods of library classes with wrappers, and put them back exactly.

``Patches`` remembers, for one integration, each class attribute it replaced
and the object that was there, so ``restore`` leaves
``vars(owner)[attribute] is original``. Every wrapper also checks a switch
on each call: after ``restore`` it passes calls straight through, which
covers references that outlive the patch, such as a bound method a library
cached while the patch was in place.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

__all__ = ["Handler", "PatchError", "Patches"]

logger = logging.getLogger("rankigi.integrations")

# handler(wrapped, instance, args, kwargs), as wrapt calls it.
Handler = Callable[[Any, Any, tuple[Any, ...], dict[str, Any]], Any]

_MISSING = object()


class PatchError(Exception):
    """A class lacks an attribute that an integration expected to patch."""


class _Switch:
    __slots__ = ("on",)

    def __init__(self) -> None:
        self.on = True


class Patches:
    """The class attributes that one integration replaced."""

    def __init__(self, integration: str) -> None:
        self.integration = integration
        self._switch = _Switch()
        self._applied: list[tuple[type, str, Any, Any]] = []

    def wrap(self, owner: type, attribute: str, handler: Handler) -> None:
        """Replace ``owner.attribute`` with a wrapper that calls ``handler``.

        Raises:
            PatchError: ``owner`` itself does not define ``attribute``.
        """
        original = vars(owner).get(attribute, _MISSING)
        if original is _MISSING or not callable(original):
            raise PatchError(
                f"{owner.__module__}.{owner.__qualname__} defines no method "
                f"{attribute!r}"
            )
        switch = self._switch

        def guarded(
            wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> Any:
            if not switch.on:
                return wrapped(*args, **kwargs)
            return handler(wrapped, instance, args, kwargs)

        # Imported here, so that importing rankigi does not import wrapt.
        import wrapt

        wrapper = wrapt.FunctionWrapper(original, guarded)
        setattr(owner, attribute, wrapper)
        self._applied.append((owner, attribute, original, wrapper))

    def wrap_if_defined(self, owner: type, attribute: str, handler: Handler) -> None:
        """Wrap ``owner.attribute`` as ``wrap`` does, if this version defines it."""
        if callable(vars(owner).get(attribute)):
            self.wrap(owner, attribute, handler)

    def restore(self) -> None:
        """Put every replaced attribute back and turn the wrappers off."""
        self._switch.on = False
        while self._applied:
            owner, attribute, original, wrapper = self._applied.pop()
            if vars(owner).get(attribute) is wrapper:
                setattr(owner, attribute, original)
            else:
                # Other code wrapped or replaced the method after us. Putting
                # the original back would drop its change, so the attribute
                # stays, and our wrapper, now switched off, passes calls on.
                logger.warning(
                    "%s.%s was replaced after rankigi patched it, so rankigi "
                    "left it in place; its rankigi wrapper no longer records",
                    owner.__qualname__,
                    attribute,
                )
