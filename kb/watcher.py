"""Keep the index fresh while serving: watchdog events -> debounced batches -> `ingest.sync_paths`.

Events only name paths; the batch step looks at the files themselves, so create, modify, delete,
moves of files and folders, and editors' atomic saves (write a temp file, rename it over the
original) all come down to "sync these paths". A burst (a `git checkout`) coalesces into a few
commits; past a bound, or when the observer dies, the watcher falls back to a full stat-only
rescan, which is also run periodically as a safety net. The index writer is held only while a
batch commits, so a scheduled `kb index` can take its turn in between.

Health shows in `state`: a root that is gone ("root missing": nothing is synced, the last commit
keeps being served, and the root is looked for every `ROOT_POLL_SECONDS` until it returns, when
the observer restarts and a rescan runs), a batch running past its bound ("stuck"), and a batch
thread that died ("failed").
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from kb import ingest
from kb.config import Settings
from kb.errors import IndexLockedError, RootMissingError
from kb.index import SearchIndex, pid_alive
from kb.models import SyncReport
from kb.sources import IGNORE_FILES

logger = logging.getLogger(__name__)

DEBOUNCE_SECONDS = 0.15  # quiet time that closes a batch
MAX_BATCH_DELAY = 1.0  # a steady stream of events still commits this often
MAX_PENDING_PATHS = 20_000  # beyond this, forget the paths and rescan (bounded memory)
RETRY_SECONDS = 2.0  # after a failed batch (e.g. the writer lock is busy)
OBSERVER_CHECK_SECONDS = 5.0  # how soon a dead observer or a moved root is noticed while nothing happens
ROOT_POLL_SECONDS = 0.5  # while the root is missing, how often one stat looks for its return
STUCK_SECONDS = 60.0  # a batch running longer than this shows as "stuck"

STATUS_FILE = "kb-server.json"  # in the index folder, for `kb status` in another process

WatcherState = Literal["starting", "watching", "rescanning", "root missing", "stuck", "failed", "stopped"]
RootCheck = Literal["present", "missing", "back"]
OnCommit = Callable[[SyncReport], None]


class _Events(FileSystemEventHandler):
    """Turns watchdog events into root-relative paths for the watcher."""

    def __init__(self, watcher: Watcher) -> None:
        self._watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            if raw:
                self._watcher.notice(Path(raw if isinstance(raw, str) else raw.decode()))


class Watcher:
    """Watches `settings.root` and applies changes to `index` in debounced batches.

    Read from any thread: `state`, `last_commit`, `busy_since` (when the running batch began),
    `root_missing_since`, `stuck_after`; `status()` gives them all as JSON values.
    """

    def __init__(
        self,
        settings: Settings,
        index: SearchIndex,
        on_commit: OnCommit | None = None,
        *,
        stuck_after: float = STUCK_SECONDS,
    ) -> None:
        self._settings = settings
        self._index = index
        self._root = index.root
        self._index_dir = index.index_dir
        self._on_commit = on_commit
        self._cond = threading.Condition()
        self._pending: set[str] = set()
        self._rescan = False
        self._root_event = False  # the root itself was deleted or changed: look at it soon
        self._stopping = False
        self._stopped = False
        self._died = False
        self._first_event = 0.0
        self._last_event = 0.0
        self._observer: Observer | None = None  # type: ignore[valid-type]
        self._thread: threading.Thread | None = None
        self._state: WatcherState = "starting"  # the observer's side; `state` adds the rest
        self._root_id: tuple[int, int] | None = None  # the folder being observed (device, inode)
        self._busy: tuple[float, datetime] | None = None  # (monotonic, wall clock) a batch began
        self.root_missing_since: datetime | None = None
        self.stuck_after = stuck_after
        self.last_commit: datetime | None = None

    @property
    def state(self) -> WatcherState:
        """What the watcher is doing, worst first: stopped, failed (the batch thread died, or the
        folder cannot be observed and only periodic rescans keep the index fresh), stuck (a batch
        has run longer than `stuck_after`), root missing, rescanning, watching, starting."""
        if self._stopped:
            return "stopped"
        thread = self._thread
        if self._died or (thread is not None and not thread.is_alive() and not self._stopping):
            return "failed"
        busy = self._busy
        if busy is not None and time.monotonic() - busy[0] > self.stuck_after:
            return "stuck"
        if self.root_missing_since is not None:
            return "root missing"
        return self._state

    @property
    def busy_since(self) -> datetime | None:
        """When the batch now running began (UTC); None between batches."""
        busy = self._busy
        return None if busy is None else busy[1]

    def status(self) -> dict[str, object]:
        """The watcher's health as JSON values, for `kb://status` and `kb status`."""
        return {
            "watcher": self.state,
            "last_commit": _iso(self.last_commit),
            "busy_since": _iso(self.busy_since),
            "stuck_after": self.stuck_after,
            "root_missing_since": _iso(self.root_missing_since),
        }

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start observing and the batch thread; returns once the observer is scheduled.

        If the folder cannot be observed (e.g. the system's inotify limits are reached), the batch
        thread still runs the periodic stat-only rescan, so the index keeps up, only more slowly.
        """
        try:
            self._start_observer()
        except OSError as exc:
            logger.error(
                "cannot watch %s for changes (%s); rescanning every %gs instead",
                self._root,
                exc,
                self._settings.rescan_seconds,
            )
            self._observer = None
            self._state = "failed"
        self._thread = threading.Thread(target=self._run, name="kb-watcher", daemon=True)
        self._thread.start()
        self._write_status()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop observing; a batch in progress finishes first."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
        self._stopped = True
        with contextlib.suppress(OSError):
            (self._index_dir / STATUS_FILE).unlink()

    def _start_observer(self) -> None:
        with contextlib.suppress(RootMissingError):  # then scheduling fails with the OSError
            self._root_id = ingest.root_identity(self._root)
        observer = Observer()
        observer.schedule(_Events(self), str(self._root), recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer
        self._state = "watching"

    # ---- events --------------------------------------------------------------------------

    def notice(self, path: Path) -> None:
        """Queue one changed path (absolute) for the next batch."""
        try:
            rel = path.relative_to(self._root).as_posix()
        except ValueError:
            return
        if path == self._index_dir or path.is_relative_to(self._index_dir):
            return
        parts = rel.split("/")
        with self._cond:
            if rel == ".":
                self._root_event = True  # deleted, perhaps: the next batch looks at the root first
            elif parts[-1] in IGNORE_FILES:
                self._rescan = True  # what is ignored may have changed anywhere below
            elif any(p.startswith(".") for p in parts):
                return
            elif len(self._pending) < MAX_PENDING_PATHS:
                self._pending.add(rel)
            else:
                self._pending.clear()
                self._rescan = True
            now = time.monotonic()
            if not self._first_event:
                self._first_event = now
            self._last_event = now
            self._cond.notify_all()

    def request_rescan(self) -> None:
        """Ask for a full stat-only rescan at the next opportunity."""
        with self._cond:
            self._rescan = True
            self._first_event = self._last_event = time.monotonic()
            self._cond.notify_all()

    # ---- the batch loop ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException:  # the thread's top: whatever ended it, status must say so
            self._died = True
            logger.critical("the file watcher stopped working; changes are no longer indexed", exc_info=True)
            self._write_status()

    def _loop(self) -> None:
        next_rescan = time.monotonic() + self._settings.rescan_seconds
        while True:
            got = self._next_batch(next_rescan)
            if got is None:
                return
            batch, rescan = got
            root = self._check_root()
            if root == "missing":
                continue  # nothing to sync against; the rescan when it returns covers these paths
            if root == "back" or time.monotonic() >= next_rescan:
                rescan = True
            if not self._observer_alive():
                logger.warning("the file watcher stopped; restarting it and rescanning")
                self._restart_observer()
                rescan = True
            if rescan:
                next_rescan = time.monotonic() + self._settings.rescan_seconds
            if batch or rescan:
                self._apply(batch, rescan)

    def _observer_alive(self) -> bool:
        return self._observer is None or self._observer.is_alive() or self._state == "failed"

    def _next_batch(self, next_rescan: float) -> tuple[set[str], bool] | None:
        """Wait for events to settle, the periodic rescan or the next health check (then the batch
        may be empty); None when stopping."""
        with self._cond:
            missing = self.root_missing_since is not None
            check_at = time.monotonic() + (ROOT_POLL_SECONDS if missing else OBSERVER_CHECK_SECONDS)
            # While the root is missing the overdue rescan waits for its return, not a busy loop.
            deadline = check_at if missing else min(check_at, next_rescan)
            while True:
                if self._stopping:
                    return None
                now = time.monotonic()
                if self._pending or self._rescan or self._root_event:
                    quiet = now - self._last_event
                    waited = now - self._first_event
                    if quiet >= DEBOUNCE_SECONDS or waited >= MAX_BATCH_DELAY:
                        break
                    self._cond.wait(min(DEBOUNCE_SECONDS - quiet, MAX_BATCH_DELAY - waited))
                elif now >= deadline:
                    break
                else:
                    self._cond.wait(deadline - now)
            batch, rescan = self._pending, self._rescan
            self._pending, self._rescan, self._root_event = set(), False, False
            self._first_event = self._last_event = 0.0
            return batch, rescan

    def _check_root(self) -> RootCheck:
        """One stat of the root: gone, back (or replaced by another folder: the observer watches
        the old one), or present as before."""
        try:
            identity = ingest.root_identity(self._root)
        except RootMissingError as exc:
            self._root_gone(exc)
            return "missing"
        replaced = self._root_id is not None and identity != self._root_id
        if self.root_missing_since is None and not replaced:
            self._root_id = identity
            return "present"
        if self.root_missing_since is not None:
            logger.warning("%s is back; watching it again and rescanning", self._root)
        else:
            logger.warning("%s was replaced by another folder; watching that one and rescanning", self._root)
        self.root_missing_since = None
        self._restart_observer()
        return "back"

    def _root_gone(self, exc: RootMissingError) -> None:
        if self.root_missing_since is not None:
            return  # said once, not per event
        self.root_missing_since = datetime.now(UTC)
        logger.warning("%s; looking for it every %gs", exc, ROOT_POLL_SECONDS)
        self._write_status()

    def _apply(self, batch: set[str], rescan: bool) -> None:
        observing = self._state != "failed"
        if rescan and observing:
            self._state = "rescanning"
        self._busy = (time.monotonic(), datetime.now(UTC))
        self._write_status()  # with busy_since, so another process can tell a stuck batch
        report: SyncReport | None = None
        try:
            report = self._sync(batch, rescan)
        finally:
            self._busy = None
            if observing:
                self._state = "watching"
            changed = report is not None and report.changed_documents
            if changed:
                self.last_commit = datetime.now(UTC)
            self._write_status()
        if report is not None and changed and self._on_commit is not None:
            try:
                self._on_commit(report)
            except Exception:
                logger.exception("sending change notifications failed")

    def _sync(self, batch: set[str], rescan: bool) -> SyncReport | None:
        """One batch's sync; None when it failed (what failed is queued again or waits for the root)."""
        try:
            if rescan:
                return ingest.sync(self._settings, self._index)
            return ingest.sync_paths(self._settings, self._index, batch)
        except RootMissingError as exc:
            self._root_gone(exc)  # its return brings a rescan
        except IndexLockedError as exc:
            logger.warning("index busy, will retry: %s", exc)
            self._requeue(batch, rescan)
        except Exception:  # the watcher must outlive any one bad batch
            logger.exception("applying %d changed paths failed; a full rescan will follow", len(batch))
            self._requeue(set(), True)
        return None

    def _requeue(self, batch: set[str], rescan: bool) -> None:
        with self._cond:
            self._pending |= batch
            self._rescan |= rescan
            # Come back after a pause rather than spinning on a busy lock.
            self._first_event = self._last_event = time.monotonic() + RETRY_SECONDS

    def _write_status(self) -> None:
        if self._stopping:
            return  # stop() removes the file; a batch finishing late must not bring it back
        status = {"pid": os.getpid(), **self.status()}
        try:
            tmp = self._index_dir / f"{STATUS_FILE}.tmp"
            tmp.write_text(json.dumps(status))
            tmp.replace(self._index_dir / STATUS_FILE)
        except OSError as exc:
            logger.debug("cannot record the watcher's status: %s", exc)

    def _restart_observer(self) -> None:
        try:
            if self._observer is not None:
                self._observer.stop()
            self._start_observer()
        except OSError as exc:
            logger.error("cannot restart the file watcher (%s); relying on periodic rescans", exc)
            self._state = "failed"
        self._write_status()


def live_status(index_dir: Path) -> dict[str, object] | None:
    """What a running `kb serve` on this index folder last recorded (`Watcher.status()`), if alive;
    a batch that began longer than its bound ago, and has not ended, shows as "stuck"."""
    try:
        status = json.loads((index_dir / STATUS_FILE).read_text())
        pid = int(status["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not pid_alive(pid):
        return None  # it died without cleaning up
    try:
        busy_for = (datetime.now(UTC) - datetime.fromisoformat(status["busy_since"])).total_seconds()
        if busy_for > float(status["stuck_after"]):
            status["watcher"] = "stuck"
    except (KeyError, TypeError, ValueError):
        pass  # idle (busy_since is null), or written by an older kb
    return status


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
