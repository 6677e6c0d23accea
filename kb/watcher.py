"""Keep the index fresh while serving: watchdog events -> debounced batches -> `ingest.sync_paths`.

Events only name paths; the batch step looks at the files themselves, so create, modify, delete,
moves of files and folders, and editors' atomic saves (write a temp file, rename it over the
original) all come down to "sync these paths". A burst (a `git checkout`) coalesces into a few
commits; past a bound, or when the observer dies, the watcher falls back to a full stat-only
rescan, which is also run periodically as a safety net. The index writer is held only while a
batch commits, so a scheduled `kb index` can take its turn in between.
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
from kb.errors import IndexLockedError
from kb.index import SearchIndex, pid_alive
from kb.models import SyncReport
from kb.sources import IGNORE_FILES

logger = logging.getLogger(__name__)

DEBOUNCE_SECONDS = 0.15  # quiet time that closes a batch
MAX_BATCH_DELAY = 1.0  # a steady stream of events still commits this often
MAX_PENDING_PATHS = 20_000  # beyond this, forget the paths and rescan (bounded memory)
RETRY_SECONDS = 2.0  # after a failed batch (e.g. the writer lock is busy)
OBSERVER_CHECK_SECONDS = 5.0  # how soon a dead observer is noticed while nothing else happens

STATUS_FILE = "kb-server.json"  # in the index folder, for `kb status` in another process

WatcherState = Literal["starting", "watching", "rescanning", "failed", "stopped"]
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
    """Watches `settings.root` and applies changes to `index` in debounced batches."""

    def __init__(self, settings: Settings, index: SearchIndex, on_commit: OnCommit | None = None) -> None:
        self._settings = settings
        self._index = index
        self._root = index.root
        self._index_dir = index.index_dir
        self._on_commit = on_commit
        self._cond = threading.Condition()
        self._pending: set[str] = set()
        self._rescan = False
        self._stopping = False
        self._first_event = 0.0
        self._last_event = 0.0
        self._observer: Observer | None = None  # type: ignore[valid-type]
        self._thread: threading.Thread | None = None
        self.state: WatcherState = "starting"
        self.last_commit: datetime | None = None

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
            self.state = "failed"
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
        self.state = "stopped"
        with contextlib.suppress(OSError):
            (self._index_dir / STATUS_FILE).unlink()

    def _start_observer(self) -> None:
        observer = Observer()
        observer.schedule(_Events(self), str(self._root), recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer
        self.state = "watching"

    # ---- events --------------------------------------------------------------------------

    def notice(self, path: Path) -> None:
        """Queue one changed path (absolute) for the next batch."""
        try:
            rel = path.relative_to(self._root).as_posix()
        except ValueError:
            return
        if rel == "." or path == self._index_dir or path.is_relative_to(self._index_dir):
            return
        parts = rel.split("/")
        with self._cond:
            if parts[-1] in IGNORE_FILES:
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
        next_rescan = time.monotonic() + self._settings.rescan_seconds
        while True:
            batch, rescan = self._next_batch(next_rescan)
            if batch is None:
                return
            if time.monotonic() >= next_rescan:
                rescan = True
            if not self._observer_alive():
                logger.warning("the file watcher stopped; restarting it and rescanning")
                self._restart_observer()
                rescan = True
            if rescan:
                next_rescan = time.monotonic() + self._settings.rescan_seconds
            self._apply(batch, rescan)

    def _observer_alive(self) -> bool:
        return self._observer is None or self._observer.is_alive() or self.state == "failed"

    def _next_batch(self, next_rescan: float) -> tuple[set[str] | None, bool]:
        """Wait for events to settle (or the periodic rescan); None when stopping."""
        with self._cond:
            while True:
                if self._stopping:
                    return None, False
                now = time.monotonic()
                if self._pending or self._rescan:
                    quiet = now - self._last_event
                    waited = now - self._first_event
                    if quiet >= DEBOUNCE_SECONDS or waited >= MAX_BATCH_DELAY:
                        break
                    self._cond.wait(min(DEBOUNCE_SECONDS - quiet, MAX_BATCH_DELAY - waited))
                elif now >= next_rescan or not self._observer_alive():
                    break
                else:
                    self._cond.wait(min(next_rescan - now, OBSERVER_CHECK_SECONDS))
            batch, rescan = self._pending, self._rescan
            self._pending, self._rescan = set(), False
            self._first_event = self._last_event = 0.0
            return batch, rescan

    def _apply(self, batch: set[str], rescan: bool) -> None:
        observing = self.state != "failed"
        try:
            if rescan:
                if observing:
                    self.state = "rescanning"
                report = ingest.sync(self._settings, self._index)
            else:
                report = ingest.sync_paths(self._settings, self._index, batch)
        except IndexLockedError as exc:
            logger.warning("index busy, will retry: %s", exc)
            self._requeue(batch, rescan)
            return
        except Exception:  # the watcher must outlive any one bad batch
            logger.exception("applying %d changed paths failed; a full rescan will follow", len(batch))
            self._requeue(set(), True)
            return
        finally:
            if observing:
                self.state = "watching"
        if report.added_paths or report.updated_paths or report.removed_paths:
            self.last_commit = datetime.now(UTC)
            self._write_status()
            if self._on_commit is not None:
                try:
                    self._on_commit(report)
                except Exception:
                    logger.exception("sending change notifications failed")

    def _requeue(self, batch: set[str], rescan: bool) -> None:
        with self._cond:
            self._pending |= batch
            self._rescan |= rescan
            # Come back after a pause rather than spinning on a busy lock.
            self._first_event = self._last_event = time.monotonic() + RETRY_SECONDS

    def _write_status(self) -> None:
        status = {
            "pid": os.getpid(),
            "watcher": self.state,
            "last_commit": self.last_commit.isoformat() if self.last_commit else None,
        }
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
            self.state = "failed"
        self._write_status()


def live_status(index_dir: Path) -> dict[str, object] | None:
    """What a running `kb serve` on this index folder last recorded (watcher state, last commit), if alive."""
    try:
        status = json.loads((index_dir / STATUS_FILE).read_text())
        pid = int(status["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return status if pid_alive(pid) else None  # not if it died without cleaning up
