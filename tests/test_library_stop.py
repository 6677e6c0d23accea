"""Closing a library in the middle of its first sync is prompt, and keeps what the sync had written."""

from __future__ import annotations

import time
from pathlib import Path

from kb.config import Settings
from kb.index import HOLDER_FILE, SearchIndex
from kb.library import Library

FILES = 3000


def test_closing_during_the_first_sync_stops_it_soon_and_commits_what_it_wrote(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    body = "Some words about kangaroos and the care of wombats. " * 20
    for n in range(FILES):
        (root / f"n{n:05}.md").write_text(f"# Note {n}\n\nUnique{n} {body}\n")
    settings = Settings(root=root, index_dir=tmp_path / "index", jobs=2, watch=False)
    library = Library.open(settings)
    library.start()
    deadline = time.monotonic() + 60
    while not (settings.index_dir / HOLDER_FILE).exists():  # the sync holds the writer
        assert time.monotonic() < deadline, "the first sync never started writing"
        time.sleep(0.02)
    started = time.monotonic()
    library.close()
    assert time.monotonic() - started < 3.0
    assert library.synced.is_set() and library.sync_error is None
    kept = SearchIndex.open(settings.index_dir, root)
    assert 0 < kept.stats().documents < FILES
    assert library.last_sync is not None and library.last_sync.added == kept.stats().documents
