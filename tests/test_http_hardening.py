"""HTTP under abuse: sessions never closed, loopback aliases, any-case `Bearer`, slow requests."""

from __future__ import annotations

import logging
import select
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.to_thread
import httpx2 as httpx
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_helpers import anyio_backend, index_now, make_settings  # noqa: F401

from kb.config import Settings
from kb.server import _sdk_compat, build_server
from kb.server.http import bind_socket, http_app, serve_http

pytestmark = pytest.mark.anyio

TIMEOUT = 60  # a bound on waiting for a loaded 2-core machine, not a timing assertion
INITIALIZE = (
    b'{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",'
    b' "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}}'
)
JSON_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
REQUEST_TIMEOUT = 1.0  # the server's bound on receiving a request, short for the tests


@asynccontextmanager
async def serving(settings: Settings, host: str = "127.0.0.1", **options: float) -> AsyncIterator[int]:
    """`serve_http` on a real socket bound to `host`; yields the port."""
    sock = bind_socket(host, 0)
    port = sock.getsockname()[1]
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: serve_http(settings, sock, **options))
            yield port
            tg.cancel_scope.cancel()
    finally:
        sock.close()


async def _initialize(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> httpx.Response:
    return await http.post(url, content=INITIALIZE, headers=headers)


# ---- sessions opened and never closed (issue 12, item 14) ---------------------------------------------


PING = b'{"jsonrpc": "2.0", "id": 2, "method": "ping"}'


async def test_sessions_left_open_past_the_cap_make_room_by_ending_the_longest_idle(settings):
    cap = 12
    server = build_server(settings)
    with bind_socket("127.0.0.1", 0) as sock:
        port = sock.getsockname()[1]
        url = f"http://127.0.0.1:{port}/mcp"
        app = http_app(server, settings, "127.0.0.1", port, max_sessions=cap)
        uv = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, log_level="warning"))
        async with anyio.create_task_group() as tg:
            tg.start_soon(uv.serve, [sock])
            with anyio.fail_after(TIMEOUT):
                async with httpx.AsyncClient() as http:
                    # One session keeps its notification stream open (busy, as a desktop client's is).
                    listener = await _initialize(http, url, JSON_HEADERS)
                    listening = {**JSON_HEADERS, "mcp-session-id": listener.headers["mcp-session-id"]}
                    async with http.stream("GET", url, headers=listening) as stream:
                        opened = [await _initialize(http, url, JSON_HEADERS) for _ in range(4 * cap)]
                        await anyio.wait_all_tasks_blocked()  # the ended sessions' tasks wound down
                        live = len(_sdk_compat.stateful_sessions(server.session_manager))
                        oldest = {**JSON_HEADERS, "mcp-session-id": opened[0].headers["mcp-session-id"]}
                        newest = {**JSON_HEADERS, "mcp-session-id": opened[-1].headers["mcp-session-id"]}
                        ended = await http.post(url, content=PING, headers=oldest)
                        kept = await http.post(url, content=PING, headers=newest)
                        still_listening = await http.post(url, content=PING, headers=listening)
                        assert stream.status_code == 200
                async with Client(streamable_http_client(url), mode="legacy", cache=None) as client:
                    result = await client.call_tool("search", {"query": "kangaroo"})
            tg.cancel_scope.cancel()
    assert all(response.status_code == 200 for response in opened)
    assert live <= cap
    assert ended.status_code == 404  # on which the spec has the client start a new session
    assert kept.status_code == still_listening.status_code == 200
    assert not result.is_error and result.structured_content["results"]


# ---- the Host of a loopback alias (item 15) ----------------------------------------------------------


async def test_a_bind_to_a_loopback_alias_answers_requests_naming_that_address(tmp_path):
    settings = make_settings(tmp_path, token="s3cret")
    index_now(settings)
    good = {**JSON_HEADERS, "authorization": "Bearer s3cret"}
    async with serving(settings, "127.0.0.2") as port:
        url = f"http://127.0.0.2:{port}/mcp"
        with anyio.fail_after(TIMEOUT):
            async with httpx.AsyncClient() as http:
                own = await _initialize(http, url, good)
                same_origin = await _initialize(http, url, {**good, "origin": f"http://127.0.0.2:{port}"})
                localhost = await _initialize(http, url, {**good, "host": f"localhost:{port}"})
                other_alias = await _initialize(http, url, {**good, "host": f"127.0.0.3:{port}"})
                rebound = await _initialize(http, url, {**good, "host": f"evil.example:{port}"})
    assert own.status_code == same_origin.status_code == localhost.status_code == 200
    assert other_alias.status_code == rebound.status_code == 421


# ---- the bearer scheme in any case ------------------------------------------------------------------


async def test_the_bearer_scheme_is_matched_in_any_case_and_the_token_exactly(tmp_path):
    settings = make_settings(tmp_path, token="s3cret")
    index_now(settings)
    given = {
        "Bearer s3cret": 200,
        "bearer s3cret": 200,
        "BEARER s3cret": 200,
        "bEaReR   s3cret": 200,
        "bearer S3CRET": 401,
        "bearer s3cret2": 401,
        "bearer s3cre": 401,
        "bearers3cret": 401,
        "Basic s3cret": 401,
        "bearer": 401,
        "s3cret": 401,
    }
    status: dict[str, int] = {}
    async with serving(settings) as port:
        url = f"http://127.0.0.1:{port}/mcp"
        with anyio.fail_after(TIMEOUT):
            async with httpx.AsyncClient() as http:
                for authorization in given:
                    response = await _initialize(http, url, {**JSON_HEADERS, "authorization": authorization})
                    status[authorization] = response.status_code
    assert status == given


# ---- requests trickled a byte at a time ----------------------------------------------------------------


def _trickle(port: int, head: bytes, trickled: bytes, *, limit: float) -> tuple[float, bytes]:
    """Send `head` at once, then `trickled` a byte every tenth of a second until the server closes
    the connection or `limit` seconds pass. Returns the seconds the connection lived and what the
    server sent."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as sock:
        start = time.monotonic()
        sock.sendall(head)
        for byte in trickled:
            # The wait paces the trickle and notices the close at once: it is not synchronization.
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    return time.monotonic() - start, received
                received += chunk
            if time.monotonic() - start > limit:
                break
            try:
                sock.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - start, received
    return limit, received


async def test_a_request_head_trickled_a_byte_at_a_time_is_cut_off(settings):
    trickled = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000
    async with serving(settings, request_timeout=REQUEST_TIMEOUT) as port:
        with anyio.fail_after(TIMEOUT):
            lived, _ = await anyio.to_thread.run_sync(
                lambda: _trickle(port, b"", trickled, limit=REQUEST_TIMEOUT + 5)
            )
    assert lived < REQUEST_TIMEOUT + 2


async def test_a_connection_that_sends_nothing_is_closed(settings):
    async with serving(settings, request_timeout=REQUEST_TIMEOUT) as port:
        with anyio.fail_after(TIMEOUT):
            lived = await anyio.to_thread.run_sync(lambda: _silent(port, limit=REQUEST_TIMEOUT + 5))
    assert lived < REQUEST_TIMEOUT + 2


def _silent(port: int, *, limit: float) -> float:
    """Connect and send nothing; the seconds until the server closes (at most `limit`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as sock:
        start = time.monotonic()
        try:
            sock.recv(1)
        except TimeoutError:
            return limit
        except ConnectionResetError:
            pass
        return time.monotonic() - start


async def test_a_request_body_trickled_a_byte_at_a_time_is_cut_off_quietly(settings, caplog):
    async with serving(settings, request_timeout=REQUEST_TIMEOUT) as port:
        head = (
            f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            "Accept: application/json, text/event-stream\r\nContent-Length: 5000\r\n\r\n"
        ).encode()
        with anyio.fail_after(TIMEOUT):
            lived, received = await anyio.to_thread.run_sync(
                lambda: _trickle(port, head, INITIALIZE, limit=REQUEST_TIMEOUT + 5)
            )
    assert lived < REQUEST_TIMEOUT + 2
    assert received == b""  # closed, as uvicorn closes an idle keep-alive connection
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]  # MCP never saw it


async def test_a_long_response_outlives_the_request_deadline(settings):
    async with serving(settings, request_timeout=REQUEST_TIMEOUT) as port:
        url = f"http://127.0.0.1:{port}/mcp"
        with anyio.fail_after(TIMEOUT):
            async with httpx.AsyncClient() as http:
                opened = await _initialize(http, url, JSON_HEADERS)
            stream = (
                f"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
                f"Mcp-Session-Id: {opened.headers['mcp-session-id']}\r\n\r\n"
            ).encode()
            received, closed = await anyio.to_thread.run_sync(
                lambda: _listen(port, stream, seconds=REQUEST_TIMEOUT * 2)
            )
    assert received.startswith(b"HTTP/1.1 200 ") and b"text/event-stream" in received
    assert not closed  # the notification stream stays open past the deadline


def _listen(port: int, request: bytes, *, seconds: float) -> tuple[bytes, bool]:
    """Send `request` and read for `seconds`: what arrived, and whether the server closed."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as sock:
        sock.sendall(request)
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            # Waiting out the whole period is the point: the server must not close before it ends.
            readable, _, _ = select.select([sock], [], [], left)
            if readable:
                chunk = sock.recv(65536)
                if not chunk:
                    return received, True
                received += chunk
    return received, False


async def test_a_client_that_sends_promptly_is_served_as_before(settings):
    async with serving(settings, request_timeout=REQUEST_TIMEOUT) as port:
        url = f"http://127.0.0.1:{port}/mcp"
        with anyio.fail_after(TIMEOUT):
            async with Client(url, mode="legacy", cache=None) as client:
                result = await client.call_tool("search", {"query": "kangaroo"})
    assert not result.is_error and result.structured_content["results"]
