"""Context variables shared by the client, the decorators and integrations."""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["suppress_recording"]

# Set on the transport's own thread so instrumented HTTP libraries never
# record the SDK's own requests.
suppress_recording: ContextVar[bool] = ContextVar(
    "rankigi_suppress_recording", default=False
)
