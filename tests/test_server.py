"""The server as a whole: wiring, instructions and capabilities, the background sync, and the real
transports (stdio in a subprocess, streamable HTTP and SSE on a free port, bearer token, Host/Origin)."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path

import anyio
import httpx2 as httpx
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp_helpers import MODES, anyio_backend, connected, index_now, make_settings  # noqa: F401

from kb.errors import ConfigError
from kb.index import SearchIndex
from kb.server import INSTRUCTIONS, KbRuntime, build_server
from kb.server.http import bind_socket, check_http_settings, serve_http

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", MODES)
async def test_server_tells_the_model_to_search_then_fetch(settings, mode):
    async with connected(settings, mode) as client:
        assert client.instructions == INSTRUCTIONS
        assert "search" in client.instructions and "fetch" in client.instructions


async def test_modern_listeners_hear_list_changed_when_the_startup_sync_adds_documents(tmp_path):
    settings = make_settings(tmp_path)  # not indexed beforehand: the server's own sync adds everything
    async with (
        connected(settings, synced=False) as client,
        client.listen(resources_list_changed=True) as events,
    ):
        with anyio.fail_after(20):
            event = await events.__anext__()
        assert type(event).__name__ == "ResourcesListChanged"
        assert (await client.list_resources()).resources


@asynccontextmanager
async def first_sync_held(settings) -> AsyncIterator[tuple[Client, KbRuntime, ExitStack]]:
    """A client of a server whose start-up sync waits behind a writer held here, with new.md on disk
    but not yet indexed; closing the yielded stack lets the sync run."""
    (settings.root / "new.md").write_text("# New\n\nA fresh kangaroo note.\n")
    holder = SearchIndex.open(settings.index_dir, settings.root)
    runtime = KbRuntime(settings)
    try:
        with ExitStack() as writer:
            writer.enter_context(holder.batch(wait=5))
            async with Client(build_server(settings, runtime=runtime), cache=None) as client:
                try:
                    yield client, runtime, writer
                finally:
                    writer.close()  # before the client: the server's shutdown waits for its sync
    finally:
        holder.close()


async def test_search_while_the_first_sync_runs_says_results_may_be_incomplete(settings):
    async with first_sync_held(settings) as (client, runtime, writer):
        during = await client.call_tool("search", {"query": "kangaroo"})
        writer.close()
        with anyio.fail_after(20):
            await runtime.wait_synced()
        after = await client.call_tool("search", {"query": "kangaroo"})
    data = during.structured_content
    assert data["indexing"] is True and "incomplete" in data["notice"]
    assert '"notice": ' in during.content[0].text
    assert data["results"]  # what is already committed is served at once
    assert "indexing" not in after.structured_content
    assert "new.md" in {hit["path"] for hit in after.structured_content["results"]}


async def test_reads_while_the_first_sync_runs_serve_files_it_has_not_reached(settings):
    (settings.root / "new.pdf").write_bytes(b"%PDF-1.4 not yet indexed")
    async with first_sync_held(settings) as (client, runtime, _):
        assert runtime.library.syncing
        fetched = await client.call_tool("fetch", {"id": "new.md"})
        passage = await client.call_tool("fetch", {"id": "new.md#new"})
        resource = await client.read_resource("kb://doc/new.md")
        prompt = await client.get_prompt("summarize_document", {"path": "new.md"})
        pdf = await client.call_tool("fetch", {"id": "new.pdf"})
        with pytest.raises(MCPError) as pdf_resource:
            await client.read_resource("kb://doc/new.pdf")
        absent = await client.call_tool("fetch", {"id": "absent.md"})
    assert not fetched.is_error and "A fresh kangaroo note." in fetched.structured_content["text"]
    assert fetched.structured_content["title"] == "New"
    assert passage.structured_content["text"] == "# New\n\nA fresh kangaroo note."  # as written
    assert resource.contents[0].text == "# New\n\nA fresh kangaroo note.\n"
    assert resource.contents[0].mime_type == "text/markdown"
    assert "A fresh kangaroo note." in prompt.messages[0].content.resource.text
    # PDFs are extracted only by the sync's time-boxed workers: kb says to come back, not "absent".
    assert pdf.is_error and "still indexing" in pdf.content[0].text
    assert "still indexing" in pdf_resource.value.error.message
    assert absent.is_error and "use the search tool" in absent.content[0].text  # not on disk at all


def test_binding_beyond_loopback_without_a_token_is_refused(tmp_path):
    settings = make_settings(tmp_path)
    with pytest.raises(ConfigError, match="--token"):
        check_http_settings(settings, "0.0.0.0")
    check_http_settings(settings.model_copy(update={"token": "s3cret"}), "0.0.0.0")
    check_http_settings(settings, "127.0.0.1")


@pytest.mark.parametrize("mode", MODES)
async def test_streamable_http_serves_both_protocol_eras(settings, mode):
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve_http, settings, sock)
        with anyio.fail_after(20):
            async with Client(f"http://127.0.0.1:{port}/mcp", mode=mode, cache=None) as client:
                result = await client.call_tool("search", {"query": "kangaroo"})
                resource = await client.read_resource("kb://doc/guide/install.md")
                assert client.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
        tg.cancel_scope.cancel()
    sock.close()
    assert not result.is_error and result.structured_content["results"]
    assert resource.contents[0].mime_type == "text/markdown"


async def test_http_requires_the_bearer_token_and_checks_host_and_origin(tmp_path):
    settings = make_settings(tmp_path, token="s3cret", allow_origins=["https://app.example.com"])
    index_now(settings)
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/mcp"
    body = (
        b'{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",'
        b' "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}}'
    )
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    good = {**headers, "authorization": "Bearer s3cret"}
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve_http, settings, sock)
        with anyio.fail_after(20):
            async with httpx.AsyncClient() as http:
                missing = await http.post(url, content=body, headers=headers)
                wrong = await http.post(
                    url, content=body, headers={**headers, "authorization": "Bearer nope"}
                )
                evil_origin = await http.post(
                    url, content=body, headers={**good, "origin": "http://evil.example"}
                )
                evil_host = await http.post(url, content=body, headers={**good, "host": "evil.example"})
                allowed = await http.post(
                    url, content=body, headers={**good, "origin": "https://app.example.com"}
                )
                too_big = await http.post(url, content=b" " * (2 * 1024 * 1024), headers=good)
        tg.cancel_scope.cancel()
    sock.close()
    assert missing.status_code == wrong.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert evil_origin.status_code == 403
    assert evil_host.status_code == 421
    assert allowed.status_code < 400
    assert too_big.status_code == 413


async def test_sse_transport_serves_legacy_clients(settings):
    from mcp.client.sse import sse_client

    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve_http, settings, sock, True)
        with anyio.fail_after(20):
            async with Client(
                sse_client(f"http://127.0.0.1:{port}/sse"), mode="legacy", cache=None
            ) as client:
                result = await client.call_tool("fetch", {"id": "notes.txt"})
        tg.cancel_scope.cancel()
    sock.close()
    assert "wombats" in result.structured_content["text"]


def _cli_has_serve() -> bool:
    from kb.cli import cli

    return "serve" in cli.commands


@pytest.mark.skipif(not _cli_has_serve(), reason="`kb serve` is not wired into the CLI yet")
async def test_stdio_subprocess_answers_a_search(settings):
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "kb", "serve", str(settings.root), "--index-dir", str(settings.index_dir)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    with anyio.fail_after(30):
        async with Client(params, mode="legacy", cache=None) as client:
            result = await client.call_tool("search", {"query": "kangaroo"})
    assert not result.is_error
    assert any(hit["path"] == "notes.txt" for hit in result.structured_content["results"])
