"""Benchmark cases in child processes, driven one request at a time.

Each case runs in an interpreter of its own: the SDKs under test keep global
state (Sentry's client, OpenTelemetry's providers, atexit hooks), and the
published rankigi 1.0.0 client lives in another virtualenv. The parent sends
one JSON request per line on the child's stdin and reads one JSON reply per
line, so it can interleave the cases round by round: a busy moment on the
machine then slows every case alike.

This module is imported by the children too, including the 1.0.0
virtualenv's interpreter, so it uses the standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

ROOT = Path(__file__).resolve().parents[1]

Message = dict[str, Any]
Handler = Callable[[Message], Message]


class CaseError(RuntimeError):
    """A child process failed; the message carries its traceback."""


class Skip(Exception):
    """Raised by a case setup when it cannot run here, with the reason."""


def child_env(group: str) -> dict[str, str]:
    """Return the environment for a child of ``group``.

    This checkout's children get the repository on ``PYTHONPATH``, so they
    measure the working tree even where it is not installed. The 1.0.0
    children must not see it, or ``import rankigi`` would find this checkout.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("RANKIGI_")}
    env.pop("PYTHONPATH", None)
    if group != "v1":
        env["PYTHONPATH"] = str(ROOT)
    # Peers read these; none of them may reach a real service.
    for name in ("SENTRY_DSN", "LANGFUSE_HOST", "LANGFUSE_BASE_URL"):
        env.pop(name, None)
    for name in list(env):
        if name.startswith("OTEL_"):
            del env[name]
    return env


class Child:
    """A case running in a child interpreter, which replies to one request per line."""

    def __init__(
        self,
        python: str,
        script: Path,
        arguments: list[str],
        group: str,
        extra_env: Optional[dict[str, str]] = None,
    ) -> None:
        env = child_env(group)
        env.update(extra_env or {})
        # A temporary working directory, so that nothing in the caller's
        # directory (such as a rankigi/ folder) can shadow an installed package.
        self._directory = tempfile.TemporaryDirectory(prefix="rankigi-bench-")
        # The SDKs' warnings (a full queue, a timed-out export) go to a file,
        # shown only when the child fails: some SDKs log every dropped event.
        # It stays open as long as the child, so no with-block: close() shuts it.
        errors_path = Path(self._directory.name) / "stderr.txt"
        self._errors = open(errors_path, "w+b")  # noqa: SIM115
        self.process = subprocess.Popen(
            [python, str(script), "--child", *arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._errors,
            text=True,
            env=env,
            cwd=self._directory.name,
        )
        self.label = " ".join(arguments)

    def error_output(self, limit: int = 4000) -> str:
        """Return the end of the child's error output."""
        self._errors.flush()
        size = self._errors.seek(0, os.SEEK_END)
        self._errors.seek(max(0, size - limit))
        return self._errors.read().decode("utf-8", "replace")

    def request(self, message: Message) -> Message:
        """Send ``message`` and return the reply; raise CaseError on failure."""
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # the child died; reading its reply reports why
        line = self.process.stdout.readline()
        if not line:
            status = self.process.wait()
            raise CaseError(
                f"benchmark child {self.label!r} exited with status {status} "
                f"before it replied; the end of its error output:\n"
                f"{self.error_output()}"
            )
        reply: Message = json.loads(line)
        if "error" in reply:
            raise CaseError(f"benchmark child {self.label!r} failed:\n{reply['error']}")
        return reply

    def close(self, timeout: float = 30.0) -> None:
        """Ask the child to stop; kill it if it does not exit in ``timeout``."""
        if self.process.poll() is None:
            assert self.process.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._errors.close()
        self._directory.cleanup()


def serve(handler: Handler) -> None:
    """Reply to the parent's requests until stdin closes (the child's side).

    Replies go to a copy of the original stdout; the SDKs' own prints then go
    to stderr, where they cannot break the protocol.
    """
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    for line in sys.stdin:
        try:
            reply = handler(json.loads(line))
        except Skip as skip:
            reply = {"skipped": str(skip)}
        except Exception:
            reply = {"error": traceback.format_exc()}
        replies.write(json.dumps(reply) + "\n")
        if "error" in reply:
            break
    replies.flush()
