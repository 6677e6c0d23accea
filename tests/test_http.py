"""Serving over HTTP: what the transport does for every client (the abuse cases are in
test_http_hardening.py)."""

from __future__ import annotations

import socket

import anyio
import pytest
from mcp import Client
from mcp_helpers import anyio_backend  # noqa: F401

from kb.server.http import bind_socket, http_server

pytestmark = pytest.mark.anyio

TIMEOUT = 60  # a bound on waiting for a loaded 2-core machine, not a timing assertion


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_connections_send_without_waiting_for_acknowledgements(settings, mode):
    # A JSON response leaves in two writes (head, then body); with Nagle's algorithm on, the body
    # waits for the client's delayed acknowledgement of the head, about 40 ms on Linux.
    with bind_socket("127.0.0.1", 0) as sock:
        port = sock.getsockname()[1]
        uv = http_server(settings, sock)
        async with anyio.create_task_group() as tg:
            tg.start_soon(uv.serve, [sock])
            with anyio.fail_after(TIMEOUT):
                async with Client(f"http://127.0.0.1:{port}/mcp", mode=mode, cache=None) as client:
                    result = await client.call_tool("search", {"query": "kangaroo"})
                    connections = list(uv.server_state.connections)
                    sockets = [c.transport.get_extra_info("socket") for c in connections]
                    no_delay = [s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in sockets]
            tg.cancel_scope.cancel()
    assert not result.is_error and result.structured_content["results"]
    assert connections and all(no_delay)
