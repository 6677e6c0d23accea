"""Every place kb reaches past the MCP SDK's public `MCPServer` API, kept together.

Each function names the public API that is missing. When the SDK grows it, replace the reach here
and nothing else in kb changes. Checked against mcp 2.3.0.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server import MCPServer, ServerRequestContext
from mcp.server.lowlevel import Server
from mcp_types import (
    ListResourcesResult,
    PaginatedRequestParams,
    ReadResourceRequestParams,
    ReadResourceResult,
)

ListResourcesHandler = Callable[
    [ServerRequestContext[Any], PaginatedRequestParams], Awaitable[ListResourcesResult]
]


def _lowlevel(server: MCPServer[Any]) -> Server[Any]:
    # Missing public API: `MCPServer` does not expose its low-level `Server`. The SDK's own
    # in-memory transport reads this same attribute ("TODO: Make `lowlevel_server` public").
    return server._lowlevel_server


def replace_list_resources(server: MCPServer[Any], handler: ListResourcesHandler) -> None:
    """Serve `resources/list` with `handler`, which pages with a cursor.

    Missing public API: `MCPServer` lists only resources registered one by one, all in one page,
    and has no hook for a dynamic, paged listing (thousands of indexed files).
    """
    _lowlevel(server).add_request_handler("resources/list", PaginatedRequestParams, handler)


def set_mime_type_per_uri(server: MCPServer[Any], mime_type_for: Callable[[str], str | None]) -> None:
    """After each `resources/read`, set the MIME type of the contents from their URI.

    `mime_type_for(uri)` returns the type, or None to keep what the SDK set.

    Missing public API: a resource template carries one fixed MIME type that the SDK stamps on
    every read; a template function cannot say that `kb://doc/a.pdf` is text/plain while
    `kb://doc/b.md` is text/markdown.
    """
    lowlevel = _lowlevel(server)
    entry = lowlevel.get_request_handler("resources/read")
    if entry is None:  # pragma: no cover - MCPServer always registers it
        raise RuntimeError("the MCP server has no resources/read handler to wrap")
    read = entry.handler

    async def read_with_mime_type(ctx: ServerRequestContext[Any], params: ReadResourceRequestParams) -> Any:
        result = await read(ctx, params)
        if isinstance(result, ReadResourceResult):
            for contents in result.contents:
                mime_type = mime_type_for(str(contents.uri))
                if mime_type is not None:
                    contents.mime_type = mime_type
        return result

    lowlevel.add_request_handler("resources/read", ReadResourceRequestParams, read_with_mime_type)
