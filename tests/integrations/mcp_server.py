"""A small MCP server over stdio, started by the MCP integration tests.

Tools: ``add`` returns a sum, ``fail`` raises (the server returns an
``isError`` result), and ``wait`` sleeps, to make a client time out.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer as Server
else:
    try:
        from mcp.server.mcpserver import MCPServer as Server
    except ImportError:  # mcp 1.x names it FastMCP
        from mcp.server.fastmcp import FastMCP as Server

server = Server("stub-tools")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def fail(reason: str) -> str:
    """Always raise."""
    raise ValueError(f"failed on purpose: {reason}")


@server.tool()
def wait(seconds: float) -> str:
    """Sleep, then return "done"."""
    time.sleep(seconds)
    return "done"


if __name__ == "__main__":
    server.run("stdio")
