"""Serving kb over HTTP: streamable HTTP at `/mcp` (both protocol eras) or legacy SSE at `/sse`,
locked down: loopback unless a bearer token is set, Host and Origin checks against the bound
address (DNS rebinding), bounded request bodies, requests that must arrive in bounded time.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import hmac
import ipaddress
import logging
import math
import socket
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import anyio
import h11
import uvicorn
from mcp.server import MCPServer
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from kb.config import Settings
from kb.errors import ConfigError
from kb.server import _sdk_compat, _workers, build_server
from kb.server._runtime import KbRuntime
from kb.server._workers import ReplicaMain

logger = logging.getLogger(__name__)

MAX_REQUEST_BODY_BYTES = 1024 * 1024
# A request (head and body) must arrive within this many seconds of the connection being ready for
# it; a client that trickles bytes is cut off instead of holding a connection and a task forever.
REQUEST_TIMEOUT_SECONDS = 20.0
# 2025-era sessions kept open: past this, a new client ends the ones idle the longest. Twice as
# many, all busy at once, make the SDK refuse new ones (503).
MAX_SESSIONS = 1000
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def run_http(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    sse: bool = False,
    replica_main: ReplicaMain | None = None,
) -> None:
    """Serve streamable HTTP at `/mcp` (or, with `sse`, the legacy SSE transport at `/sse`).

    With `settings.workers` above 1, `replica_main(sock, writer_synced)` runs in that many processes
    less one, spawned (see `_workers`; the CLI gives its entry point, which sets up their logs and
    calls `serve_replica`), and every process serves statelessly.

    Raises:
        ConfigError: binding a non-loopback address without a token, the address is in use, or
            several workers asked of SSE (or without their entry point).
    """
    check_http_settings(settings, host)
    workers = settings.workers
    if workers > 1 and (sse or replica_main is None):
        raise ConfigError(
            "--workers above 1 needs streamable HTTP (--http without --sse): an SSE session lives in "
            "one process"
        )
    try:
        sock = bind_socket(host, port)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    with sock:
        if workers == 1 or replica_main is None:
            anyio.run(serve_http, settings, sock, sse)
            return
        with _workers.replicas(sock, workers - 1, replica_main) as synced:
            runtime = KbRuntime(settings, on_synced=synced.set)
            anyio.run(functools.partial(serve_http, settings, sock, runtime=runtime, stateless=True))


def serve_replica(settings: Settings, sock: socket.socket, writer_synced: _workers.Flag) -> None:
    """Serve `sock` statelessly from the index another process writes, until SIGINT or SIGTERM (or
    that process is gone); `writer_synced` is set once that process's startup sync is done."""
    _workers.exit_with_parent()
    runtime = KbRuntime(settings, replica=True, writer_synced=writer_synced.is_set)
    anyio.run(functools.partial(serve_http, settings, sock, runtime=runtime, stateless=True))


def check_http_settings(settings: Settings, host: str) -> None:
    """Refuse to expose the documents beyond this machine without a token.

    Raises:
        ConfigError: `host` is not a loopback address and no token is set.
    """
    if not _is_loopback(host) and not settings.token:
        raise ConfigError(
            f"binding {host} exposes your documents to the network; set a bearer token with "
            "--token or KB_TOKEN (or bind 127.0.0.1)"
        )


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket; port 0 picks a free one (read it back with `getsockname()`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not left 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
    # sockets whose protocol says TCP, and the accepted connections inherit it. With Nagle on, the
    # body of a response written after its head waits for the client's delayed ACK (~40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


async def serve_http(
    settings: Settings,
    sock: socket.socket,
    sse: bool = False,
    *,
    request_timeout: float = REQUEST_TIMEOUT_SECONDS,
    runtime: KbRuntime | None = None,
    stateless: bool = False,
) -> None:
    """Serve HTTP on an already listening socket until cancelled (or SIGINT/SIGTERM).

    A connection that has not delivered a whole request `request_timeout` seconds after it
    became ready for one (opened, or its last response sent) is closed. `runtime`: the server's
    (a replica's, say); `stateless`: no 2025-era session outlives its request.
    """
    host, port = sock.getsockname()[:2]
    server = http_server(
        settings, sock, sse, request_timeout=request_timeout, runtime=runtime, stateless=stateless
    )
    logger.info(
        "serving MCP over %s at http://%s:%d%s",
        "SSE" if sse else "HTTP",
        host,
        port,
        "/sse" if sse else "/mcp",
    )
    await server.serve(sockets=[sock])


def http_server(
    settings: Settings,
    sock: socket.socket,
    sse: bool = False,
    *,
    request_timeout: float = REQUEST_TIMEOUT_SECONDS,
    runtime: KbRuntime | None = None,
    stateless: bool = False,
) -> uvicorn.Server:
    """The uvicorn server `serve_http` runs on `sock` (not started)."""
    host, port = sock.getsockname()[:2]
    server = build_server(settings, runtime=runtime)
    app = http_app(server, settings, host, port, sse=sse, stateless=stateless)
    config = uvicorn.Config(
        app,
        http=h11_protocol_with_request_deadline(request_timeout),
        log_config=None,
        access_log=False,
        lifespan="on",
        log_level="warning",
    )
    return uvicorn.Server(config)


def http_app(
    server: MCPServer[Any],
    settings: Settings,
    host: str,
    port: int,
    *,
    sse: bool = False,
    max_sessions: int = MAX_SESSIONS,
    stateless: bool = False,
) -> ASGIApp:
    """The ASGI app: MCP behind Host/Origin checks, a body size bound and, with a token, bearer auth.

    At most `max_sessions` 2025-era sessions stay open (`SessionCapMiddleware`); `stateless`, none
    outlives its request (any of several processes may answer the next one).
    """
    security = transport_security(settings, host, port)
    if sse:
        app: ASGIApp = server.sse_app(
            transport_security=security, max_request_body_size=MAX_REQUEST_BODY_BYTES, host=host
        )
    else:
        app = server.streamable_http_app(
            streamable_http_path="/mcp",
            transport_security=security,
            max_request_body_size=MAX_REQUEST_BODY_BYTES,
            max_sessions=2 * max_sessions,
            host=host,
            stateless_http=stateless,
        )
        if not stateless:
            app = SessionCapMiddleware(app, server.session_manager, max_sessions)
    app = WholeBodyMiddleware(app, MAX_REQUEST_BODY_BYTES)
    if _is_unspecified(host):
        app = OriginCheckMiddleware(app, port, settings.allow_origins)
    if settings.token:
        app = BearerTokenMiddleware(app, settings.token)
    return app


def h11_protocol_with_request_deadline(seconds: float) -> type[H11Protocol]:
    """uvicorn's h11 protocol, closing a connection whose request has not fully arrived in `seconds`.

    uvicorn bounds only the idle time between requests (`timeout_keep_alive`, reset by every byte
    received) and the size of a request head (`h11_max_incomplete_event_size`); nothing bounds the
    time a request takes to arrive, and ASGI middleware runs only once the head is complete. The
    deadline starts when the connection is ready for a request (opened, or a response sent) and
    stops once the request's body is complete and its response under way, so a long response
    (an SSE stream) is never cut.
    """

    class H11WithRequestDeadline(H11Protocol):
        _request_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._start_request_deadline()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._answering():
                self._stop_request_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()  # may start a pipelined request at once
            if not self._answering() and not self.transport.is_closing():
                self._start_request_deadline()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_request_deadline()
            super().connection_lost(exc)

        def _answering(self) -> bool:
            """Whether a whole request has arrived and its response is not yet complete."""
            cycle = self.cycle
            return self.conn.their_state is h11.DONE and cycle is not None and not cycle.response_complete

        def _start_request_deadline(self) -> None:
            self._stop_request_deadline()
            self._request_deadline = self.loop.call_later(seconds, self._request_overdue)

        def _stop_request_deadline(self) -> None:
            if self._request_deadline is not None:
                self._request_deadline.cancel()
                self._request_deadline = None

        def _request_overdue(self) -> None:
            self._request_deadline = None
            if not self.transport.is_closing():
                logger.info("closing an HTTP connection: no complete request within %g s", seconds)
                self.transport.close()

    return H11WithRequestDeadline


def transport_security(settings: Settings, host: str, port: int) -> TransportSecuritySettings:
    """DNS-rebinding protection: the Host must name the bound address, the Origin be it or allowed."""
    if _is_unspecified(host):
        # Bound to every interface: any Host may be legitimate, so the SDK's check is off; the token
        # (required) guards access and `OriginCheckMiddleware` keeps foreign browser pages out.
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    # The address actually bound (127.0.0.2 is as much this machine as 127.0.0.1), and on loopback
    # the names a local client may use for it.
    names = [f"[{host}]" if ":" in host else host]
    if _is_loopback(host):
        names += [name for name in ("127.0.0.1", "localhost", "[::1]") if name not in names]
    hosts = [f"{name}:{port}" for name in names]
    origins = [f"http://{h}" for h in hosts] + [f"https://{h}" for h in hosts] + list(settings.allow_origins)
    return TransportSecuritySettings(allowed_hosts=hosts, allowed_origins=origins)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


class BearerTokenMiddleware:
    """Require `Authorization: Bearer <token>` on every HTTP request.

    The scheme name matches in any case (RFC 7235 makes it case-insensitive); the token is compared
    in constant time.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan events carry no headers
            await self.app(scope, receive, send)
            return
        scheme, _, credentials = dict(scope["headers"]).get(b"authorization", b"").partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(credentials.lstrip(b" "), self._expected):
            await self.app(scope, receive, send)
            return
        await _refuse(
            send,
            401,
            b'{"error": "unauthorized", "error_description": "send Authorization: Bearer <token>"}',
            [(b"www-authenticate", b'Bearer realm="kb"')],
        )


class OriginCheckMiddleware:
    """Refuse a browser Origin that is neither this server nor allowed (`--allow-origin`): 403.

    For wildcard binds (0.0.0.0, ::), where kb cannot list the host names it answers to and the
    SDK's Host/Origin check is therefore off. A request without Origin (not from a browser page)
    passes, as does an Origin naming the very host the request was sent to, on the bound port.
    """

    def __init__(self, app: ASGIApp, port: int, allowed: list[str]) -> None:
        self.app = app
        self.port = port
        self.allowed = {origin.rstrip("/").lower() for origin in allowed}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        origin, host = headers.get(b"origin"), headers.get(b"host", b"")
        if origin is None or self.allows(origin.decode("latin-1"), host.decode("latin-1")):
            await self.app(scope, receive, send)
            return
        await _refuse(send, 403, b'{"error": "forbidden", "error_description": "origin not allowed"}')

    def allows(self, origin: str, host: str) -> bool:
        """Whether a request to `host` (its Host header) may come from a page at `origin`."""
        origin = origin.strip().rstrip("/").lower()
        if origin in self.allowed:
            return True
        parts = urlsplit(origin)
        try:
            port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
        except ValueError:  # a port that is not a number
            return False
        return parts.scheme in ("http", "https") and parts.netloc == host.lower() and port == self.port


class SessionCapMiddleware:
    """Keep at most `max_sessions` 2025-era sessions open by ending the ones idle the longest.

    The SDK's own cap refuses every new client (503) while the sessions that filled it (opened and
    never closed) wait out their idle timeout. Instead, before a request that may open a session,
    the sessions idle the longest are ended through the SDK's idle-expiry path. A session with a
    request in flight or its notification stream open is busy, never ended here. An ended session's
    ID answers 404, on which the spec has a client start a new session.
    """

    def __init__(self, app: ASGIApp, manager: StreamableHTTPSessionManager, max_sessions: int) -> None:
        self.app = app
        self.manager = manager
        self.max_sessions = max_sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and _may_open_session(scope):
            ended = end_idlest_sessions(
                _sdk_compat.stateful_sessions(self.manager), keep=self.max_sessions - 1
            )
            if ended:
                logger.info("ended %d idle HTTP session(s) to keep at most %d", ended, self.max_sessions)
        await self.app(scope, receive, send)


def _may_open_session(scope: Scope) -> bool:
    """Whether the SDK would open a 2025-era session for this request (no session ID, no
    2026-era protocol version)."""
    headers = dict(scope["headers"])
    version = headers.get(b"mcp-protocol-version")
    return b"mcp-session-id" not in headers and (
        version is None or version.decode("latin-1") in HANDSHAKE_PROTOCOL_VERSIONS
    )


def end_idlest_sessions(sessions: list[StreamableHTTPServerTransport], keep: int) -> int:
    """End the sessions idle the longest until at most `keep` are open (busy ones never); how many
    it ended.

    Each transport's `idle_scope` has its deadline pushed to infinity while a request is in
    flight, and set to the last request's end plus the idle timeout after; the smallest deadline
    is therefore the session idle the longest. Cancelling the scope is what the timeout does.
    """
    live = [s for s in sessions if not s.is_terminated and not (s.idle_scope and s.idle_scope.cancel_called)]
    idle = [s.idle_scope for s in live if s.idle_scope is not None and s.idle_scope.deadline != math.inf]
    idlest = heapq.nsmallest(len(live) - keep, idle, key=lambda scope: scope.deadline)
    for scope in idlest:
        scope.cancel()
    return len(idlest)


class WholeBodyMiddleware:
    """Hand a request to the app only once its whole body has arrived.

    A client that sends its body slowly then holds only its connection (which the request deadline
    closes), never a session or a handler of the SDK, and one that leaves mid-body is dropped
    quietly. A body over `max_bytes` is passed on as it comes, for the SDK to refuse (413).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._declared_too_big(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size, more = 0, True
        while more and size <= self.max_bytes:
            message = await receive()
            if message["type"] != "http.request":  # the client left before its request was whole
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
        whole: Message | None = {"type": "http.request", "body": b"".join(chunks), "more_body": more}

        async def receive_whole() -> Message:
            nonlocal whole
            if whole is None:  # what follows the body: the client's disconnect, or more of a big body
                return await receive()
            message, whole = whole, None
            return message

        await self.app(scope, receive_whole, send)

    def _declared_too_big(self, scope: Scope) -> bool:
        length = dict(scope["headers"]).get(b"content-length", b"")
        return length.isdigit() and int(length) > self.max_bytes


async def _refuse(send: Send, status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
