"""Tantivy's writer lock: waiting for it, and who holds it.

Tantivy allows one writer per index folder, across processes. Whoever takes it leaves a holder
record beside it (its pid and which kb command it runs, never its arguments: they may hold a token),
so a process kept waiting can say who is writing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from kb.errors import IndexLockedError

logger = logging.getLogger(__name__)

HOLDER_FILE = "kb-writer.json"
COMMANDS = ("serve", "index", "search", "status")

Writer = TypeVar("Writer")


def acquire(open_writer: Callable[[], Writer], index_dir: Path, wait: float) -> Writer:
    """`open_writer()`, retried with backoff while another process holds the lock, for `wait` seconds.

    Raises:
        IndexLockedError: the lock stayed busy for `wait` seconds.
    """
    deadline = time.monotonic() + wait
    delay = 0.05
    while True:
        try:
            return open_writer()
        except ValueError as exc:
            if not _is_lock_busy(exc):
                raise
            if time.monotonic() >= deadline:
                raise IndexLockedError(str(index_dir), holder_of(index_dir), wait) from exc
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 1.0)


@contextlib.contextmanager
def holding(index_dir: Path) -> Iterator[None]:
    """Leave this process's holder record in `index_dir` while the block runs."""
    holder = index_dir / HOLDER_FILE
    holder.write_text(json.dumps({"pid": os.getpid(), "command": _command(), "since": time.time()}))
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            holder.unlink()


def holder_of(index_dir: Path) -> str | None:
    """Describe the live process holding the writer, if it left its record."""
    try:
        info = json.loads((index_dir / HOLDER_FILE).read_text())
        pid = int(info.get("pid", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    if not pid or not pid_alive(pid):
        return None
    return f"pid {pid} ({info.get('command', '?')})"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (one we may not signal still exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):  # not a pid at all
        return False
    return True


def _is_lock_busy(exc: ValueError) -> bool:
    return "LockBusy" in str(exc) or "lock" in str(exc).lower()


def _command() -> str:
    """`kb serve`, `kb index`, …: what this process runs, without its arguments."""
    subcommand = next((arg for arg in sys.argv[1:] if arg in COMMANDS), None)
    return f"kb {subcommand}" if subcommand else "kb"
