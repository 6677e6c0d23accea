"""The watcher with a real watchdog observer on a temp folder; every wait is on an event, bounded."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from watch_helpers import Live, kb_status

from kb.config import Settings
from kb.index import SearchIndex
from kb.ingest import sync
from kb.watcher import Watcher


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    state = Live(tmp_path)
    state.watcher.start()
    yield state
    state.watcher.stop()


def test_a_new_file_becomes_searchable(live: Live) -> None:
    (live.root / "new.md").write_text("# New\n\nAardvarks at dawn.\n")
    live.wait_until(lambda: "new.md" in live.paths(), "new.md to be indexed")
    assert live.found("aardvarks") == ["new.md"]
    assert any(r.added_paths == ["new.md"] for r in live.reports)


def test_an_edit_is_reindexed(live: Live) -> None:
    (live.root / "seed.md").write_text("# Seed\n\nNow about bumblebees.\n")
    live.wait_until(lambda: live.found("bumblebees") == ["seed.md"], "the edit to be indexed")
    assert live.found("first") == []


def test_an_atomic_save_replaces_the_document(live: Live) -> None:
    tmp = live.root / "seed.md.tmp~"
    tmp.write_text("# Seed\n\nSaved atomically with capybaras.\n")
    os.replace(tmp, live.root / "seed.md")
    live.wait_until(lambda: live.found("capybaras") == ["seed.md"], "the atomic save to be indexed")
    assert live.paths() == ["seed.md"]


def test_a_deleted_file_leaves_the_index(live: Live) -> None:
    (live.root / "seed.md").unlink()
    live.wait_until(lambda: live.paths() == [], "seed.md to be removed")
    assert live.reports[-1].removed_paths == ["seed.md"]


def test_a_renamed_file_moves_in_the_index(live: Live) -> None:
    (live.root / "seed.md").rename(live.root / "renamed.md")
    live.wait_until(lambda: live.paths() == ["renamed.md"], "the rename")


def test_a_renamed_folder_moves_every_file_inside(live: Live) -> None:
    folder = live.root / "projects"
    (folder / "deep").mkdir(parents=True)
    (folder / "a.md").write_text("# A\n\nAlpacas.\n")
    (folder / "deep" / "b.txt").write_text("Badgers.\n")
    live.wait_until(lambda: len(live.paths()) == 3, "the new folder's files")
    folder.rename(live.root / "archive")
    live.wait_until(
        lambda: live.paths() == ["archive/a.md", "archive/deep/b.txt", "seed.md"], "the folder rename"
    )


def test_a_burst_of_a_thousand_files_coalesces_into_few_commits(live: Live) -> None:
    burst = live.root / "burst"
    burst.mkdir()
    for n in range(1000):
        (burst / f"note{n:04}.md").write_text(f"# Note {n}\n\nToken{n} in a burst.\n")
    live.wait_until(lambda: len(live.paths()) == 1001, "all 1,000 files")
    assert live.found("token999") == ["burst/note0999.md"]
    assert len(live.reports) < 50


def test_an_ignore_file_change_applies_to_existing_files(live: Live) -> None:
    (live.root / "drafts").mkdir()
    (live.root / "drafts" / "wip.md").write_text("# WIP\n\nUnfinished.\n")
    live.wait_until(lambda: "drafts/wip.md" in live.paths(), "the draft")
    (live.root / ".kbignore").write_text("drafts/\n")
    live.wait_until(lambda: live.paths() == ["seed.md"], "the ignored draft to leave")


def test_hidden_files_and_the_index_folder_stay_out(tmp_path: Path) -> None:
    state = Live(tmp_path)
    inside = Settings(root=state.root, index_dir=state.root / "index")
    state.settings = inside
    state.index = SearchIndex.open(inside.index_dir, state.root)
    sync(inside, state.index)
    state.watcher = Watcher(inside, state.index, on_commit=state._committed)
    state.watcher.start()
    try:
        (state.root / ".secret.md").write_text("# Hidden\n")
        (state.root / "visible.md").write_text("# Visible\n\nShown.\n")
        state.wait_until(lambda: "visible.md" in state.paths(), "visible.md")
        assert state.paths() == ["seed.md", "visible.md"]
    finally:
        state.watcher.stop()


def test_a_concurrent_kb_index_run_succeeds_beside_the_watcher(live: Live) -> None:
    for n in range(50):
        (live.root / f"w{n}.md").write_text(f"# W{n}\n\nWatched {n}.\n")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "kb",
            "index",
            str(live.root),
            "--index-dir",
            str(live.settings.index_dir),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    live.wait_until(lambda: len(live.paths()) == 51, "every file from both writers")
    assert len(live.found("watched")) == 10


def test_kb_status_shows_the_running_watcher_and_its_last_commit(live: Live) -> None:
    (live.root / "fresh.md").write_text("# Fresh\n\nJust saved.\n")
    live.wait_until(lambda: "fresh.md" in live.paths(), "fresh.md")
    status = kb_status(live.settings.index_dir)
    assert status["server"] == {"pid": os.getpid()}
    assert status["watcher"] == "watching"
    assert status["last_commit"] is not None
    live.watcher.stop()
    stopped = kb_status(live.settings.index_dir)
    assert (stopped["server"], stopped["watcher"]) == (None, None)


def test_a_folder_that_cannot_be_observed_is_still_kept_fresh_by_rescans(tmp_path: Path) -> None:
    state = Live(tmp_path)
    moved = state.root.with_name("elsewhere")
    state.root.rename(moved)  # the observer cannot be scheduled on a folder that is not there
    state.watcher.start()
    try:
        assert state.watcher.state == "failed"
        moved.rename(state.root)
        (state.root / "later.md").write_text("# Later\n\nFound by a rescan, not an event.\n")
        state.watcher.request_rescan()  # what the periodic timer does
        state.wait_until(lambda: "later.md" in state.paths(), "the rescan to index later.md")
        assert state.watcher.state == "failed"  # honest: it is not watching
    finally:
        state.watcher.stop()
