"""Change notifications with a real watcher, real files and a real `Client`, in both protocol eras:
2025-11-25 sessions (`resources/subscribe`, session notifications) in memory and over streamable
HTTP, and 2026-07-28 `subscriptions/listen` streams. Every wait is on the notification itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx2 as httpx
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_helpers import anyio_backend, index_now, make_settings  # noqa: F401
from mcp_types import ResourceListChangedNotification, ResourceUpdatedNotification, ServerNotification

from kb.config import Settings
from kb.server import KbRuntime, build_server
from kb.server._uris import canonical_uri
from kb.server.http import bind_socket, http_app

pytestmark = [
    pytest.mark.anyio,
    # The 2025-era subscribe calls are what these tests exercise; the SDK marks them deprecated.
    pytest.mark.filterwarnings(
        "ignore:resources/(un)?subscribe is removed:mcp.shared.exceptions.MCPDeprecationWarning"
    ),
]

TIMEOUT = 20
INSTALL_URI = "kb://doc/guide/install.md"
NOTES_URI = "kb://doc/notes.txt"
LIST_CHANGED = "notifications/resources/list_changed"
UPDATED = "notifications/resources/updated"


class Inbox:
    """A client's message handler that keeps every server notification, to wait on."""

    def __init__(self) -> None:
        self._send, self._receive = anyio.create_memory_object_stream[ServerNotification](1000)
        self.seen: list[ServerNotification] = []  # everything received so far
        self._unclaimed: list[ServerNotification] = []

    def close(self) -> None:
        self._send.close()
        self._receive.close()

    async def handle(self, message: ServerNotification | Exception) -> None:
        if isinstance(message, Exception):
            raise message
        self._send.send_nowait(message)

    async def next(self, method: str) -> ServerNotification:
        """The first notification with `method` not returned before (the client may hand over
        notifications of one commit in any order)."""
        for i, message in enumerate(self._unclaimed):
            if message.method == method:
                return self._unclaimed.pop(i)
        with anyio.fail_after(TIMEOUT):
            async for message in self._receive:
                self.seen.append(message)
                if message.method == method:
                    return message
                self._unclaimed.append(message)
        raise AssertionError("the client's message stream ended")

    async def updated(self) -> str:
        message = await self.next(UPDATED)
        assert isinstance(message, ResourceUpdatedNotification)
        return message.params.uri


async def watching(runtime: KbRuntime) -> None:
    """Wait until the server's startup sync is done and its watcher has started."""
    with anyio.fail_after(TIMEOUT):
        await runtime.wait_synced()
    assert await anyio.to_thread.run_sync(runtime.library.watching.wait, TIMEOUT)
    assert runtime.library.watcher is not None


@asynccontextmanager
async def legacy_sessions(
    settings: Settings, count: int = 1
) -> AsyncIterator[tuple[KbRuntime, list[tuple[Client, Inbox]]]]:
    """`count` 2025-11-25 sessions on one server with a running watcher, each with its inbox.

    A test may end the last session early (clients close in the reverse order they opened):
    `await client.__aexit__(None, None, None)`, then drop it from the list.
    """
    runtime = KbRuntime(settings)
    server = build_server(settings, runtime=runtime)
    sessions: list[tuple[Client, Inbox]] = []
    try:
        for _ in range(count):
            inbox = Inbox()
            client = Client(server, mode="legacy", cache=None, message_handler=inbox.handle)
            sessions.append((await client.__aenter__(), inbox))
        await watching(runtime)
        yield runtime, sessions
    finally:
        for client, inbox in reversed(sessions):
            await client.__aexit__(None, None, None)
            inbox.close()


# ---- capabilities ------------------------------------------------------------------------


async def test_legacy_sessions_are_told_resources_can_be_subscribed_and_list_changes(settings):
    async with legacy_sessions(settings) as (_, [(client, _)]):
        caps = client.server_capabilities
    assert caps.resources is not None and caps.resources.subscribe and caps.resources.list_changed
    # Tools and prompts never change, so the 2025 era promises no list changes for them.
    assert caps.tools is not None and not caps.tools.list_changed
    assert caps.prompts is not None and not caps.prompts.list_changed
    assert caps.completions is not None


async def test_modern_clients_are_told_resources_can_be_subscribed_and_list_changes(settings):
    runtime = KbRuntime(settings)
    async with Client(build_server(settings, runtime=runtime), cache=None) as client:
        caps = client.server_capabilities
        assert client.protocol_version == "2026-07-28"
    assert caps.resources is not None and caps.resources.subscribe and caps.resources.list_changed


# ---- 2025-11-25 sessions -------------------------------------------------------------------


async def test_a_new_file_sends_list_changed_to_every_session(settings):
    async with legacy_sessions(settings, count=2) as (_, [(_, first), (_, second)]):
        (settings.root / "new.md").write_text("# New\n\nA fresh note about emus.\n")
        assert isinstance(await first.next(LIST_CHANGED), ResourceListChangedNotification)
        assert isinstance(await second.next(LIST_CHANGED), ResourceListChangedNotification)


async def test_an_edit_of_a_subscribed_document_sends_updated_with_its_uri(settings):
    async with legacy_sessions(settings) as (_, [(client, inbox)]):
        await client.subscribe_resource(INSTALL_URI)
        (settings.root / "guide" / "install.md").write_text("# Install\n\nNow with emus and more words.\n")
        assert await inbox.updated() == INSTALL_URI
        read = await client.read_resource(INSTALL_URI)
    assert "emus" in read.contents[0].text
    assert not any(m.method == LIST_CHANGED for m in inbox.seen)  # an edit adds and removes nothing


async def test_a_deleted_subscribed_document_sends_updated_and_list_changed(settings):
    async with legacy_sessions(settings) as (_, [(client, inbox)]):
        await client.subscribe_resource(NOTES_URI)
        (settings.root / "notes.txt").unlink()
        assert await inbox.updated() == NOTES_URI
        assert isinstance(await inbox.next(LIST_CHANGED), ResourceListChangedNotification)


async def test_updated_names_the_document_as_the_client_spelled_it(settings):
    async with legacy_sessions(settings) as (_, [(client, inbox)]):
        await client.subscribe_resource("kb://doc/ref page.html")
        (settings.root / "ref page.html").write_text(
            "<html><body><p>Platypus facts, revised.</p></body></html>"
        )
        assert await inbox.updated() == "kb://doc/ref page.html"


async def test_after_unsubscribing_edits_send_no_more_updated(settings):
    async with legacy_sessions(settings, count=2) as (_, sessions):
        (leaver, leaver_inbox), (observer, observer_inbox) = sessions
        await leaver.subscribe_resource(INSTALL_URI)
        await observer.subscribe_resource(INSTALL_URI)
        await leaver.unsubscribe_resource(INSTALL_URI)
        (settings.root / "guide" / "install.md").write_text("# Install\n\nEdited once, kangaroo.\n")
        assert await observer_inbox.updated() == INSTALL_URI  # that commit is done
        (settings.root / "later.md").write_text("# Later\n\nA later note.\n")
        # The next commit, at least a debounce later: an updated sent before it has arrived by now.
        await leaver_inbox.next(LIST_CHANGED)
    assert not any(m.method == UPDATED for m in leaver_inbox.seen)


async def test_a_session_that_ended_is_forgotten(settings):
    async with legacy_sessions(settings, count=2) as (runtime, sessions):
        (_, inbox), leaver = sessions[0], sessions[1][0]
        await leaver.subscribe_resource(INSTALL_URI)
        assert runtime.sessions.session_count == 2
        await leaver.__aexit__(None, None, None)
        sessions.pop()[1].close()
        assert runtime.sessions.session_count == 1
        (settings.root / "guide" / "install.md").write_text("# Install\n\nAfter the leaver left.\n")
        (settings.root / "new.md").write_text("# New\n\nStill told.\n")
        await inbox.next(LIST_CHANGED)


def test_document_uris_have_one_canonical_spelling():
    assert canonical_uri("kb://doc/ref page.html") == "kb://doc/ref%20page.html"
    assert canonical_uri("kb://doc/ref%20page.html#intro") == "kb://doc/ref%20page.html"
    assert canonical_uri("kb://status") == "kb://status"


# ---- 2026-07-28 listen streams -------------------------------------------------------------


async def test_modern_listeners_hear_new_files_and_edits_of_their_documents(settings):
    runtime = KbRuntime(settings)
    async with (
        Client(build_server(settings, runtime=runtime), cache=None) as client,
        client.listen(resources_list_changed=True, resource_subscriptions=[INSTALL_URI]) as events,
    ):
        await watching(runtime)
        (settings.root / "new.md").write_text("# New\n\nA fresh note about emus.\n")
        with anyio.fail_after(TIMEOUT):
            event = await events.__anext__()
        assert type(event).__name__ == "ResourcesListChanged"
        (settings.root / "guide" / "install.md").write_text("# Install\n\nNow with emus and more words.\n")
        with anyio.fail_after(TIMEOUT):
            event = await events.__anext__()
        assert type(event).__name__ == "ResourceUpdated" and event.uri == INSTALL_URI


# ---- over streamable HTTP ------------------------------------------------------------------


async def test_legacy_sessions_over_http_hear_updates_and_list_changes(settings):
    runtime = KbRuntime(settings)
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    app = http_app(build_server(settings, runtime=runtime), settings, "127.0.0.1", port)
    standalone_stream_open = anyio.Event()

    async def on_response(response: httpx.Response) -> None:
        if response.request.method == "GET" and response.status_code == 200:
            standalone_stream_open.set()  # where a 2025 session's notifications travel

    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, log_level="warning"))
    inbox = Inbox()
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        async with httpx.AsyncClient(event_hooks={"response": [on_response]}) as http:
            transport = streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http)
            async with Client(transport, mode="legacy", cache=None, message_handler=inbox.handle) as client:
                assert client.protocol_version == "2025-11-25"
                await watching(runtime)
                with anyio.fail_after(TIMEOUT):
                    await standalone_stream_open.wait()
                await client.subscribe_resource(INSTALL_URI)
                (settings.root / "guide" / "install.md").write_text("# Install\n\nOver HTTP, emus.\n")
                assert await inbox.updated() == INSTALL_URI
                (settings.root / "new.md").write_text("# New\n\nA fresh note.\n")
                await inbox.next(LIST_CHANGED)
        tg.cancel_scope.cancel()
    sock.close()
    inbox.close()
