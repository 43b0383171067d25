"""The libraries that ``rankigi.instrument()`` records, and how it finds them.

Each ``Integration`` names the distribution whose version it checks, the
range of versions it supports, and for each module of the library that
defines patched classes, the function of this package's module that patches
it. Nothing here imports the libraries: ``rankigi.instrument()`` patches a
module once the application imports it.

Calls to OpenAI and Anthropic models are ``llm_call`` events with ``tool``
set to the SDK method (``"openai.chat.completions.create"``) and
``provider``, ``model``, ``input``, ``output``, ``tool_calls``, ``usage``,
``stop_reason``, ``duration_ms`` and ``status`` in the payload. LangChain
and MCP tool runs are ``tool_call`` events, like those of ``@rankigi.tool``.
``docs/instrument.md`` describes every field.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

__all__ = ["INTEGRATIONS", "Integration", "installed_version", "parse_version"]


@dataclass(frozen=True)
class Integration:
    """One supported library."""

    name: str
    distribution: str
    # Supported versions: minimum <= version < below.
    minimum: tuple[int, ...]
    below: tuple[int, ...]
    # Library module -> patch function in rankigi.integrations.<name>.
    targets: Mapping[str, str]

    @property
    def module(self) -> str:
        return f"rankigi.integrations.{self.name}"

    def supports(self, version: tuple[int, ...]) -> bool:
        return self.minimum <= version < self.below

    def describe_range(self) -> str:
        low = ".".join(map(str, self.minimum))
        high = ".".join(map(str, self.below))
        return f">={low},<{high}"


# NOTE: each range is where the patched classes and methods have the layout
# these modules expect. The test suite ran on one version of each, which
# docs/instrument.md names.
INTEGRATIONS: tuple[Integration, ...] = (
    Integration(
        name="anthropic",
        distribution="anthropic",
        minimum=(0, 40),
        below=(3,),
        targets={"anthropic.resources.messages.messages": "patch_messages"},
    ),
    Integration(
        name="langchain",
        distribution="langchain-core",
        minimum=(0, 3),
        below=(2,),
        targets={"langchain_core.tools.base": "patch_tools"},
    ),
    Integration(
        name="mcp",
        distribution="mcp",
        minimum=(1, 0),
        below=(3,),
        targets={"mcp.client.session": "patch_client_session"},
    ),
    Integration(
        name="openai",
        distribution="openai",
        minimum=(1, 66),
        below=(4,),
        targets={
            "openai.resources.chat.completions.completions": "patch_chat_completions",
            "openai.resources.responses.responses": "patch_responses",
        },
    ),
)


def installed_version(distribution: str) -> Optional[str]:
    """Return the installed version of ``distribution``, or None if it is absent."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


_RELEASE = re.compile(r"\d+(?:\.\d+)*")


def parse_version(text: str) -> tuple[int, ...]:
    """Return the release numbers of a version: ``"1.2.3rc1"`` gives (1, 2, 3).

    A version with no leading number gives (), which no range contains.
    """
    match = _RELEASE.match(text.strip())
    if match is None:
        return ()
    return tuple(int(part) for part in match.group().split("."))
