"""Change notifications for 2025-era sessions: who is connected, who subscribed to what.

On the 2026-07-28 protocol there are no sessions: a client opens a `subscriptions/listen` stream and
the SDK's subscription bus delivers to it. The 2025-11-25 protocol (and older handshake versions)
instead has sessions that `resources/subscribe` to documents and expect
`notifications/resources/list_changed` and `notifications/resources/updated` on their standalone
stream. `SessionNotifier` keeps that bookkeeping: it sees every session through a middleware (so
list-changed reaches sessions that never subscribed), serves subscribe/unsubscribe, and forgets a
session when it ends. Sessions are held weakly as well, so a session that ends without its teardown
running is not kept alive.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any
from weakref import WeakKeyDictionary

import anyio
from mcp.server import MCPServer, ServerRequestContext
from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_REQUEST, EmptyResult, SubscribeRequestParams, UnsubscribeRequestParams
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from kb.server import _sdk_compat
from kb.server._uris import canonical_uri

logger = logging.getLogger(__name__)

SEND_TIMEOUT_SECONDS = 5.0  # a client that stops reading delays one commit's notifications by this much


class SessionNotifier:
    """The 2025-era sessions of one server and the resources each subscribed to."""

    def __init__(self) -> None:
        # session -> {canonical URI: the URI as the client wrote it}
        self._sessions: WeakKeyDictionary[Connection, dict[str, str]] = WeakKeyDictionary()

    def install(self, server: MCPServer[Any]) -> None:
        """Watch `server`'s sessions, serve its 2025-era subscriptions, and declare both."""
        # Public (though "provisional" in mcp 2.3) and the one hook that sees every message of
        # every session, so list-changed also reaches sessions that never subscribed.
        server.middleware.append(self._see_session)
        _sdk_compat.serve_resource_subscriptions(server, self._subscribe, self._unsubscribe)
        _sdk_compat.declare_resource_list_changed(server)

    @property
    def session_count(self) -> int:
        """How many live 2025-era sessions the server knows."""
        return len(self._sessions)

    async def publish(self, *, list_changed: bool, updated: Iterable[str]) -> None:
        """Send one commit's changes: list-changed to every initialized session, and updated for
        each URI in `updated` to the sessions subscribed to it.

        Sessions are served concurrently and the whole delivery is bounded, so a client that stops
        reading cannot hold up the next commit for long; sending to a session that has just closed
        is dropped by the SDK.
        """
        changed = set(updated)
        deliveries: list[tuple[Connection, list[str]]] = []
        for connection, subscriptions in list(self._sessions.items()):
            if not connection.initialized.is_set():  # the spec allows nothing else before it
                continue
            uris = [subscriptions[uri] for uri in sorted(changed & subscriptions.keys())]
            if list_changed or uris:
                deliveries.append((connection, uris))
        if not deliveries:
            return
        with anyio.move_on_after(SEND_TIMEOUT_SECONDS) as scope:
            async with anyio.create_task_group() as tg:
                for connection, uris in deliveries:
                    tg.start_soon(_deliver, connection, list_changed, uris)
        if scope.cancelled_caught:
            logger.warning("change notifications to some sessions timed out after %ss", SEND_TIMEOUT_SECONDS)

    # ---- the session's side --------------------------------------------------------------

    async def _see_session(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Middleware: remember the session of every 2025-era message, `initialize` included."""
        self._remember(ctx)
        return await call_next(ctx)

    async def _subscribe(self, ctx: ServerRequestContext[Any], params: SubscribeRequestParams) -> EmptyResult:
        self._subscriptions(ctx)[canonical_uri(params.uri)] = params.uri
        return EmptyResult()

    async def _unsubscribe(
        self, ctx: ServerRequestContext[Any], params: UnsubscribeRequestParams
    ) -> EmptyResult:
        self._subscriptions(ctx).pop(canonical_uri(params.uri), None)
        return EmptyResult()

    def _subscriptions(self, ctx: ServerRequestContext[Any, Any]) -> dict[str, str]:
        """The subscriptions of the session `ctx` belongs to.

        Raises:
            MCPError: `ctx` is a 2026-07-28 request, which has no session to subscribe.
        """
        subscriptions = self._remember(ctx)
        if subscriptions is None:
            raise MCPError(INVALID_REQUEST, "no session at this protocol version; use subscriptions/listen")
        return subscriptions

    def _remember(self, ctx: ServerRequestContext[Any, Any]) -> dict[str, str] | None:
        """The subscriptions of the 2025-era session `ctx` belongs to (None on 2026-07-28);
        a session seen for the first time is remembered until it ends."""
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return None
        connection = _sdk_compat.connection_of(ctx)
        subscriptions = self._sessions.get(connection)
        if subscriptions is None:
            subscriptions = self._sessions[connection] = {}
            connection.exit_stack.callback(self._sessions.pop, connection, None)
        return subscriptions


async def _deliver(connection: Connection, list_changed: bool, uris: list[str]) -> None:
    # `Connection.notify` never raises for a closed or broken stream: it drops and debug-logs.
    if list_changed:
        await connection.send_resource_list_changed()
    for uri in uris:
        await connection.send_resource_updated(uri)
