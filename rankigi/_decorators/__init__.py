"""The machinery behind ``rankigi.decorators``.

``_binding`` turns call arguments into a dict of parameter names,
``_kinds`` distinguishes plain, async, generator and async generator functions,
``_drivers`` runs one call of each kind around an observer, ``_recording``
turns a call into an event, ``_scopes`` contains ``use`` and ``run``, and
``_wrapper`` is the ``wrapt`` wrapper that keeps pickling and copying working.
"""
