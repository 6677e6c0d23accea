"""The server's shared state: a ref-counted lifespan around one `Library`, and publishing what its
commits changed to clients.

The SDK enters the lifespan once per connection on stdio, SSE and in-memory clients, and once per
app on streamable HTTP, so the runtime counts its users: the first opens the library and starts its
sync, the last closes it. Handlers reach the library through the request context (`library_of`).
"""

from __future__ import annotations

import functools
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar, cast

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ResourcesListChanged,
    ResourceUpdated,
    SubscriptionBus,
)

from kb.config import Settings
from kb.index import DEFAULT_RANKING, Ranking
from kb.library import Library
from kb.models import SyncReport
from kb.server._uris import doc_uri
from kb.server.notifications import SessionNotifier

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Library reads run in worker threads, so a long query does not hold up other clients. Tantivy
# searches without the GIL, so a few threads keep the cores busy; more (anyio's default is 40, one
# per concurrent request) only take turns at the GIL, and each new thread grows the resident set
# by its own stack and malloc arena.
READ_THREADS = 4


def library_of(ctx: Context) -> Library:
    """The server's library, from a handler's context (the lifespan yields it)."""
    return cast("Library", ctx.request_context.lifespan_context)


class KbRuntime:
    """Owns the library for one server, shared by all its connections."""

    def __init__(
        self,
        settings: Settings,
        ranking: Ranking = DEFAULT_RANKING,
        *,
        replica: bool = False,
        writer_synced: Callable[[], bool] | None = None,
        on_synced: Callable[[], None] | None = None,
    ) -> None:
        """A `replica` serves an index that another process writes, whose startup sync is done once
        `writer_synced()` (see `Library.open`); `on_synced()` is told when this one's is."""
        self.settings = settings
        self.ranking = ranking
        self.replica = replica
        self._writer_synced = writer_synced
        self._on_synced = on_synced
        self.bus = InMemorySubscriptionBus()  # 2026-07-28: subscriptions/listen streams
        self.sessions = SessionNotifier()  # 2025-11-25: sessions and their resources/subscribe
        self._library: Library | None = None
        self._synced: anyio.Event | None = None  # made on the event loop, by the first user
        self._users = 0
        self._lock = anyio.Lock()
        self._reads = anyio.CapacityLimiter(READ_THREADS)

    async def read(self, func: Callable[[], T]) -> T:
        """`func()` (a blocking read of the library) in a worker thread, at most `READ_THREADS`
        at once; the others wait their turn on the event loop."""
        return await anyio.to_thread.run_sync(func, limiter=self._reads)

    async def wait_synced(self) -> None:
        """Return once the startup sync has finished (or failed)."""
        if self._synced is None:
            raise RuntimeError("the kb server is not running")
        await self._synced.wait()

    @property
    def library(self) -> Library:
        """The open library.

        Raises:
            RuntimeError: the server is not running (no lifespan entered).
        """
        if self._library is None:
            raise RuntimeError("the kb server is not running")
        return self._library

    @asynccontextmanager
    async def lifespan(self, _server: MCPServer[Library]) -> AsyncIterator[Library]:
        async with self._lock:
            if self._users == 0:
                await self._start()
            self._users += 1
        try:
            yield self.library
        finally:
            with anyio.CancelScope(shield=True):
                async with self._lock:
                    self._users -= 1
                    if self._users == 0:
                        await self._stop()

    async def _start(self) -> None:
        library = await anyio.to_thread.run_sync(
            functools.partial(
                Library.open,
                self.settings,
                self.ranking,
                replica=self.replica,
                writer_synced=self._writer_synced,
            )
        )
        self._library, self._synced = library, anyio.Event()
        token = anyio.lowlevel.current_token()

        def synced(report: SyncReport | None) -> None:
            _settle_heap()
            if self._on_synced is not None:
                self._on_synced()
            self._on_loop(token, self._sync_finished, report)

        def committed(report: SyncReport) -> None:
            self._on_loop(token, publish_changes, self.bus, report, self.sessions)

        library.start(on_synced=synced, on_commit=committed)

    async def _stop(self) -> None:
        library, self._library = self._library, None
        if library is not None:
            await anyio.to_thread.run_sync(library.close)

    async def _sync_finished(self, report: SyncReport | None) -> None:
        if self._synced is not None:
            self._synced.set()
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
            await publish_changes(self.bus, report, self.sessions)

    @staticmethod
    def _on_loop(token: anyio.lowlevel.EventLoopToken, func: Any, *args: Any) -> None:
        """Run `func(*args)` on the server's event loop from a library thread, if it still runs."""
        try:
            anyio.from_thread.run(func, *args, token=token)
        except RuntimeError:  # the event loop is gone (process shutting down): nobody to tell
            logger.debug("%s after the event loop closed", getattr(func, "__name__", func))


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


@functools.cache
def _settle_heap() -> None:
    """Once a process's first server has synced: collect, then exempt what is alive (modules, the
    SDK, the open index: about 90,000 objects) from later full collections, which scanned it all
    and stalled whatever request was running (40-55 ms in the middle of a resources/list of
    10,000 documents). Once per process: it is the process's heap, not one server's."""
    gc.collect()
    gc.freeze()
