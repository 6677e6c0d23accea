"""Shared by the watcher tests: a synced root with a real watcher over a real index."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from kb.config import Settings
from kb.index import SearchIndex
from kb.ingest import sync
from kb.models import SyncReport
from kb.watcher import Watcher

TIMEOUT = 20.0
SEED = {"seed.md": "# Seed\n\nThe first note.\n"}


class Live:
    """A synced root with a watcher (not started); `wait_until` blocks until a commit makes a check
    true. `on_commit` is called after each commit is recorded."""

    def __init__(
        self,
        tmp_path: Path,
        files: dict[str, str] = SEED,
        *,
        stuck_after: float = 60.0,
        **settings: object,
    ) -> None:
        self.root = tmp_path / "docs"
        for name, text in files.items():
            (self.root / name).parent.mkdir(parents=True, exist_ok=True)
            (self.root / name).write_text(text)
        self.settings = Settings(root=self.root, index_dir=tmp_path / "idx", **settings)
        self.index = SearchIndex.open(self.settings.index_dir, self.root)
        sync(self.settings, self.index)
        self.reports: list[SyncReport] = []
        self.on_commit: Callable[[SyncReport], None] | None = None
        self._cond = threading.Condition()
        self.watcher = Watcher(self.settings, self.index, on_commit=self._committed, stuck_after=stuck_after)

    def _committed(self, report: SyncReport) -> None:
        with self._cond:
            self.reports.append(report)
            self._cond.notify_all()
        if self.on_commit is not None:
            self.on_commit(report)

    def wait_until(self, check: Callable[[], bool], what: str) -> None:
        with self._cond:
            if not self._cond.wait_for(check, timeout=TIMEOUT):
                pytest.fail(f"timed out waiting for {what}")

    def paths(self) -> list[str]:
        return self.index.document_paths()

    def found(self, query: str) -> list[str]:
        return [h.path for h in self.index.search(query).results]


def kb_status(index_dir: Path) -> dict[str, object]:
    """`kb status --json` from another process, as an operator would run it."""
    run = subprocess.run(
        [sys.executable, "-m", "kb", "status", "--index-dir", str(index_dir), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)
