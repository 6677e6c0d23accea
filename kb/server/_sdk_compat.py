"""Every place kb reaches past the MCP SDK's public `MCPServer` API, kept together.

Each function names the public API that is missing. When the SDK grows it, replace the reach here
and nothing else in kb changes. Checked against mcp 2.3.0.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server import MCPServer, NotificationOptions, ServerRequestContext
from mcp.server.connection import Connection
from mcp.server.lowlevel import Server
from mcp.server.models import InitializationOptions
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.message import SessionMessage
from mcp_types import (
    EmptyResult,
    ListResourcesResult,
    PaginatedRequestParams,
    ReadResourceRequestParams,
    ReadResourceResult,
    SubscribeRequestParams,
    UnsubscribeRequestParams,
)

ListResourcesHandler = Callable[
    [ServerRequestContext[Any], PaginatedRequestParams], Awaitable[ListResourcesResult]
]
SubscribeHandler = Callable[[ServerRequestContext[Any], SubscribeRequestParams], Awaitable[EmptyResult]]
UnsubscribeHandler = Callable[[ServerRequestContext[Any], UnsubscribeRequestParams], Awaitable[EmptyResult]]


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


def serve_resource_subscriptions(
    server: MCPServer[Any], subscribe: SubscribeHandler, unsubscribe: UnsubscribeHandler
) -> None:
    """Serve the 2025-era `resources/subscribe` and `resources/unsubscribe` requests.

    Registering them is also what makes the SDK declare `resources.subscribe` in the 2025-era
    `initialize` result (it checks for a `resources/subscribe` handler).

    Missing public API: `MCPServer` has no subscribe hook at all; it leaves 2025-era clients to
    `subscriptions/listen`, which they cannot send. The low-level `Server` takes them as
    `on_subscribe_resource=` / `on_unsubscribe_resource=`, but `MCPServer` builds that server itself.
    """
    lowlevel = _lowlevel(server)
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)


def declare_resource_list_changed(server: MCPServer[Any]) -> None:
    """Declare `resources.listChanged` in the 2025-era `initialize` result.

    Tools and prompts keep `listChanged: false`: kb's never change. (The 2026-07-28 era's
    `server/discover` derives every flag from `subscriptions/listen` being served; untouched.)

    Missing public API: the 2025-era flags come only from the `NotificationOptions` passed to the
    low-level `create_initialization_options()`, and every transport (stdio, SSE, streamable HTTP,
    the in-memory client) calls it with none, so they are always false (the SDK's own
    "TODO(L53): Rethink capabilities API"). Every caller looks the method up on the instance,
    so an instance attribute that supplies the options as a default reaches them all.
    """
    lowlevel = _lowlevel(server)
    create = lowlevel.create_initialization_options

    def create_initialization_options(
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        options = notification_options or NotificationOptions(resources_changed=True)
        return create(options, experimental_capabilities, extensions)

    lowlevel.create_initialization_options = create_initialization_options  # type: ignore[method-assign]


def connection_of(ctx: ServerRequestContext[Any]) -> Connection:
    """The connection (for the 2025 era: the session) a request or notification arrived on.

    kb keeps it past the request to send `notifications/resources/*` on the session's standalone
    stream, uses it as the session's identity (a new `ServerSession` proxy is built per request),
    and learns when the session ends from its `exit_stack`.

    Missing public API: the low-level request context carries only the per-request
    `ServerSession` proxy, which wraps the `Connection` privately; the SDK's `Context.connection`
    would give it but "is not currently constructed by ServerRunner" (mcp.server.context).
    """
    return ctx.session._connection


def stateful_sessions(manager: StreamableHTTPSessionManager) -> list[StreamableHTTPServerTransport]:
    """The transports of the 2025-era sessions the streamable HTTP session manager holds open.

    kb ends the longest idle ones when too many are open (through each transport's public
    `idle_scope`, the SDK's own idle-expiry path), rather than have the manager refuse new ones.

    Missing public API: the session manager offers `max_sessions` (past it, every new client gets
    503 until a session expires) and `session_idle_timeout`, but no way to list its sessions or
    to make room by ending the idlest.
    """
    return list(manager._server_instances.values())


async def serve_streams(
    server: MCPServer[Any],
    read_stream: MemoryObjectReceiveStream[SessionMessage | Exception],
    write_stream: MemoryObjectSendStream[SessionMessage],
) -> None:
    """Serve one connection over these streams, its lifespan included, as the SDK's
    `run_stdio_async` does over the SDK's own stdio transport.

    Missing public API: `MCPServer` runs only on transports it builds itself, and kb's stdio
    transport (`kb.server._stdio`) replaces the SDK's.
    """
    lowlevel = _lowlevel(server)
    await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
