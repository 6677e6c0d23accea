"""The watcher's health as status shows it: a root that is gone and comes back, a stuck batch, a dead
thread. A real watchdog observer on a temp folder over a real index; waits are bounded, on commits
(an event) or, across processes, on `kb status` polled until a deadline."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from watch_helpers import TIMEOUT, Live, kb_status

from kb.models import SyncReport

HEALTH_FILES = {
    "seed.md": "# Seed\n\nThe first note, about otters.\n",
    "sub/deep.md": "# Deep\n\nA note about herons.\n",
}


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    state = Live(tmp_path, HEALTH_FILES)
    state.watcher.start()
    yield state
    state.watcher.stop()


def wait_for_kb_status(index_dir: Path, watcher_state: str) -> dict[str, object]:
    """What `kb status` in another process says, asked until it names `watcher_state` (bounded)."""
    deadline = time.monotonic() + TIMEOUT
    seen: list[object] = []
    while time.monotonic() < deadline:
        status = kb_status(index_dir)
        if status["watcher"] == watcher_state:
            return status
        seen.append(status["watcher"])
    pytest.fail(f"`kb status` never said {watcher_state!r}; it said {seen}")


def test_a_deleted_root_keeps_its_documents_and_a_recreated_one_is_picked_up(
    live: Live, caplog: pytest.LogCaptureFixture
) -> None:
    shutil.rmtree(live.root)
    status = wait_for_kb_status(live.settings.index_dir, "root missing")
    assert status["documents"] == 2
    assert live.watcher.state == "root missing"
    assert live.watcher.root_missing_since is not None
    assert live.found("otters") == ["seed.md"]
    assert live.found("herons") == ["sub/deep.md"]
    assert live.reports == []  # nothing was committed, so nothing was removed
    missing_warnings = [
        r for r in caplog.records if r.levelname == "WARNING" and "does not exist" in r.message
    ]
    assert len(missing_warnings) == 1

    live.root.mkdir()
    (live.root / "back.md").write_text("# Back\n\nThe folder returned with pelicans.\n")
    live.wait_until(lambda: "back.md" in live.paths(), "the re-created folder to be rescanned")
    assert live.found("pelicans") == ["back.md"]
    assert live.paths() == ["back.md"]  # what really is not in the new folder leaves
    assert live.watcher.state == "watching"
    assert live.watcher.root_missing_since is None
    # And the new folder is observed, not only rescanned: an edit arrives as an event.
    (live.root / "later.md").write_text("# Later\n\nEvents again, about ibises.\n")
    live.wait_until(lambda: "later.md" in live.paths(), "an event from the re-created folder")


def test_a_root_moved_away_and_back_keeps_its_documents_and_is_watched_again(live: Live) -> None:
    away = live.root.with_name("docs-away")
    live.root.rename(away)
    (away / "while-away.md").write_text("# Away\n\nWritten in the moved folder, about lynxes.\n")
    wait_for_kb_status(live.settings.index_dir, "root missing")
    assert live.paths() == ["seed.md", "sub/deep.md"]
    away.rename(live.root)
    live.wait_until(lambda: "while-away.md" in live.paths(), "the returned folder to be rescanned")
    assert live.paths() == ["seed.md", "sub/deep.md", "while-away.md"]
    assert live.watcher.state == "watching"
    (live.root / "seed.md").write_text("# Seed\n\nNow about wolverines.\n")
    live.wait_until(lambda: live.found("wolverines") == ["seed.md"], "an event from the returned folder")


def test_a_root_replaced_by_another_folder_is_watched_anew(live: Live) -> None:
    old = live.root.with_name("docs-old")
    live.root.rename(old)
    live.root.mkdir()
    (live.root / "fresh.md").write_text("# Fresh\n\nThe new folder, about puffins.\n")
    # The observer still follows the old folder; an event from it makes the watcher look.
    (old / "stale.md").write_text("# Stale\n\nIn the folder that was moved aside.\n")
    live.wait_until(lambda: live.paths() == ["fresh.md"], "the new folder to be rescanned")
    assert live.watcher.state == "watching"
    (live.root / "next.md").write_text("# Next\n\nAn event from the new folder, about terns.\n")
    live.wait_until(lambda: "next.md" in live.paths(), "an event from the new folder")
    assert live.found("terns") == ["next.md"]


def test_a_batch_blocked_past_the_bound_shows_as_stuck_until_it_finishes(tmp_path: Path) -> None:
    state = Live(tmp_path, HEALTH_FILES, stuck_after=0.3, lock_wait=TIMEOUT)
    state.watcher.start()
    try:
        # The test holds the index writer, so the watcher's batch really waits on the lock.
        with state.index.batch(wait=0):
            (state.root / "blocked.md").write_text("# Blocked\n\nWaiting on the writer, about moles.\n")
            status = wait_for_kb_status(state.settings.index_dir, "stuck")
            assert state.watcher.state == "stuck"
            busy_since = state.watcher.busy_since
            assert busy_since is not None
            assert status["last_commit"] is None
        state.wait_until(lambda: "blocked.md" in state.paths(), "the blocked batch to finish")
        assert state.watcher.state == "watching"
        assert state.watcher.busy_since is None
        assert state.watcher.last_commit is not None and state.watcher.last_commit > busy_since
        assert kb_status(state.settings.index_dir)["watcher"] == "watching"
    finally:
        state.watcher.stop()


def test_a_watcher_whose_batch_thread_died_says_failed_and_stop_says_stopped(live: Live) -> None:
    def exits(_report: SyncReport) -> None:
        raise SystemExit("a callback that exits kills the batch thread")

    live.on_commit = exits
    (live.root / "last.md").write_text("# Last\n\nThe last change indexed.\n")
    live.wait_until(lambda: "last.md" in live.paths(), "the last batch")
    status = wait_for_kb_status(live.settings.index_dir, "failed")
    assert status["server"] is not None
    assert live.watcher.state == "failed"
    live.watcher.stop()
    assert live.watcher.state == "stopped"
