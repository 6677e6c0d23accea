"""The MCP server: `build_server(settings)` wires tools, resources and prompts; `run_stdio` serves
it on stdin/stdout (HTTP and SSE are in `kb.http_transport`).

Shared state (the open index, the background sync) lives in a `KbRuntime` made by `build_server`
and handed to handlers as the lifespan context. The SDK enters the lifespan once per connection on
stdio, SSE and in-memory clients, and once per app on streamable HTTP, so the runtime counts its
users: the first opens the index and starts the sync, the last closes it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from mcp.server import MCPServer
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ResourcesListChanged,
    ResourceUpdated,
    SubscriptionBus,
)

from kb import ingest
from kb.config import Settings
from kb.errors import KbError
from kb.index import SearchIndex
from kb.models import SyncReport
from kb.server import audit
from kb.server.notifications import SessionNotifier
from kb.server.prompts import register_prompts
from kb.server.resources import doc_uri, register_resources
from kb.server.tools import register_tools
from kb.watcher import Watcher

logger = logging.getLogger(__name__)

INSTRUCTIONS = """\
kb serves a folder of documents (notes, manuals, specs, papers) kept by the user.
To answer from it: call `search` with a few keywords (Tantivy syntax: words, "phrases", AND/OR/NOT,
field:term; filters for folder, format, tags and date), then `fetch` the ids you need to read the
full passage or document, and cite the id or url you used. Ids are stable: `path` names a whole
document, `path#fragment` one passage; they stay valid across restarts while the file exists.
Long texts come in pages: call `fetch` again with `offset` set to the returned `next_offset`.
Every document is also a resource `kb://doc/<path>`; `kb://status` reports the index.
If a search result says indexing is still running, an empty result may not mean the answer is absent."""


@dataclass
class KbState:
    """What every handler needs: the settings, the open index, and how the background sync went."""

    settings: Settings
    index: SearchIndex
    sync_done: anyio.Event = field(default_factory=anyio.Event)
    last_sync: SyncReport | None = None
    sync_error: str | None = None
    watcher: Watcher | None = None

    @property
    def syncing(self) -> bool:
        return not self.sync_done.is_set()

    def status(self) -> dict[str, Any]:
        """The JSON of the `kb://status` resource."""
        report = self.last_sync
        return {
            **self.index.stats().model_dump(mode="json"),
            "syncing": self.syncing,
            "sync_error": self.sync_error,
            "watcher": self.watcher.state if self.watcher is not None else "off",
            "last_commit": self.watcher.last_commit.isoformat()
            if self.watcher is not None and self.watcher.last_commit
            else None,
            "last_sync": None
            if report is None
            else {
                "added": report.added,
                "updated": report.updated,
                "removed": report.removed,
                "unchanged": report.unchanged,
                "failed": len(report.failed),
                "skipped": len(report.skipped),
                "seconds": report.seconds,
            },
        }


class KbRuntime:
    """Owns the index and the background sync for one server, shared by all its connections."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bus = InMemorySubscriptionBus()  # 2026-07-28: subscriptions/listen streams
        self.sessions = SessionNotifier()  # 2025-11-25: sessions and their resources/subscribe
        self._state: KbState | None = None
        self._users = 0
        self._lock = anyio.Lock()
        self._sync_thread: threading.Thread | None = None

    async def wait_synced(self) -> None:
        """Return once the startup sync has finished (or failed)."""
        await self.require_state().sync_done.wait()

    def require_state(self) -> KbState:
        if self._state is None:
            raise RuntimeError("the kb server is not running")
        return self._state

    @asynccontextmanager
    async def lifespan(self, _server: MCPServer[KbState]) -> AsyncIterator[KbState]:
        async with self._lock:
            if self._users == 0:
                await self._start()
            self._users += 1
        try:
            yield self.require_state()
        finally:
            with anyio.CancelScope(shield=True):
                async with self._lock:
                    self._users -= 1
                    if self._users == 0:
                        await self._stop()

    async def _start(self) -> None:
        settings = self.settings
        index = await anyio.to_thread.run_sync(SearchIndex.open, settings.index_dir, settings.root)
        self._state = state = KbState(settings=settings, index=index)
        # A plain thread, not a task: the connection that started it may end before it does.
        token = anyio.lowlevel.current_token()
        self._sync_thread = threading.Thread(
            target=self._sync_in_thread, args=(state, token), name="kb-sync", daemon=True
        )
        self._sync_thread.start()

    async def _stop(self) -> None:
        state = self._state
        if state is not None and state.watcher is not None:
            await anyio.to_thread.run_sync(state.watcher.stop)
        thread, self._sync_thread = self._sync_thread, None
        if thread is not None:
            # sync() cannot be interrupted; its commits are atomic, so waiting is the clean stop.
            await anyio.to_thread.run_sync(thread.join)
        state, self._state = self._state, None
        if state is not None:
            state.index.close()

    def _sync_in_thread(self, state: KbState, token: anyio.lowlevel.EventLoopToken) -> None:
        report: SyncReport | None = None
        error: str | None = None
        try:
            report = ingest.sync(state.settings, state.index)
            state.index.reload()
        except KbError as exc:
            error = str(exc)
            logger.warning("background sync failed: %s", exc)
        except Exception as exc:  # the thread's top: keep the server answering from the last commit
            error = f"{type(exc).__name__}: {exc}"
            logger.exception("background sync crashed")
        try:
            anyio.from_thread.run(self._sync_finished, state, report, error, token=token)
        except RuntimeError:  # the event loop is gone (process shutting down): nobody to tell
            logger.debug("sync finished after the event loop closed")
            return
        if state.settings.watch:
            self._start_watcher(state, token)

    def _start_watcher(self, state: KbState, token: anyio.lowlevel.EventLoopToken) -> None:
        def committed(report: SyncReport) -> None:
            try:
                anyio.from_thread.run(publish_changes, self.bus, report, self.sessions, token=token)
            except RuntimeError:
                logger.debug("changes committed after the event loop closed")

        watcher = Watcher(state.settings, state.index, on_commit=committed)
        watcher.start()  # if the folder cannot be observed, it falls back to periodic rescans
        state.watcher = watcher
        if watcher.state == "watching":
            logger.info("watching %s for changes", state.settings.root)

    async def _sync_finished(
        self,
        state: KbState,
        report: SyncReport | None,
        error: str | None,
    ) -> None:
        state.last_sync, state.sync_error = report, error
        state.sync_done.set()
        if report is not None:
            logger.info(
                "sync done: %d added, %d updated, %d removed, %d unchanged, %d failed in %.2fs",
                report.added,
                report.updated,
                report.removed,
                report.unchanged,
                len(report.failed),
                report.seconds,
            )
        if report is not None:
            await publish_changes(self.bus, report, self.sessions)


async def publish_changes(
    bus: SubscriptionBus, report: SyncReport, sessions: SessionNotifier | None = None
) -> None:
    """Tell clients what a commit changed: list-changed on adds and removes (a rename is both),
    updated for every changed or removed document. `subscriptions/listen` clients hear it through
    `bus`, 2025-era sessions through `sessions`."""
    list_changed = bool(report.added_paths or report.removed_paths)
    updated = [doc_uri(path) for path in [*report.updated_paths, *report.removed_paths]]
    if list_changed:
        await bus.publish(ResourcesListChanged())
    for uri in updated:
        await bus.publish(ResourceUpdated(uri=uri))
    if sessions is not None:
        await sessions.publish(list_changed=list_changed, updated=updated)


def build_server(settings: Settings, *, runtime: KbRuntime | None = None) -> MCPServer[KbState]:
    """An MCP server for the documents under `settings.root`, indexed in `settings.index_dir`.

    Nothing is opened until a transport starts the server's lifespan. Pass a `runtime` to reach
    the server's state from outside (tests, the watcher).
    """
    runtime = runtime or KbRuntime(settings)
    server: MCPServer[KbState] = MCPServer(
        "kb",
        title="kb knowledge base",
        description="Search and read a folder of documents.",
        instructions=INSTRUCTIONS,
        version=_version(),
        lifespan=runtime.lifespan,
        log_level="WARNING",
        subscriptions=runtime.bus,
    )
    audit.install(server)  # first: the outermost middleware, so its duration covers the others
    register_tools(server)
    register_resources(server, runtime)
    runtime.sessions.install(server)
    register_prompts(server, runtime)
    return server


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kb")
    except PackageNotFoundError:
        return "0"


# ---- transports ------------------------------------------------------------------------------


def run_stdio(settings: Settings) -> None:
    """Serve MCP on stdin/stdout until the client closes it. Logs go to stderr (set up by the CLI)."""
    anyio.run(build_server(settings).run_stdio_async)
