"""`kill -9` in the middle of indexing loses nothing: the index opens, the next run finishes the job,
and every manifest record agrees with the stored sections."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from kb.index import HOLDER_FILE, SearchIndex
from kb.models import DocId

COMMIT_EVERY_FILES = 2000
FILES = COMMIT_EVERY_FILES * 2 + 300  # several commits, so a kill can land between two of them


def make_corpus(root: Path) -> None:
    root.mkdir()
    for n in range(FILES):
        (root / f"n{n:05}.md").write_text(f"# Note {n}\n\nUnique{n} body text.\n\n## Part\n\nMore{n}.\n")


class _FirstCommit(FileSystemEventHandler):
    """Sets `event` at the first commit of a batch: meta.json rewritten after the writer was taken."""

    def __init__(self) -> None:
        self.writing = threading.Event()
        self.event = threading.Event()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in ("created", "modified", "moved"):
            return  # readers open meta.json all the time; only a write is a commit
        names = {Path(str(event.src_path)).name, Path(str(getattr(event, "dest_path", "") or "")).name}
        if HOLDER_FILE in names:
            self.writing.set()
        elif "meta.json" in names and self.writing.is_set():
            self.event.set()


def kb_index(root: Path, index_dir: Path) -> subprocess.Popen[str]:
    return kb(["index", str(root), "--index-dir", str(index_dir), "--json", "--wait", "10"])


def kb(args: list[str]) -> subprocess.Popen[str]:
    # stdin stays open: `kb serve` on stdio would stop at its end of input.
    return subprocess.Popen(
        [sys.executable, "-m", "kb", *args],
        env={**os.environ, "KB_COMMIT_EVERY_FILES": str(COMMIT_EVERY_FILES)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_consistent(index: SearchIndex) -> None:
    """Each manifest record has its sections, each section its manifest record, none twice."""
    manifest = index.manifest()
    sections = index.search("*", limit=FILES * 3, all_passages=True).results
    ids = [hit.id for hit in sections]
    assert len(ids) == len(set(ids)), f"stored twice: {sorted(i for i in set(ids) if ids.count(i) > 1)[:5]}"
    section_paths = {hit.path for hit in sections}
    assert section_paths == set(manifest), "sections and manifest disagree"
    for path in list(manifest)[:: max(1, len(manifest) // 50)]:
        assert [s.heading for s in index.get(DocId(path)).sections] == [
            f"Note {int(path[1:6])}",
            f"Note {int(path[1:6])} > Part",
        ]


@pytest.mark.parametrize(
    ("command", "kill_at"), [("index", "first-commit"), ("index", "start"), ("serve", "first-commit")]
)
def test_kill_9_while_indexing_then_a_rerun_completes_a_consistent_index(
    tmp_path: Path, command: str, kill_at: str
) -> None:
    root, index_dir = tmp_path / "docs", tmp_path / "idx"
    make_corpus(root)
    index_dir.mkdir()
    watch = _FirstCommit()
    observer = Observer()
    observer.schedule(watch, str(index_dir))
    observer.start()
    try:
        run = kb([command, str(root), "--index-dir", str(index_dir)])
        if kill_at == "first-commit":
            assert watch.event.wait(120), f"kb {command} never committed"
        run.send_signal(signal.SIGKILL)
        run.communicate(timeout=30)
    finally:
        observer.stop()
        observer.join(10)
    assert run.returncode == -signal.SIGKILL

    partial = SearchIndex.open(index_dir, root)  # opens, whatever moment the kill hit
    assert_consistent(partial)
    if kill_at == "first-commit":
        assert 0 < partial.stats().documents < FILES, "the kill should land mid-run"

    rerun = kb_index(root, index_dir)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    report = json.loads(out)
    assert report["added"] + report["unchanged"] == FILES
    assert report["updated"] == report["removed"] == 0
    final = SearchIndex.open(index_dir)
    assert final.stats().documents == FILES
    assert_consistent(final)
    assert [h.path for h in final.search(f"unique{FILES - 1}").results] == [f"n{FILES - 1:05}.md"]
